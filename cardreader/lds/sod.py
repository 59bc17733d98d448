"""EF.SOD, the Document Security Object (ICAO 9303-10 §4.6.2, Appendix D).

EF.SOD is `[APPLICATION 23]` (tag 0x77) around a CMS ContentInfo whose
SignedData encapsulates an LDSSecurityObject: the hash of every data group,
signed by the Document Signer. The ASN.1 below follows 9303-10 line by line;
the CMS envelope is asn1crypto's own.

`parse_sod` is strict on purpose: a security object that is not DER, carries
trailing bytes or has an unexpected version is a forgery signal, not a
formatting nit, so it raises `SODError` with a reason code that passive
authentication reports as-is.
"""
from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos, cms, core

from cardreader.lds import ASN1_DECODE_ERRORS

LDS_SECURITY_OBJECT_OID = "2.23.136.1.1.1"
SOD_TAG = 0x77
LDS_HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512")  # 9303-12 §5.4


class LDSSecurityObjectVersion(core.Integer):
    # LDSSecurityObjectVersion ::= INTEGER {v0(0), v1(1)}
    _map = {0: "v0", 1: "v1"}


class DataGroupNumber(core.Integer):
    # DataGroupNumber ::= INTEGER { dataGroup1(1), ..., dataGroup16(16) }
    _map = {n: f"dataGroup{n}" for n in range(1, 17)}


class DataGroupHash(core.Sequence):
    # DataGroupHash ::= SEQUENCE {
    _fields = [
        ("data_group_number", DataGroupNumber),  # dataGroupNumber DataGroupNumber,
        ("data_group_hash_value", core.OctetString),  # dataGroupHashValue OCTET STRING }
    ]


class DataGroupHashValues(core.SequenceOf):
    # SEQUENCE SIZE (2..ub-DataGroups) OF DataGroupHash
    _child_spec = DataGroupHash


class LDSVersionInfo(core.Sequence):
    # LDSVersionInfo ::= SEQUENCE {
    _fields = [
        ("lds_version", core.PrintableString),  # ldsVersion PRINTABLE STRING
        ("unicode_version", core.PrintableString),  # unicodeVersion PRINTABLE STRING }
    ]


class LDSSecurityObject(core.Sequence):
    # LDSSecurityObject ::= SEQUENCE {
    _fields = [
        ("version", LDSSecurityObjectVersion),  # version LDSSecurityObjectVersion,
        ("hash_algorithm", algos.DigestAlgorithm),  # hashAlgorithm DigestAlgorithmIdentifier,
        ("data_group_hash_values", DataGroupHashValues),  # dataGroupHashValues SEQUENCE ... OF DataGroupHash,
        ("lds_version_info", LDSVersionInfo, {"optional": True}),  # ldsVersionInfo LDSVersionInfo OPTIONAL }
    ]


class SODError(ValueError):
    """EF.SOD is malformed; `reason` is a machine-readable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SOD:
    """A parsed EF.SOD. `signed_data` is asn1crypto's `cms.SignedData`."""

    signed_data: cms.SignedData
    lds: LDSSecurityObject
    econtent: bytes  # the DER of the LDSSecurityObject as it was signed

    @property
    def hash_algorithm(self) -> str:
        return self.lds["hash_algorithm"]["algorithm"].native

    @property
    def dg_hashes(self) -> dict[int, bytes]:
        """Data group number → hash value, as listed in the LDSSecurityObject."""
        return {_dg_number(h): h["data_group_hash_value"].native for h in self.lds["data_group_hash_values"]}

    @property
    def lds_version(self) -> str | None:
        info = self.lds["lds_version_info"]
        return None if isinstance(info, core.Void) else info["lds_version"].native

    @property
    def signer_info(self) -> cms.SignerInfo:
        return self.signed_data["signer_infos"][0]

    @property
    def certificates(self) -> list:
        """The certificates embedded in SignedData (normally just the DS certificate)."""
        certs = self.signed_data["certificates"]
        if isinstance(certs, core.Void):
            return []
        return [c.chosen for c in certs if c.name == "certificate"]


def _dg_number(h: DataGroupHash) -> int:
    number = h["data_group_number"].native  # 'dataGroupN' inside 1..16, a bare int outside
    return int(number.removeprefix("dataGroup")) if isinstance(number, str) else number


def _strict_load(spec, data: bytes, what: str):
    """Load `data` as `spec`, refusing trailing bytes and any non-DER encoding."""
    try:
        obj = spec.load(data, strict=True)
        obj.native  # force a full parse so every nested error surfaces here
        reencoded = obj.dump(force=True)
    except ASN1_DECODE_ERRORS as exc:
        if "extra data" in str(exc) or "trailing" in str(exc).lower():
            raise SODError(f"{what}_trailing_bytes", str(exc)) from exc
        raise SODError(f"{what}_malformed", str(exc)) from exc
    if reencoded != data:
        raise SODError(f"{what}_not_der", "encoding differs from its DER re-encoding")
    return spec.load(data, strict=True)


