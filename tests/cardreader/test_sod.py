"""EF.SOD parsing (ICAO 9303-10 §4.6.2): the declarative LDSSecurityObject and the strict
checks on the CMS envelope, each failure with its reason code."""
from __future__ import annotations

import hashlib

import pytest

from cardreader.lds.sod import LDSSecurityObject, SODError, build_lds_security_object, parse_sod
from cardreader.sim.test_pki import TestPKI, cms_sign, sign_sod, wrap_sod

DGS = {1: b"\x61\x02\x5f\x1f", 2: b"\x75\x01\x00", 15: b"\x6f\x00"}


@pytest.fixture(scope="module")
def pki():
    return TestPKI.create("UTO", "ecdsa-p256")


def test_fields_follow_the_asn1(pki):
    sod = parse_sod(sign_sod(DGS, pki, "sha384"))
    assert sod.hash_algorithm == "sha384"
    assert sod.dg_hashes == {n: hashlib.sha384(d).digest() for n, d in DGS.items()}
    assert sod.lds_version == "0108"
    assert sod.lds["version"].native == "v1"
    assert sod.signer_info["sid"].name == "issuer_and_serial_number"
    assert len(sod.certificates) == 1 and sod.certificates[0].dump() == pki.ds_cert
    v0 = parse_sod(sign_sod(DGS, pki, lds_version=None))
    assert v0.lds_version is None and v0.lds["version"].native == "v0"


def test_build_round_trip():
    der = build_lds_security_object({3: b"\x01" * 32, 1: b"\x02" * 32}, "sha256", ("0107", "040000"))
    lds = LDSSecurityObject.load(der)
    assert [h["data_group_number"].native for h in lds["data_group_hash_values"]] == ["dataGroup1", "dataGroup3"]
    assert lds["lds_version_info"]["unicode_version"].native == "040000"


def _lds_der(entries: list[tuple[int, bytes]]) -> bytes:
    return LDSSecurityObject({"version": 0, "hash_algorithm": {"algorithm": "sha256"},
                              "data_group_hash_values": [{"data_group_number": n, "data_group_hash_value": h}
                                                         for n, h in entries]}).dump()


@pytest.mark.parametrize("econtent,reason", [
    (_lds_der([(1, b"\x00" * 32), (1, b"\x01" * 32)]), "lds_duplicate_data_group"),
    (_lds_der([(1, b"\x00" * 32), (17, b"\x01" * 32)]), "lds_data_group_number"),
    (_lds_der([(0, b"\x00" * 32), (2, b"\x01" * 32)]), "lds_data_group_number"),
    (b"\x30\x03\x02\x01\x00", "lds_security_object_malformed"),
])
def test_security_object_content_errors(pki, econtent, reason):
    with pytest.raises(SODError) as err:
        parse_sod(sign_sod(DGS, pki, econtent=econtent))
    assert err.value.reason == reason


def test_signer_info_version_must_match_the_signer_identifier(pki):
    ci = cms_sign(build_lds_security_object({1: b"\x00" * 32}, "sha256"), "2.23.136.1.1.1", pki.ds_key,
                  pki.ds_cert, "sha256")
    ci["content"]["signer_infos"][0]["version"] = "v3"  # v3 belongs to subjectKeyIdentifier
    with pytest.raises(SODError) as err:
        parse_sod(wrap_sod(ci.dump(force=True)))
    assert err.value.reason == "signer_info_version"


def test_exactly_one_signer_info(pki):
    ci = cms_sign(build_lds_security_object({1: b"\x00" * 32}, "sha256"), "2.23.136.1.1.1", pki.ds_key,
                  pki.ds_cert, "sha256")
    infos = ci["content"]["signer_infos"]
    ci["content"]["signer_infos"] = [infos[0], infos[0]]
    with pytest.raises(SODError) as err:
        parse_sod(wrap_sod(ci.dump(force=True)))
    assert err.value.reason == "signer_info_count"


def test_content_info_must_be_signed_data():
    from asn1crypto import cms

    ci = cms.ContentInfo({"content_type": "data", "content": b"hello"})
    with pytest.raises(SODError) as err:
        parse_sod(wrap_sod(ci.dump()))
    assert err.value.reason == "sod_not_signed_data"


@pytest.mark.parametrize("data", [b"", b"\x77", b"\x77\x80\x00\x00", b"\x77\x85\x01\x02\x03\x04\x05", b"\x77\x05abc"])
def test_wrapper_garbage_is_a_typed_error(data):
    with pytest.raises(SODError):
        parse_sod(data)


def test_signer_digest_algorithm_must_be_announced(pki):
    ci = cms_sign(build_lds_security_object({1: b"\x00" * 32}, "sha256"), "2.23.136.1.1.1", pki.ds_key,
                  pki.ds_cert, "sha256")
    ci["content"]["digest_algorithms"] = [{"algorithm": "sha512"}]
    with pytest.raises(SODError) as err:
        parse_sod(wrap_sod(ci.dump(force=True)))
    assert err.value.reason == "digest_algorithms_mismatch"


def test_lds_hash_algorithm_must_be_sha(pki):
    econtent = LDSSecurityObject({"version": 0, "hash_algorithm": {"algorithm": "md5"},
                                  "data_group_hash_values": [{"data_group_number": 1,
                                                              "data_group_hash_value": b"\x00" * 16}]}).dump()
    with pytest.raises(SODError) as err:
        parse_sod(sign_sod(DGS, pki, econtent=econtent))
    assert err.value.reason == "lds_hash_algorithm"
