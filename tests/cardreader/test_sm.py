"""Secure messaging both ways for every cipher, and hostile responses: never data without a valid MAC."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardreader.apdu import CardError, CommandAPDU, ResponseAPDU
from cardreader.protocol.sm import CIPHER_KEY_LENGTHS, SecureMessagingError, SMSession


def _pair(cipher: str, ssc: int = 0) -> tuple[SMSession, SMSession]:
    n = CIPHER_KEY_LENGTHS[cipher]
    enc, mac = bytes(range(n)), bytes(range(100, 100 + n))
    return SMSession(cipher, enc, mac, ssc), SMSession(cipher, enc, mac, ssc)


@pytest.mark.parametrize("cipher", list(CIPHER_KEY_LENGTHS))
@pytest.mark.parametrize("cmd,extended", [
    (CommandAPDU(0, 0xA4, 2, 0x0C, b"\x01\x1e"), False),
    (CommandAPDU(0, 0xB0, 0x82, 0, ne=223), False),
    (CommandAPDU(0, 0xB0, 0, 0, ne=65536), True),
    (CommandAPDU(0, 0xB1, 0, 0, b"\x54\x02\x80\x00", ne=4000), True),
    (CommandAPDU(0, 0x88, 0, 0, bytes(8), ne=256), False),
])
def test_round_trip(cipher, cmd, extended):
    host, card = _pair(cipher, ssc=41)
    wire = host.protect(cmd, extended)
    assert wire.cla == 0x0C
    got = card.unprotect_command(CommandAPDU.from_bytes(wire.to_bytes()))
    assert got == cmd
    data = bytes(range(256)) * 3
    raw = card.protect_response(cmd.ins, ResponseAPDU(data, 0x9000))
    assert host.unprotect(ResponseAPDU.from_bytes(raw)) == ResponseAPDU(data, 0x9000)
    assert host.ssc == card.ssc == 43


def test_replayed_response_fails():
    host, card = _pair("AES-128")
    card.unprotect_command(host.protect(CommandAPDU(0, 0xB0, 0, 0, ne=4)))
    raw = card.protect_response(0xB0, ResponseAPDU(b"abcd", 0x9000))
    assert host.unprotect(ResponseAPDU.from_bytes(raw)).data == b"abcd"
    host.protect(CommandAPDU(0, 0xB0, 0, 0, ne=4))
    with pytest.raises(SecureMessagingError):
        host.unprotect(ResponseAPDU.from_bytes(raw))


@pytest.mark.parametrize("raw,reason", [
    ("9000", "malformed_sm_response"),  # success without protection
    ("6988", "sm_aborted"),
    ("990290009000", "malformed_sm_response"),  # no MAC
    ("8783FFFFFF01" + "00" * 8 + "9000", "malformed_sm_response"),  # giant DO length
    ("8E08" + "00" * 8 + "99029000" + "9000", "malformed_sm_response"),  # out of order
])
def test_malformed_responses(raw, reason):
    host, _ = _pair("3DES")
    with pytest.raises(SecureMessagingError) as e:
        host.unprotect(ResponseAPDU.from_bytes(bytes.fromhex(raw)))
    assert e.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_a_response_is_rejected(data):
    host, card = _pair(data.draw(st.sampled_from(["3DES", "AES-128"])))
    card.unprotect_command(host.protect(CommandAPDU(0, 0xB0, 0, 0, ne=40)))
    good = card.protect_response(0xB0, ResponseAPDU(bytes(range(40)), 0x9000))
    body = bytearray(good[:-2])
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mutation == "flip":
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        del body[data.draw(st.integers(0, len(body) - 1)):]
    else:
        body += data.draw(st.binary(min_size=1, max_size=20))
    try:
        resp = host.unprotect(ResponseAPDU(bytes(body), 0x9000))
    except (SecureMessagingError, CardError):
        return
    pytest.fail(f"tampered response accepted: {resp}")
