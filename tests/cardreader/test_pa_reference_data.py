"""Passive authentication on published reference data: the BSI TR-03105-5 reference EF.SOD
(RSASSA-PSS, real DS certificate, DG1 'D' = Germany) and its DG14 with explicit parameters."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cardreader.lds import tlv
from cardreader.lds.security_infos import parse_security_infos
from cardreader.lds.sod import parse_sod
from cardreader.pki import TrustStore, passive_authentication
from cardreader.pki.signatures import load_public_key

VECTOR = json.loads((Path(__file__).parent / "pki_vectors" / "bsi_tr03105_5_reference_sod.json").read_text())
SOD, DG1, DG14, DG15 = (bytes.fromhex(VECTOR[k]) for k in ("ef_sod", "dg1", "dg14", "dg15"))
DURING = dt.datetime(2014, 6, 1, tzinfo=dt.timezone.utc)


def test_reference_sod_parses_strictly():
    sod = parse_sod(SOD)
    assert sod.hash_algorithm == "sha256" and sod.lds_version is None
    assert sorted(sod.dg_hashes) == [1, 2, 3, 4, 14]
    assert sod.signer_info["signature_algorithm"]["algorithm"].native == "rsassa_pss"


def test_reference_document_signature_and_hashes_verify_but_the_csca_is_unknown():
    result = passive_authentication(SOD, {1: DG1, 14: DG14}, TrustStore(None), at=DURING)
    assert result.checks["sod_signature_valid"] is True and result.checks["message_digest_valid"] is True
    assert result.data_group_hashes == {1: True, 14: True}
    assert result.signature_algorithm == "rsassa-pss-sha256"
    assert result.checks["country_consistent"] is True  # DG1 'D' and C=DE
    assert result.checks["dsc_valid"] is True
    assert result.verdict == "incomplete" and result.reasons == ["csca_not_found"]


@pytest.mark.parametrize("dgs,at,reasons", [
    ({1: DG1, 14: DG14, 15: DG15}, DURING, ["dg15_not_in_sod", "csca_not_found"]),
    ({1: DG1[:-1] + b"5"}, DURING, ["dg1_hash_mismatch", "csca_not_found"]),
    ({1: DG1}, dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc), ["dsc_expired", "csca_not_found"]),
])
def test_reference_document_failures(dgs, at, reasons):
    result = passive_authentication(SOD, dgs, TrustStore(None), at=at)
    assert result.verdict == "invalid" and result.reasons == reasons


def test_reference_dg14_explicit_brainpool_p224r1_is_recognised():
    infos = parse_security_infos(tlv.parse_one(DG14, 0x6E).value)
    key_info = infos.chip_authentication_keys[0].public_key
    assert key_info["algorithm"]["parameters"].name == "specified"
    assert load_public_key(key_info).curve == "BRAINPOOLP224r1"