def _unwrap_application_23(data: bytes) -> bytes:
    """Strip the 0x77 wrapper (DER definite length) and refuse trailing bytes."""
    if len(data) < 2 or data[0] != SOD_TAG:
        raise SODError("sod_malformed", "EF.SOD does not start with tag 0x77")
    first = data[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or len(data) < 2 + n:
            raise SODError("sod_malformed", "bad length in EF.SOD wrapper")
        length = int.from_bytes(data[2:2 + n], "big")
        offset = 2 + n
        if length < 0x80 or data[2] == 0:
            raise SODError("sod_not_der", "non-minimal length in EF.SOD wrapper")
    if len(data) < offset + length:
        raise SODError("sod_malformed", "EF.SOD is truncated")
    if len(data) > offset + length:
        raise SODError("sod_trailing_bytes", f"{len(data) - offset - length} bytes after EF.SOD")
    return data[offset:offset + length]


def _precheck_version(raw: bytes) -> None:
    """Report a wrong SignedData version as such: asn1crypto parses the
    content of pre-v3 SignedData differently and would only say 'malformed'."""
    try:
        version = cms.ContentInfo.load(raw)["content"]["version"].native
    except ASN1_DECODE_ERRORS:
        return  # the strict parse that follows names the problem
    if version != "v3":
        raise SODError("signed_data_version", f"SignedData version {version}, expected v3")


def parse_sod(data: bytes) -> SOD:
    """Parse EF.SOD bytes (with the 0x77 wrapper) strictly; raise `SODError`."""
    raw = _unwrap_application_23(bytes(data))
    _precheck_version(raw)
    content_info = _strict_load(cms.ContentInfo, raw, "sod")
    if content_info["content_type"].dotted != "1.2.840.113549.1.7.2":
        raise SODError("sod_not_signed_data", content_info["content_type"].dotted)
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    if encap["content_type"].dotted != LDS_SECURITY_OBJECT_OID:
        raise SODError("econtent_type", f"eContentType {encap['content_type'].dotted}")
    if isinstance(encap["content"], core.Void):
        raise SODError("econtent_missing", "SignedData has no encapsulated content")
    if len(signed_data["signer_infos"]) != 1:
        raise SODError("signer_info_count", f"{len(signed_data['signer_infos'])} SignerInfos, expected 1")
    econtent = encap["content"].contents
    lds = _strict_load(LDSSecurityObject, econtent, "lds_security_object")
    if lds["hash_algorithm"]["algorithm"].native not in LDS_HASHES:
        raise SODError("lds_hash_algorithm", str(lds["hash_algorithm"]["algorithm"].native))
    version = lds["version"].native
    if version not in ("v0", "v1"):
        raise SODError("lds_version", f"LDSSecurityObject version {version}")
    has_info = not isinstance(lds["lds_version_info"], core.Void)
    if (version == "v1") != has_info:
        raise SODError("lds_version", "ldsVersionInfo present iff version is v1")
    numbers = [_dg_number(h) for h in lds["data_group_hash_values"]]
    if any(not 1 <= n <= 16 for n in numbers):
        raise SODError("lds_data_group_number", "data group number outside 1..16")
    if len(set(numbers)) != len(numbers):
        raise SODError("lds_duplicate_data_group", "a data group is hashed twice")
    signer = signed_data["signer_infos"][0]
    # The SignerInfo's digest algorithm must be one the SignedData announces (RFC 5652 §5.1).
    announced = {a["algorithm"].dotted for a in signed_data["digest_algorithms"]}
    if signer["digest_algorithm"]["algorithm"].dotted not in announced:
        raise SODError("digest_algorithms_mismatch", "signer's digest algorithm not in SignedData.digestAlgorithms")
    if signer["sid"].name not in ("issuer_and_serial_number", "subject_key_identifier"):
        raise SODError("signer_identifier", signer["sid"].name)
    expected_si_version = "v1" if signer["sid"].name == "issuer_and_serial_number" else "v3"
    if signer["version"].native != expected_si_version:
        raise SODError("signer_info_version", f"SignerInfo version {signer['version'].native} for {signer['sid'].name}")
    return SOD(signed_data=signed_data, lds=lds, econtent=econtent)


def build_lds_security_object(dg_hashes: dict[int, bytes], digest: str, lds_version: tuple[str, str] | None = None) -> bytes:
    """DER of an LDSSecurityObject (v1 with LDSVersionInfo when `lds_version` is given)."""
    value = {
        "version": "v1" if lds_version else "v0",
        "hash_algorithm": {"algorithm": digest},
        "data_group_hash_values": [
            {"data_group_number": n, "data_group_hash_value": h} for n, h in sorted(dg_hashes.items())
        ],
    }
    if lds_version:
        value["lds_version_info"] = {"lds_version": lds_version[0], "unicode_version": lds_version[1]}
    return LDSSecurityObject(value).dump()
