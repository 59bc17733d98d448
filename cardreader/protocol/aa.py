"""Active Authentication (ICAO 9303-11 §6.1): the chip proves it holds the private key
whose public half is in DG15 (and DG15 is covered by the SOD, so a copied chip fails).

The terminal sends INTERNAL AUTHENTICATE with a fresh random 8-byte challenge;
the chip answers with an ISO/IEC 9796-2 scheme 1 signature (RSA) or a plain
r||s ECDSA signature (BSI TR-03111) over it, hashed with the algorithm DG14's
ActiveAuthenticationInfo names. The outcome is a result, never an exception:
passed, failed (the chip could not prove possession) or not_performed (the
document does not allow AA to be checked), each with reason codes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from asn1crypto import keys

from cardreader.pki import iso9796_2, signatures
from cardreader.pki.signatures import SignatureError

CHALLENGE_LENGTH = 8
# ActiveAuthenticationInfo.signatureAlgorithm → hash: BSI TR-03111 ecdsa-plain-* and X9.62 ecdsa-with-*.
AA_SIGNATURE_HASHES = {
    "0.4.0.127.0.7.1.1.4.1.1": "sha1", "0.4.0.127.0.7.1.1.4.1.2": "sha224",
    "0.4.0.127.0.7.1.1.4.1.3": "sha256", "0.4.0.127.0.7.1.1.4.1.4": "sha384",
    "0.4.0.127.0.7.1.1.4.1.5": "sha512",
    "1.2.840.10045.4.1": "sha1", "1.2.840.10045.4.3.1": "sha224", "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384", "1.2.840.10045.4.3.4": "sha512",
}


@dataclass
class AAResult:
    result: str  # 'passed' | 'failed' | 'not_performed'
    reasons: list[str] = field(default_factory=list)
    algorithm: str | None = None  # e.g. 'rsa-iso9796-2-sha1', 'ecdsa-plain-sha256'
    challenge: bytes | None = None

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    @property
    def reason(self) -> str | None:
        """The first reason code (None when passed), for callers that keep one."""
        return self.reasons[0] if self.reasons else None

    def to_json(self) -> dict:
        return {"result": self.result, "reasons": list(self.reasons), "algorithm": self.algorithm,
                "challenge": self.challenge.hex() if self.challenge is not None else None}


def _dg15_public_key(dg15: bytes) -> keys.PublicKeyInfo:
    """DG15 = '6F' L SubjectPublicKeyInfo (9303-10 §4.7.15)."""
    from cardreader.lds import ASN1_DECODE_ERRORS, tlv

    try:
        spki = keys.PublicKeyInfo.load(tlv.parse_one(dg15, 0x6F).value, strict=True)
        spki.native
    except ASN1_DECODE_ERRORS as exc:  # asn1crypto's lazy parsing: e.g. KeyError for an unknown key OID
        raise ValueError(f"DG15 SubjectPublicKeyInfo: {type(exc).__name__}") from None
    return spki


def _aa_hash(dg14: bytes | None) -> str | None:
    """The hash ActiveAuthenticationInfo names in DG14, or None when DG14 has none."""
    if dg14 is None:
        return None
    from cardreader.lds import tlv
    from cardreader.lds.security_infos import parse_security_infos

    info = parse_security_infos(tlv.parse_one(dg14, 0x6E).value).active_authentication
    if info is None:
        return None
    if info["version"].native != 1:
        raise ValueError("ActiveAuthenticationInfo version is not 1")
    oid = info["signature_algorithm"].dotted
    if oid not in AA_SIGNATURE_HASHES:
        raise ValueError(f"unsupported AA signature algorithm {oid}")
    return AA_SIGNATURE_HASHES[oid]


def verify_aa(dg15: bytes, challenge: bytes, response: bytes, dg14: bytes | None = None) -> AAResult:
    """Check the chip's INTERNAL AUTHENTICATE response to `challenge` with the DG15 key."""
    from cardreader.lds import LDSError

    if len(challenge) != CHALLENGE_LENGTH:
        return AAResult("not_performed", ["aa_challenge_length"], challenge=challenge)
    try:
        spki = _dg15_public_key(dg15)
        key = signatures.load_public_key(spki)
    except SignatureError as exc:
        return AAResult("not_performed", [f"dg15_{exc.reason}"], challenge=challenge)
    except (LDSError, ValueError):
        return AAResult("not_performed", ["dg15_malformed"], challenge=challenge)
    if key.kind == "rsa":
        try:
            recovered = iso9796_2.verify(key.key, response, challenge)
        except iso9796_2.ISO9796Error as exc:
            return AAResult("failed", [exc.reason], "rsa-iso9796-2", challenge)
        return AAResult("passed", [], f"rsa-iso9796-2-{recovered.digest}", challenge)
    try:
        digest = _aa_hash(dg14)
    except (LDSError, ValueError):
        return AAResult("not_performed", ["dg14_malformed"], "ecdsa-plain", challenge)
    if digest is None:
        # 9303-11 §6.1: ECDSA AA needs ActiveAuthenticationInfo to name the hash.
        return AAResult("not_performed", ["aa_info_missing"], "ecdsa-plain", challenge)
    try:
        signatures.verify_ecdsa(key, response, challenge, digest, plain=True)
    except SignatureError as exc:
        return AAResult("failed", [f"aa_{exc.reason}"], f"ecdsa-plain-{digest}", challenge)
    return AAResult("passed", [], f"ecdsa-plain-{digest}", challenge)


def active_authentication(channel, dg15: bytes, dg14: bytes | None, rng=os.urandom) -> AAResult:
    """Send INTERNAL AUTHENTICATE with a fresh challenge over `channel` and verify the answer.

    Card status errors and a broken secure channel are a failed AA (the chip
    did not prove anything); transport errors propagate (a broken device).
    """
    from cardreader.apdu import CardError, CommandAPDU
    from cardreader.protocol.sm import SecureMessagingError

    challenge = rng(CHALLENGE_LENGTH)
    try:
        response = channel.send(CommandAPDU(0x00, 0x88, 0x00, 0x00, challenge, ne=_expected_length(dg15)))
    except CardError as exc:
        return AAResult("failed", [f"aa_card_error_{getattr(exc, 'sw', 0):04X}"], challenge=challenge)
    except SecureMessagingError:
        return AAResult("failed", ["bad_mac"], challenge=challenge)
    if response.sw != 0x9000:
        return AAResult("failed", [f"aa_card_error_{response.sw:04X}"], challenge=challenge)
    return verify_aa(dg15, challenge, response.data, dg14)


def _expected_length(dg15: bytes) -> int:
    """Ne for the response: the signature size when the key is readable, else the short maximum."""
    try:
        key = signatures.load_public_key(_dg15_public_key(dg15))
    except Exception:  # verify_aa reports a broken DG15 with a reason; here only Ne is chosen
        return 256
    if key.kind == "rsa":
        return min(65536, max(256, (key.key.key_size + 7) // 8))
    return 256
