"""PACE reproduces the ICAO 9303-11 worked examples exactly: Appendix G, Generic Mapping, and Appendix H,
Integrated Mapping (each ECDH brainpoolP256r1 and DH 1024/160, AES-128); and refuses every mapping or
answer that does not validate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardreader.apdu import CommandAPDU, PlainChannel
from cardreader.lds.mrz import MRZKey
from cardreader.lds.security_infos import encode_security_infos, pace_info, parse_security_infos
from cardreader.protocol import pace
from cardreader.protocol.sm import cbc_decrypt, cbc_encrypt, encode_do, kdf

VECTORS = Path(__file__).parent / "vectors"
h = bytes.fromhex


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


CASES = {"ecdh": _load("icao9303_11_pace_ecdh_gm.json"), "dh": _load("icao9303_11_pace_dh_gm.json")}


def _option(v: dict):
    name = v.get("protocol") or {"0.4.0.127.0.7.2.2.4.2.2": "id-PACE-ECDH-GM-AES-CBC-CMAC-128",
                                 "0.4.0.127.0.7.2.2.4.1.2": "id-PACE-DH-GM-AES-CBC-CMAC-128"}[v["protocol_oid"]]
    return _named_option(name, v["parameter_id"])


def _named_option(name: str, parameter_id: int | None):
    return parse_security_infos(encode_security_infos([pace_info(name, parameter_id)])).pace[0]


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


def _ga(tag: int, value: bytes) -> bytes:
    return encode_do(0x7C, encode_do(tag, value)) + b"\x90\x00"


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

    pairs = [(v["mse_set_at"], b"\x90\x00"),
             ("10860000027C0000", _ga(0x80, h(v["encrypted_nonce"]))),
             (None, _ga(0x82, h(v["chip_mapping_public"]))),
             (None, _ga(0x84, h(v["chip_agreement_public"]))),
             ("008600000C7C0A8508" + v["terminal_token"] + "00", _ga(0x86, h(v["chip_token"])))]
    keys = (int(v["terminal_mapping_private"], 16), int(v["terminal_agreement_private"], 16))
    channel = pace.perform_pace(PlainChannel(Replay(pairs)), _key(v), _option(v), _keys=keys)
    assert (channel.session.ks_enc, channel.session.ks_mac, channel.session.ssc) == \
        (h(v["ks_enc"]), h(v["ks_mac"]), 0)


def test_wrong_chip_token_is_refused():
    v = CASES["ecdh"]

    bad = bytearray(h(v["chip_token"]))
    bad[0] ^= 1
    pairs = [(None, b"\x90\x00"), (None, _ga(0x80, h(v["encrypted_nonce"]))),
             (None, _ga(0x82, h(v["chip_mapping_public"]))), (None, _ga(0x84, h(v["chip_agreement_public"]))),
             (None, _ga(0x86, bytes(bad)))]
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


# --------------------------------------------------------------------------- Integrated Mapping (Appendix H)

IM_CASES = {case: _load(f"icao9303_11_pace_{case}_im.json") for case in ("ecdh", "dh")}
KEY = MRZKey("T22000129", "640812", "101031")  # any password: Appendix H gives K_pi, not the MRZ


def _encoded(group, element) -> bytes:
    return group.encode(element) if group.kind == "ECDH" else element.to_bytes(group.size, "big")


@pytest.mark.parametrize("case", IM_CASES)
def test_im_encrypted_nonce(case):
    v = IM_CASES[case]
    assert cbc_encrypt(v["cipher"], h(v["k_pi"]), h(v["nonce_s"])) == h(v["encrypted_nonce_z"])
    assert cbc_decrypt(v["cipher"], h(v["k_pi"]), h(v["encrypted_nonce_z"])) == h(v["nonce_s"])


@pytest.mark.parametrize("case", IM_CASES)
def test_pseudo_random_function_and_mapped_generator(case):
    v = IM_CASES[case]
    group = pace.group_for(_option(v))
    p = group.fp.p() if case == "ecdh" else group.p
    r = pace.pseudo_random(h(v["nonce_s"]), h(v["nonce_t"]), v["cipher"], p)
    assert r == h(v["pseudo_random_r"])
    assert int.from_bytes(r, "big") % p == int(v["pseudo_random_rp"], 16)
    mapped = group.map_integrated(h(v["nonce_s"]), h(v["nonce_t"]), v["cipher"])
    assert _encoded(group, mapped.g) == h(v["mapped_generator"])


@pytest.mark.parametrize("case", IM_CASES)
def test_im_key_agreement_session_keys_and_tokens(case):
    v = IM_CASES[case]
    option = _option(v)
    mapped = pace.group_for(option).map_integrated(h(v["nonce_s"]), h(v["nonce_t"]), v["cipher"])
    assert mapped.public(int(v["chip_private"], 16)) == h(v["chip_public"])
    assert mapped.public(int(v["terminal_private"], 16)) == h(v["terminal_public"])
    shared = mapped.shared_secret(int(v["terminal_private"], 16), h(v["chip_public"]))
    assert shared == mapped.shared_secret(int(v["chip_private"], 16), h(v["terminal_public"])) == h(v["shared_secret"])
    ks_mac = kdf(shared, 2, v["cipher"])
    assert (kdf(shared, 1, v["cipher"]), ks_mac) == (h(v["ks_enc"]), h(v["ks_mac"]))
    oid = pace._oid_der(option.protocol)
    chip_input = mapped.public_key_do(oid, h(v["terminal_public"]))
    assert chip_input == h(v["chip_token_input"])
    if "terminal_token_input" in v:
        assert mapped.public_key_do(oid, h(v["chip_public"])) == h(v["terminal_token_input"])
    assert pace.auth_token(v["cipher"], ks_mac, chip_input) == h(v["chip_token"])
    assert pace.auth_token(v["cipher"], ks_mac, mapped.public_key_do(oid, h(v["chip_public"]))) \
        == h(v["terminal_token"])


def _exchange(v: dict, chip_mapping_answer: bytes = b"") -> list:
    """The appendix's run with z re-encrypted under KEY's K_pi (the appendix lists K_pi, not its password)."""
    option = _option(v)
    z = cbc_encrypt(v["cipher"], kdf(pace.password_key(KEY)[0], 3, v["cipher"]), h(v["nonce_s"]))
    t_command = CommandAPDU(0x10, 0x86, 0, 0, encode_do(0x7C, encode_do(0x81, h(v["nonce_t"]))), ne=256)
    pk_command = CommandAPDU(0x10, 0x86, 0, 0, encode_do(0x7C, encode_do(0x83, h(v["terminal_public"]))), ne=256)
    return [(pace.mse_set_at(option, 1, False).to_bytes().hex().upper(), b"\x90\x00"),
            ("10860000027C0000", _ga(0x80, z)),
            (t_command.to_bytes().hex().upper(), _ga(0x82, chip_mapping_answer)),
            (pk_command.to_bytes().hex().upper(), _ga(0x84, h(v["chip_public"]))),
            ("008600000C7C0A8508" + v["terminal_token"] + "00", _ga(0x86, h(v["chip_token"])))]


@pytest.mark.parametrize("case", IM_CASES)
def test_im_whole_exchange_sends_the_published_values(case):
    v = IM_CASES[case]
    keys = (h(v["nonce_t"]), int(v["terminal_private"], 16))
    channel = pace.perform_pace(PlainChannel(Replay(_exchange(v))), KEY, _option(v),
                                _keys=keys)
    assert (channel.session.ks_enc, channel.session.ks_mac, channel.session.ssc) == (h(v["ks_enc"]), h(v["ks_mac"]), 0)


def test_mapping_data_from_the_chip_is_refused():
    """9303-11 §4.4.5.2.2: the chip's '82' is empty in the Integrated Mapping."""
    v = IM_CASES["ecdh"]
    pairs = _exchange(v, chip_mapping_answer=h(v["chip_public"]))
    with pytest.raises(pace.PACEError, match="mapping data"):
        pace.perform_pace(PlainChannel(Replay(pairs)), KEY, _option(v),
                          _keys=(h(v["nonce_t"]), int(v["terminal_private"], 16)))


