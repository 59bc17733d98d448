"""PACE Generic Mapping reproduces the ICAO 9303-11 worked examples (ECDH brainpoolP256r1 and DH 1024/160)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardreader.apdu import PlainChannel
from cardreader.lds.mrz import MRZKey
from cardreader.lds.security_infos import encode_security_infos, pace_info, parse_security_infos
from cardreader.protocol import pace
from cardreader.protocol.sm import cbc_decrypt, encode_do, kdf

VECTORS = Path(__file__).parent / "vectors"
h = bytes.fromhex


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


CASES = {"ecdh": _load("icao9303_11_pace_ecdh_gm.json"), "dh": _load("icao9303_11_pace_dh_gm.json")}


def _option(v: dict):
    name = {"0.4.0.127.0.7.2.2.4.2.2": "id-PACE-ECDH-GM-AES-CBC-CMAC-128",
            "0.4.0.127.0.7.2.2.4.1.2": "id-PACE-DH-GM-AES-CBC-CMAC-128"}[v["protocol_oid"]]
    return parse_security_infos(encode_security_infos([pace_info(name, v["parameter_id"])])).pace[0]


def _key(v: dict) -> MRZKey:
    return MRZKey(v["document_number"], v["date_of_birth"], v["date_of_expiry"])


@pytest.mark.parametrize("case", CASES)
def test_password_and_nonce(case):
    v = CASES[case]
    k, ref = pace.password_key(_key(v))
    assert (k, ref) == (h(v["mrz_password_k"]), 1)
    assert kdf(k, 3, v["cipher"]) == h(v["k_pi"])
    assert cbc_decrypt(v["cipher"], h(v["k_pi"]), h(v["encrypted_nonce"])) == h(v["nonce"])


@pytest.mark.parametrize("case", CASES)
def test_mapping_agreement_keys_and_tokens(case):
    v = CASES[case]
    option = _option(v)
    group = pace.group_for(option)
    sk_map = int(v["terminal_mapping_private"], 16)
    assert group.public(sk_map) == h(v["terminal_mapping_public"])
    mapped = group.map_generic(int(v["nonce"], 16), sk_map, h(v["chip_mapping_public"]))
    g = mapped.g if case == "dh" else mapped.encode(mapped.g)
    assert (g.to_bytes(group.size, "big") if case == "dh" else g) == h(v["mapped_generator"])
    sk = int(v["terminal_agreement_private"], 16)
    assert mapped.public(sk) == h(v["terminal_agreement_public"])
    shared = mapped.shared_secret(sk, h(v["chip_agreement_public"]))
    assert shared == h(v["shared_secret"])
    ks_mac = kdf(shared, 2, v["cipher"])
    assert (kdf(shared, 1, v["cipher"]), ks_mac) == (h(v["ks_enc"]), h(v["ks_mac"]))
    oid = pace._oid_der(option.protocol)
    assert pace.auth_token(v["cipher"], ks_mac, mapped.public_key_do(oid, h(v["chip_agreement_public"]))) \
        == h(v["terminal_token"])
    assert pace.auth_token(v["cipher"], ks_mac, mapped.public_key_do(oid, h(v["terminal_agreement_public"]))) \
        == h(v["chip_token"])


def test_chip_private_keys_give_the_published_chip_public_keys():
    v = CASES["ecdh"]
    group = pace.group_for(_option(v))
    assert group.public(int(v["chip_mapping_private"], 16)) == h(v["chip_mapping_public"])
    mapped = group.map_generic(int(v["nonce"], 16), int(v["terminal_mapping_private"], 16),
                               h(v["chip_mapping_public"]))
    assert mapped.public(int(v["chip_agreement_private"], 16)) == h(v["chip_agreement_public"])


class Replay:
    def __init__(self, pairs):
        self.pairs = list(pairs)

    def transmit(self, apdu: bytes) -> bytes:
        expected, response = self.pairs.pop(0)
        if expected is not None:
            assert apdu.hex().upper() == expected
        return response


@pytest.mark.parametrize("case", CASES)
def test_whole_exchange_sends_the_published_apdus(case):
    v = CASES[case]

    def ga(tag: int, value: bytes) -> bytes:
        return encode_do(0x7C, encode_do(tag, value)) + b"\x90\x00"

    pairs = [(v["mse_set_at"], b"\x90\x00"),
             ("10860000027C0000", ga(0x80, h(v["encrypted_nonce"]))),
             (None, ga(0x82, h(v["chip_mapping_public"]))),
             (None, ga(0x84, h(v["chip_agreement_public"]))),
             ("008600000C7C0A8508" + v["terminal_token"] + "00", ga(0x86, h(v["chip_token"])))]
    keys = (int(v["terminal_mapping_private"], 16), int(v["terminal_agreement_private"], 16))
    channel = pace.perform_pace(PlainChannel(Replay(pairs)), _key(v), _option(v), _keys=keys)
    assert (channel.session.ks_enc, channel.session.ks_mac, channel.session.ssc) == \
        (h(v["ks_enc"]), h(v["ks_mac"]), 0)


def test_wrong_chip_token_is_refused():
    v = CASES["ecdh"]

    def ga(tag: int, value: bytes) -> bytes:
        return encode_do(0x7C, encode_do(tag, value)) + b"\x90\x00"

    bad = bytearray(h(v["chip_token"]))
    bad[0] ^= 1
    pairs = [(None, b"\x90\x00"), (None, ga(0x80, h(v["encrypted_nonce"]))),
             (None, ga(0x82, h(v["chip_mapping_public"]))), (None, ga(0x84, h(v["chip_agreement_public"]))),
             (None, ga(0x86, bytes(bad)))]
    keys = (int(v["terminal_mapping_private"], 16), int(v["terminal_agreement_private"], 16))
    with pytest.raises(pace.PACEError):
        pace.perform_pace(PlainChannel(Replay(pairs)), _key(v), _option(v), _keys=keys)


def test_point_off_the_curve_is_refused():
    v = CASES["ecdh"]
    group = pace.group_for(_option(v))
    bad = bytearray(h(v["chip_mapping_public"]))
    bad[-1] ^= 1
    with pytest.raises(pace.PACEError):
        group.map_generic(1, 5, bytes(bad))
