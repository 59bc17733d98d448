"""Passive authentication (ICAO 9303-11 §5.1): is what was read what the state signed?

Every individual check is recorded (True / False / None = could not be
performed) with machine-readable reasons, and folded into one verdict:

* `invalid`    — something is provably wrong (tampered data group, bad
  signature, expired or revoked DS, malformed SOD, country mismatch, ...);
* `incomplete` — nothing is wrong but trust could not be established (no
  CSCA for the issuing state, no data group to compare, stale CRL under a
  strict policy);
* `valid`      — everything checked and passed. Only this may open a barrier.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from asn1crypto import x509

from cardreader.lds import ASN1_DECODE_ERRORS
from cardreader.lds.sod import LDS_SECURITY_OBJECT_OID, SODError, parse_sod
from cardreader.pki import signatures
from cardreader.pki.countries import same_country
from cardreader.pki.signatures import SignatureError
from cardreader.pki.trust import (
    TrustError, TrustStore, as_utc, certificate_problems, country_of, document_types, find_signer_certificate,
    verify_signer_info)

# Checks whose False makes the verdict invalid (dsc_revoked is inverted: True is the failure).
_MUST_PASS = ("sod_parsed", "dsc_present", "message_digest_valid", "sod_signature_valid", "dsc_valid",
              "dsc_chain_valid", "country_consistent", "document_type_allowed", "com_consistent")


@dataclass(frozen=True)
class PAPolicy:
    """How strict to be where ICAO leaves it to the inspection system.

    `require_crl`: a DS without any CRL from its CSCA is `incomplete` instead of accepted.
    `stale_crl`: what a CRL past its nextUpdate means: 'accept', 'incomplete' or 'invalid'.
    """

    require_crl: bool = False
    stale_crl: str = "incomplete"


@dataclass
class PAResult:
    verdict: str  # 'valid' | 'invalid' | 'incomplete'
    checks: dict[str, bool | None]
    data_group_hashes: dict[int, bool] = field(default_factory=dict)
    hash_algorithm: str | None = None
    signature_algorithm: str | None = None
    reasons: list[str] = field(default_factory=list)
    dsc_subject: str | None = None  # the signer's DN (a state authority, not personal data)

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "sod_signature_valid": self.checks.get("sod_signature_valid"),
            "message_digest_valid": self.checks.get("message_digest_valid"),
            "dsc_chain_valid": self.checks.get("dsc_chain_valid"),
            "csca_found": bool(self.checks.get("csca_found")),
            "dsc_revoked": self.checks.get("dsc_revoked"),
            "data_group_hashes": {str(n): ok for n, ok in sorted(self.data_group_hashes.items())},
            "hash_algorithm": self.hash_algorithm,
            "signature_algorithm": self.signature_algorithm,
            "reasons": list(self.reasons),
            "checks": dict(self.checks),
            "dsc_subject": self.dsc_subject,
        }


def passive_authentication(sod: bytes, dgs: dict[int, bytes], trust_store: TrustStore | None, *,
                           at: dt.datetime | None = None, com: bytes | None = None,
                           dg1_issuing_state: str | None = None, policy: PAPolicy = PAPolicy()) -> PAResult:
    """Check EF.SOD, the DS certificate and its CSCA chain, revocation and every data group read."""
    checks: dict[str, bool | None] = dict.fromkeys(
        ("sod_parsed", "dsc_present", "message_digest_valid", "sod_signature_valid", "dsc_valid", "csca_found",
         "dsc_chain_valid", "dsc_revoked", "crl_current", "country_consistent", "document_type_allowed",
         "com_consistent"))
    result = PAResult("invalid", checks)
    trust_store = trust_store if trust_store is not None else TrustStore(None)
    try:
        trust_store.refresh()
    except TrustError as exc:
        result.reasons.append(exc.reason)  # the anchors are unknown: nothing can be trusted
        result.verdict = "incomplete"
        return result
    try:
        return _run(result, sod, dgs, trust_store, as_utc(at), com, dg1_issuing_state, policy)
    except ASN1_DECODE_ERRORS:
        # asn1crypto parses lazily: a hostile encoding deep inside the DS certificate can surface
        # here. It is a broken document, never a crash and never 'valid'.
        result.reasons.append("malformed_structure")
        result.checks["sod_parsed"] = False
        result.verdict = "invalid"
        return result


def _run(result: PAResult, sod: bytes, dgs: dict[int, bytes], trust_store: TrustStore, at: dt.datetime,
         com: bytes | None, dg1_issuing_state: str | None, policy: PAPolicy) -> PAResult:
    checks, reasons = result.checks, result.reasons
    try:
        parsed = parse_sod(sod)
    except SODError as exc:
        checks["sod_parsed"] = False
        reasons.append(exc.reason)
        return _finish(result, policy)
    checks["sod_parsed"] = True
    signer = parsed.signer_info
    digest_name = signer["digest_algorithm"]["algorithm"].native
    result.hash_algorithm = parsed.hash_algorithm
    try:
        result.signature_algorithm = signatures.signature_algorithm_name(signer["signature_algorithm"], digest_name)
    except ValueError:
        result.signature_algorithm = signer["signature_algorithm"]["algorithm"].dotted

    _check_data_groups(result, parsed.dg_hashes, dgs)

    dsc = find_signer_certificate(parsed.signed_data)
    checks["dsc_present"] = dsc is not None
    if dsc is None:
        reasons.append("dsc_missing")
        return _finish(result, policy)
    result.dsc_subject = dsc.subject.human_friendly
    try:
        cms_check = verify_signer_info(signer, parsed.econtent, LDS_SECURITY_OBJECT_OID,
                                       signatures.load_public_key(dsc.public_key))
        checks["message_digest_valid"] = cms_check.message_digest_valid
        checks["sod_signature_valid"] = cms_check.signature_valid
        reasons.extend(cms_check.reasons)
    except SignatureError as exc:
        checks["sod_signature_valid"] = False
        reasons.append(f"dsc_{exc.reason}")

    problems = certificate_problems(dsc, at, "ds")
    checks["dsc_valid"] = not problems
    reasons.extend(problems)

    issuer = trust_store.issuer_of(dsc, at)
    checks["csca_found"] = issuer.found
    checks["dsc_chain_valid"] = None if not issuer.found else bool(issuer.chain_valid and not problems)
    reasons.extend(issuer.reasons)
    if issuer.csca is not None and issuer.chain_valid:
        revocation = trust_store.revocation(dsc, issuer.csca, at)
        checks["dsc_revoked"] = revocation.revoked
        if revocation.revoked:
            reasons.append("dsc_revoked")
        if revocation.revoked is not None:
            checks["crl_current"] = not revocation.stale
            if revocation.stale:
                reasons.append("crl_stale")
        elif policy.require_crl:
            reasons.append("crl_missing")

    mrz = _dg1_mrz(dgs.get(1))
    _check_country(result, dsc, issuer.csca, mrz, dg1_issuing_state)
    _check_document_type(result, dsc, mrz)
    _check_com(result, com, parsed.dg_hashes)
    return _finish(result, policy)


def _check_data_groups(result: PAResult, listed: dict[int, bytes], dgs: dict[int, bytes]) -> None:
    name = result.hash_algorithm  # parse_sod admits only the SHA family
    for number, data in sorted(dgs.items()):
        if number not in listed:
            result.data_group_hashes[number] = False
            result.reasons.append(f"dg{number}_not_in_sod")
        else:
            ok = hashlib.new(name, data).digest() == listed[number]
            result.data_group_hashes[number] = ok
            if not ok:
                result.reasons.append(f"dg{number}_hash_mismatch")
    if not dgs:
        result.reasons.append("no_data_groups_compared")


def _check_country(result: PAResult, dsc: x509.Certificate, csca: x509.Certificate | None,
                   mrz, dg1_issuing_state: str | None) -> None:
    ds_country = country_of(dsc.subject)
    verdicts = []
    if csca is not None:
        verdicts.append(ds_country is not None and ds_country == country_of(csca.subject))
        if not verdicts[-1]:
            result.reasons.append("dsc_csca_country_mismatch")
    state = dg1_issuing_state or (mrz.issuing_state if mrz is not None else None)
    if state is not None:
        verdicts.append(ds_country is not None and same_country(state, ds_country))
        if not verdicts[-1]:
            result.reasons.append("issuing_state_mismatch")
    result.checks["country_consistent"] = all(verdicts) if verdicts else None


def _check_document_type(result: PAResult, dsc: x509.Certificate, mrz) -> None:
    """9303-12 §7.1.1.3: a DS may name the document types it signs (DocumentTypeList, optional)."""
    allowed = document_types(dsc)
    if allowed is None or mrz is None:
        return
    code = mrz.document_code.rstrip("<")
    ok = any(code == t or code.startswith(t) for t in allowed)
    result.checks["document_type_allowed"] = ok
    if not ok:
        result.reasons.append("dsc_document_type_not_allowed")


def _dg1_mrz(dg1: bytes | None):
    """The MRZ in DG1 when it parses (its hash is checked regardless), else None."""
    if dg1 is None:
        return None
    from cardreader.lds import LDSError
    from cardreader.lds.dg1 import DG1

    try:
        return DG1.parse(dg1).mrz
    except LDSError:
        return None


def _check_com(result: PAResult, com: bytes | None, listed: dict[int, bytes]) -> None:
    if com is None:
        return
    from cardreader.lds import LDSError
    from cardreader.lds.com import COM

    try:
        in_com = {int(name.removeprefix("DG")) for name in COM.parse(com).data_groups}
    except LDSError:
        result.checks["com_consistent"] = False
        result.reasons.append("com_malformed")
        return
    result.checks["com_consistent"] = in_com == set(listed)
    if in_com != set(listed):
        result.reasons.append("com_sod_mismatch")


def _finish(result: PAResult, policy: PAPolicy) -> PAResult:
    checks, reasons = result.checks, result.reasons
    invalid = (any(checks[name] is False for name in _MUST_PASS) or checks["dsc_revoked"] is True
               or not all(result.data_group_hashes.values())
               or (checks["crl_current"] is False and policy.stale_crl == "invalid"))
    incomplete = (not checks["csca_found"] or not result.data_group_hashes
                  or (checks["dsc_revoked"] is None and policy.require_crl)
                  or (checks["crl_current"] is False and policy.stale_crl == "incomplete"))
    result.verdict = "invalid" if invalid else "incomplete" if incomplete else "valid"
    result.reasons[:] = list(dict.fromkeys(reasons))
    return result
