"""BAC and 3DES secure messaging reproduce the ICAO 9303-11 Appendix D worked example byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardreader.apdu import CommandAPDU, PlainChannel, ResponseAPDU, read_binary, select_ef
from cardreader.lds.mrz import MRZKey
from cardreader.protocol import bac
from cardreader.protocol.sm import SecureMessagingError, SMSession

V = json.loads((Path(__file__).parent / "vectors" / "icao9303_11_bac_sm.json").read_text())
h = bytes.fromhex


class ScriptedTransport:
    """Replays the published exchange and fails on any byte that differs."""

    def __init__(self, exchanges: list[tuple[str, str]]) -> None:
        self.exchanges = list(exchanges)

    def transmit(self, apdu: bytes) -> bytes:
        expected, response = self.exchanges.pop(0)
        assert apdu.hex().upper() == expected
        return h(response)


def _key() -> MRZKey:
    return MRZKey(V["document_number"], V["date_of_birth"], V["date_of_expiry"])


def test_key_derivation():
    key = _key()
    assert key.key_seed_input() == V["mrz_information"]
    assert bac.key_seed(key) == h(V["k_seed"])
    assert bac.bac_keys(key) == (h(V["k_enc"]), h(V["k_mac"]))


def _bac_exchange() -> list[tuple[str, str]]:
    return [(V["get_challenge"]["command"], V["get_challenge"]["response"]),
            (V["external_authenticate"]["command"], V["external_authenticate"]["response"])]


def _rng():
    values = [h(V["rnd_ifd"]), h(V["k_ifd"])]
    return lambda n: values.pop(0)


def test_mutual_authentication_and_session_keys():
    channel = bac.perform_bac(PlainChannel(ScriptedTransport(_bac_exchange())), _key(), rng=_rng())
    s = channel.session
    assert (s.ks_enc, s.ks_mac) == (h(V["ks_enc"]), h(V["ks_mac"]))
    assert s.ssc == int(V["ssc"], 16)


def test_protected_apdus_and_responses():
    s = SMSession("3DES", h(V["ks_enc"]), h(V["ks_mac"]), int(V["ssc"], 16))
    for ex in V["exchanges"]:
        cmd = CommandAPDU.from_bytes(h(ex["unprotected"]))
        assert s.protect(cmd).to_bytes().hex().upper() == ex["protected"]
        resp = s.unprotect(ResponseAPDU.from_bytes(h(ex["protected_response"])))
        assert resp.data == h(ex["data"]) and resp.sw == int(ex["sw"], 16)
    assert s.ssc == int(V["ssc_after"], 16)


def test_whole_exchange_through_the_channel():
    """BAC, then SELECT EF.COM and the two READ BINARYs of the example, all APDUs as published."""
    script = _bac_exchange() + [(ex["protected"], ex["protected_response"]) for ex in V["exchanges"]]
    channel = bac.perform_bac(PlainChannel(ScriptedTransport(script)), _key(), rng=_rng())
    select_ef(channel, 0x011E)
    head = read_binary(channel, 0, 4).data
    rest = read_binary(channel, 4, 18).data
    assert head + rest == h(V["ef_com"])


def test_card_side_accepts_the_published_cryptogram():
    data = h(V["external_authenticate"]["command"])[5:-1]
    out = bac.bac_card_response(_key(), h(V["rnd_ic"]), data, rng=lambda n: h(V["k_ic"]))
    assert out is not None
    answer, session = out
    assert answer == h(V["external_authenticate"]["response"])[:-2]
    assert (session.ks_enc, session.ks_mac, session.ssc) == (h(V["ks_enc"]), h(V["ks_mac"]), int(V["ssc"], 16))


def test_tampered_response_mac_is_an_error_not_data():
    s = SMSession("3DES", h(V["ks_enc"]), h(V["ks_mac"]), int(V["ssc"], 16) + 2)
    s.protect(CommandAPDU.from_bytes(h(V["exchanges"][1]["unprotected"])))
    raw = bytearray(h(V["exchanges"][1]["protected_response"]))
    raw[3] ^= 0x01  # one bit of the encrypted file data
    with pytest.raises(SecureMessagingError) as e:
        s.unprotect(ResponseAPDU.from_bytes(bytes(raw)))
    assert e.value.reason == "bad_mac"