def test_im_wrong_chip_token_is_refused():
    v = IM_CASES["dh"]
    pairs = _exchange(v)
    bad = bytearray(h(v["chip_token"]))
    bad[-1] ^= 1
    pairs[-1] = (None, _ga(0x86, bytes(bad)))
    with pytest.raises(pace.PACEError, match="does not verify"):
        pace.perform_pace(PlainChannel(Replay(pairs)), KEY, _option(v),
                          _keys=(h(v["nonce_t"]), int(v["terminal_private"], 16)))


def test_nonce_of_the_generic_mapping_length_is_refused():
    """IM with AES-256 uses a 32-byte s (l = 256); a 16-byte one is not accepted."""
    option = _named_option("id-PACE-ECDH-IM-AES-CBC-CMAC-256", 13)
    pairs = [(None, b"\x90\x00"), (None, _ga(0x80, bytes(16)))]
    with pytest.raises(pace.PACEError, match="wrong length"):
        pace.perform_pace(PlainChannel(Replay(pairs)), KEY, option)


@pytest.mark.parametrize("cipher,s_len,t_len", [("3DES", 16, 16), ("AES-128", 16, 16), ("AES-192", 32, 24),
                                                ("AES-256", 32, 32)])
def test_nonce_lengths_follow_the_key_size(cipher, s_len, t_len):
    """s: the smallest multiple of the block size ≥ k (3DES counts as 128 bits); t: k bits."""
    assert pace.nonce_length("IM", cipher) == s_len
    p = pace.STANDARD_GROUPS[13]().fp.p()
    r = pace.pseudo_random(bytes(range(s_len)), bytes(range(t_len)), cipher, p)
    assert len(r) % s_len == 0 and len(r) * 8 >= p.bit_length() + 64
    for bad_s, bad_t in ((bytes(s_len - 8), bytes(t_len)), (bytes(s_len), bytes(t_len + 8))):
        with pytest.raises(pace.PACEError):
            pace.pseudo_random(bad_s, bad_t, cipher, p)


