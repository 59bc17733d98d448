"""DG14: the chip's SecurityInfos for Chip Authentication (and the AA
signature algorithm when AA uses ECDSA): 6E { SET OF SecurityInfo }
(ICAO 9303-11 §9.2). The ASN.1 lives in `security_infos`; this wraps the file."""
from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardreader.lds import security_infos as si
from cardreader.lds import tlv

TAG = 0x6E
# ICAO 9303-11 §9.5.1 standardized domain parameters, by curve name
PARAMETER_IDS = {"secp256r1": 12, "brainpoolP256r1": 13, "brainpoolP320r1": 14, "secp384r1": 15,
                 "brainpoolP384r1": 16, "brainpoolP512r1": 17, "secp521r1": 18}


@dataclass(frozen=True)
class DG14:
    infos: si.ParsedSecurityInfos

    @classmethod
    def parse(cls, data: bytes) -> "DG14":
        return cls(si.parse_security_infos(tlv.parse_one(data, TAG).value))

    def as_dict(self) -> dict[str, object]:
        i = self.infos
        return {"chip_authentication": [{"agreement": c.agreement, "cipher": c.cipher, "key_id": c.key_id}
                                        for c in i.chip_authentication],
                "chip_authentication_keys": [{"protocol": k.protocol, "key_id": k.key_id,
                                              "algorithm": k.public_key["algorithm"]["algorithm"].native}
                                             for k in i.chip_authentication_keys],
                "active_authentication": None if i.active_authentication is None else
                i.active_authentication["signature_algorithm"].native,
                "pace": [p.name for p in i.pace], "unknown": i.unknown}


def build_dg14(ca_public_key: ec.EllipticCurvePublicKey | None, *,
               aa_signature_algorithm: str | None = None,
               ca_protocol: str = "id-CA-ECDH-AES-CBC-CMAC-128") -> bytes:
    """DG14 announcing a CA key (ECDH) and, for ECDSA Active Authentication, its algorithm."""
    infos = []
    if ca_public_key is not None:
        spki = ca_public_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        infos += [si.chip_authentication_info(ca_protocol), si.chip_authentication_public_key_info(spki)]
    if aa_signature_algorithm is not None:
        infos.append(si.active_authentication_info(aa_signature_algorithm))
    if not infos:
        raise ValueError("DG14 needs a CA key or an AA algorithm")
    return tlv.encode(TAG, si.encode_security_infos(infos))


def build_card_access(curve: str = "brainpoolP256r1",
                      protocol: str = "id-PACE-ECDH-GM-AES-CBC-CMAC-128") -> bytes:
    """EF.CardAccess offering PACE on a standardized curve (a bare SET, no wrapper tag)."""
    return si.encode_security_infos([si.pace_info(protocol, PARAMETER_IDS[curve])])
