"""SecurityInfos (ICAO 9303-11 §9.2): what EF.CardAccess and DG14 say the chip can do.

The ASN.1 follows 9303-11 §9.2 line by line; `SecurityInfo` is the generic
shape (protocol OID + ANY), and `parse_security_infos` re-reads each element
with the specific class its OID names. Builders at the end are what the test
issuer uses to write EF.CardAccess and DG14.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto.core import Any, Integer, ObjectIdentifier, Sequence, SetOf
from asn1crypto.keys import PublicKeyInfo

from cardreader.lds import LDSError

BSI = "0.4.0.127.0.7"
_CIPHERS = {1: "3DES-CBC-CBC", 2: "AES-CBC-CMAC-128", 3: "AES-CBC-CMAC-192", 4: "AES-CBC-CMAC-256"}
SM_CIPHER = {1: "3DES", 2: "AES-128", 3: "AES-192", 4: "AES-256"}


def _protocol_names() -> dict[str, str]:
    names = {f"{BSI}.2.2.1.1": "id-PK-DH", f"{BSI}.2.2.1.2": "id-PK-ECDH", "2.23.136.1.1.5": "id-AA"}
    for n, ka in ((1, "DH"), (2, "ECDH")):
        names[f"{BSI}.2.2.3.{n}"] = f"id-CA-{ka}"
        for c, suffix in _CIPHERS.items():
            names[f"{BSI}.2.2.3.{n}.{c}"] = f"id-CA-{ka}-{suffix}"
    for n, kind in ((1, "DH-GM"), (2, "ECDH-GM"), (3, "DH-IM"), (4, "ECDH-IM"), (6, "ECDH-CAM")):
        names[f"{BSI}.2.2.4.{n}"] = f"id-PACE-{kind}"  # as PACEDomainParameterInfo.protocol
        for c, suffix in _CIPHERS.items():
            names[f"{BSI}.2.2.4.{n}.{c}"] = f"id-PACE-{kind}-{suffix}"
    for c, h in enumerate(("SHA1", "SHA224", "SHA256", "SHA384", "SHA512"), start=1):
        names[f"{BSI}.1.1.4.1.{c}"] = f"ecdsa-plain-{h}"
    return names


class SecurityProtocol(ObjectIdentifier):
    _map = _protocol_names()


# SecurityInfos ::= SET OF SecurityInfo
# SecurityInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER, requiredData ANY DEFINED BY protocol,
#                             optionalData ANY DEFINED BY protocol OPTIONAL }
class SecurityInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("required_data", Any),
        ("optional_data", Any, {"optional": True}),
    ]


class SecurityInfos(SetOf):
    _child_spec = SecurityInfo


# PACEInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER(id-PACE-...), version INTEGER, -- MUST be 2
#                         parameterId INTEGER OPTIONAL }
class PACEInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("version", Integer),
        ("parameter_id", Integer, {"optional": True}),
    ]


# AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY DEFINED BY algorithm OPTIONAL }
class DomainParameters(Sequence):
    _fields = [("algorithm", ObjectIdentifier), ("parameters", Any, {"optional": True})]


# PACEDomainParameterInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER(id-PACE-DH-GM | id-PACE-ECDH-GM | ...),
#                                        domainParameter AlgorithmIdentifier, parameterId INTEGER OPTIONAL }
class PACEDomainParameterInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("domain_parameter", DomainParameters),
        ("parameter_id", Integer, {"optional": True}),
    ]


# ChipAuthenticationInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER(id-CA-...), version INTEGER, -- MUST be 1
#                                       keyId INTEGER OPTIONAL }
class ChipAuthenticationInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("version", Integer),
        ("key_id", Integer, {"optional": True}),
    ]


# ChipAuthenticationPublicKeyInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER(id-PK-DH | id-PK-ECDH),
#                                                chipAuthenticationPublicKey SubjectPublicKeyInfo,
#                                                keyId INTEGER OPTIONAL }
class ChipAuthenticationPublicKeyInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("chip_authentication_public_key", PublicKeyInfo),
        ("key_id", Integer, {"optional": True}),
    ]


# ActiveAuthenticationInfo ::= SEQUENCE { protocol OBJECT IDENTIFIER(id-AA), version INTEGER, -- MUST be 1
#                                         signatureAlgorithm OBJECT IDENTIFIER }
class ActiveAuthenticationInfo(Sequence):
    _fields = [
        ("protocol", SecurityProtocol),
        ("version", Integer),
        ("signature_algorithm", SecurityProtocol),
    ]


class SecurityInfoError(LDSError):
    """EF.CardAccess or DG14 content that is not valid SecurityInfos."""


@dataclass(frozen=True)
class PaceOption:
    """One PACE configuration the chip offers, decoded for the protocol code."""

    protocol: str  # dotted OID
    name: str  # e.g. 'id-PACE-ECDH-GM-AES-CBC-CMAC-128'
    parameter_id: int | None
    mapping: str  # 'GM' | 'IM' | 'CAM'
    agreement: str  # 'DH' | 'ECDH'
    cipher: str  # '3DES' | 'AES-128' | 'AES-192' | 'AES-256'


@dataclass(frozen=True)
class ChipAuthenticationKey:
    protocol: str  # 'id-PK-DH' | 'id-PK-ECDH'
    public_key: PublicKeyInfo
    key_id: int | None


@dataclass(frozen=True)
class ChipAuthenticationOption:
    protocol: str  # dotted OID
    agreement: str  # 'DH' | 'ECDH'
    cipher: str
    key_id: int | None


@dataclass
class ParsedSecurityInfos:
    pace: list[PaceOption] = field(default_factory=list)
    pace_domain_parameters: list[PACEDomainParameterInfo] = field(default_factory=list)
    chip_authentication: list[ChipAuthenticationOption] = field(default_factory=list)
    chip_authentication_keys: list[ChipAuthenticationKey] = field(default_factory=list)
    active_authentication: ActiveAuthenticationInfo | None = None
    unknown: list[str] = field(default_factory=list)  # OIDs this reader does not use (TA, TR-03110 extras)


def _arc(dotted: str, prefix: str) -> list[int] | None:
    if not dotted.startswith(prefix + "."):
        return None
    try:
        return [int(x) for x in dotted[len(prefix) + 1:].split(".")]
    except ValueError:
        return None


def parse_security_infos(data: bytes) -> ParsedSecurityInfos:
    """Decode a DER SET OF SecurityInfo (EF.CardAccess as is; DG14 without its '6E' wrapper).

    Raises `SecurityInfoError` for anything that does not decode; unknown
    protocols are listed, not rejected (chips carry TA and other infos).
    """
    try:
        infos = SecurityInfos.load(bytes(data), strict=True)
        out = ParsedSecurityInfos()
        for info in infos:
            raw = info.dump()
            oid = info["protocol"].dotted
            pace = _arc(oid, f"{BSI}.2.2.4")
            ca = _arc(oid, f"{BSI}.2.2.3")
            if pace and len(pace) == 2 and pace[0] in (1, 2, 3, 4, 6) and pace[1] in SM_CIPHER:
                p = PACEInfo.load(raw, strict=True)
                if p["version"].native != 2:
                    raise SecurityInfoError(f"PACEInfo version {p['version'].native}", "bad_version")
                kind = {1: ("GM", "DH"), 2: ("GM", "ECDH"), 3: ("IM", "DH"), 4: ("IM", "ECDH"),
                        6: ("CAM", "ECDH")}[pace[0]]
                out.pace.append(PaceOption(oid, SecurityProtocol._map[oid], p["parameter_id"].native,
                                           kind[0], kind[1], SM_CIPHER[pace[1]]))
            elif pace and len(pace) == 1 and pace[0] in (1, 2, 3, 4, 6):
                out.pace_domain_parameters.append(PACEDomainParameterInfo.load(raw, strict=True))
            elif ca and len(ca) == 2 and ca[0] in (1, 2) and ca[1] in SM_CIPHER:
                c = ChipAuthenticationInfo.load(raw, strict=True)
                out.chip_authentication.append(ChipAuthenticationOption(
                    oid, "DH" if ca[0] == 1 else "ECDH", SM_CIPHER[ca[1]], c["key_id"].native))
            elif oid in (f"{BSI}.2.2.1.1", f"{BSI}.2.2.1.2"):
                k = ChipAuthenticationPublicKeyInfo.load(raw, strict=True)
                key = k["chip_authentication_public_key"]
                key.native  # force full decoding so a broken key fails here, typed
                out.chip_authentication_keys.append(ChipAuthenticationKey(
                    SecurityProtocol._map[oid], key, k["key_id"].native))
            elif oid == "2.23.136.1.1.5":
                a = ActiveAuthenticationInfo.load(raw, strict=True)
                a.native
                out.active_authentication = a
            else:
                out.unknown.append(oid)
        return out
    except SecurityInfoError:
        raise
    except Exception as e:  # asn1crypto raises ValueError/TypeError/OverflowError on bad input
        raise SecurityInfoError(f"SecurityInfos do not decode: {type(e).__name__}", "malformed_security_infos") from None


# --------------------------------------------------------------------------- builders

def _oid_of(name: str) -> str:
    for dotted, n in SecurityProtocol._map.items():
        if n == name:
            return dotted
    raise ValueError(f"unknown protocol name {name}")


def pace_info(protocol: str = "id-PACE-ECDH-GM-AES-CBC-CMAC-128", parameter_id: int | None = 13) -> SecurityInfo:
    info = {"protocol": _oid_of(protocol), "version": 2}
    if parameter_id is not None:
        info["parameter_id"] = parameter_id
    return SecurityInfo.load(PACEInfo(info).dump())


def pace_domain_parameter_info(protocol: str, algorithm: str, parameters_der: bytes,
                               parameter_id: int) -> SecurityInfo:
    """Explicit PACE domain parameters for a proprietary parameter ID (32-255).

    `protocol`: 'id-PACE-ECDH-GM' etc.; `algorithm`: dotted OID (id-ecPublicKey
    with SpecifiedECDomain, or dhpublicnumber with X9.42 DomainParameters).
    """
    return SecurityInfo.load(PACEDomainParameterInfo({
        "protocol": _oid_of(protocol),
        "domain_parameter": {"algorithm": algorithm, "parameters": Any.load(parameters_der)},
        "parameter_id": parameter_id}).dump())


def chip_authentication_info(protocol: str = "id-CA-ECDH-AES-CBC-CMAC-128", key_id: int | None = None) -> SecurityInfo:
    info = {"protocol": _oid_of(protocol), "version": 1}
    if key_id is not None:
        info["key_id"] = key_id
    return SecurityInfo.load(ChipAuthenticationInfo(info).dump())


def chip_authentication_public_key_info(spki_der: bytes, key_id: int | None = None) -> SecurityInfo:
    """`spki_der`: the chip's CA public key as SubjectPublicKeyInfo (EC or DH)."""
    key = PublicKeyInfo.load(spki_der)
    proto = "id-PK-ECDH" if key["algorithm"]["algorithm"].native == "ec" else "id-PK-DH"
    info = {"protocol": _oid_of(proto), "chip_authentication_public_key": key}
    if key_id is not None:
        info["key_id"] = key_id
    return SecurityInfo.load(ChipAuthenticationPublicKeyInfo(info).dump())


def active_authentication_info(signature_algorithm: str = "ecdsa-plain-SHA256") -> SecurityInfo:
    return SecurityInfo.load(ActiveAuthenticationInfo(
        {"protocol": _oid_of("id-AA"), "version": 1,
         "signature_algorithm": _oid_of(signature_algorithm)}).dump())


def encode_security_infos(infos: list[SecurityInfo]) -> bytes:
    """DER SET OF (sorted, as DER requires): EF.CardAccess content, or DG14's value."""
    return SecurityInfos(infos).dump(force=True)