@pytest.mark.parametrize("r", [0, 1], ids=["zero", "one"])
def test_point_encoding_without_image_is_an_error(r):
    """t = 0 is outside 0 < t < p, and t = 1 makes α + α² = 0: no point, a typed error."""
    group = pace.STANDARD_GROUPS[13]()
    with pytest.raises(pace.PACEError, match="no image"):
        pace.point_encoding(r, group.fp)


@pytest.mark.parametrize("x", [0, 1])
def test_dh_mapping_to_the_identity_is_an_error(x, monkeypatch):
    group = pace.STANDARD_GROUPS[0]()
    monkeypatch.setattr(pace, "pseudo_random", lambda *a: x.to_bytes(group.size, "big"))
    with pytest.raises(pace.PACEError, match="mapped generator"):
        group.map_integrated(bytes(16), bytes(16), "AES-128")


def test_every_integrated_mapping_curve_maps_into_the_group():
    """For each standardized curve the mapped generator lies on the curve and has the group's order."""
    from ecdsa import ellipticcurve
    for pid in (8, 9, 11, 12, 13, 14, 15, 16, 17, 18):
        group = pace.STANDARD_GROUPS[pid]()
        mapped = group.map_integrated(bytes(range(16)), bytes(range(100, 116)), "AES-128")
        assert group.fp.contains_point(mapped.g.x(), mapped.g.y())
        assert mapped.g * group.order == ellipticcurve.INFINITY


def test_chip_refuses_a_terminal_nonce_of_the_wrong_length():
    option = _named_option("id-PACE-ECDH-IM-AES-CBC-CMAC-128", 13)
    chip = pace.ChipPACE(option, pace.password_key(KEY)[0], rng=lambda n: bytes(range(1, n + 1)))
    chip.step(CommandAPDU(0x10, 0x86, 0, 0, b"\x7c\x00"))
    with pytest.raises(pace.PACEError):
        chip.step(CommandAPDU(0x10, 0x86, 0, 0, encode_do(0x7C, encode_do(0x81, bytes(8)))))


def test_cofactor_curves_stay_in_the_prime_order_subgroup():
    """On a curve with co-factor f > 1 (secp112r2, f = 4) a public key outside E[q] is refused, and the
    integrated mapping multiplies by f (Appendix B.2 step 10)."""
    from ecdsa import curves, ellipticcurve
    group = pace.ECGroup(curves.SECP112r2)
    outside = next(p for p in (ellipticcurve.PointJacobi(group.fp, *pace.point_encoding(t, group.fp), 1)
                               for t in range(2, 50)) if p * group.order != ellipticcurve.INFINITY)
    with pytest.raises(pace.PACEError, match="subgroup"):
        group.decode(group.encode(outside))
    mapped = group.map_integrated(bytes(range(16)), bytes(range(16, 32)), "AES-128")
    assert mapped.g * group.order == ellipticcurve.INFINITY
    assert group.decode(group.encode(mapped.g)) == mapped.g


@settings(max_examples=60, deadline=None)
@given(s=st.binary(min_size=16, max_size=16), t=st.binary(min_size=16, max_size=16),
       parameter_id=st.sampled_from([0, 9, 12, 13]))
def test_integrated_mapping_always_lands_in_the_group(s, t, parameter_id):
    """Any nonces map to a generator of the prime-order group (or to a typed error), never elsewhere."""
    group = pace.STANDARD_GROUPS[parameter_id]()
    try:
        mapped = group.map_integrated(s, t, "AES-128")
    except pace.PACEError:
        return
    if group.kind == "ECDH":
        assert group.fp.contains_point(mapped.g.x(), mapped.g.y())
        assert group.decode(group.encode(mapped.g)) == mapped.g
    else:
        assert 1 < mapped.g < group.p - 1 and pow(mapped.g, group.order, group.p) == 1
