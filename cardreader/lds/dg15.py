"""DG15: the Active Authentication public key (ICAO 9303-11 §6.1):
6F { SubjectPublicKeyInfo }, RSA or EC, the EC domain named or explicit."""
from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import keys
from cryptography.hazmat.primitives import serialization

from cardreader.lds import ASN1_DECODE_ERRORS, LDSError, tlv
from cardreader.pki.signatures import PublicKey, SignatureError, load_public_key

TAG = 0x6F


class DG15Error(LDSError):
    """DG15 holds no usable public key."""


@dataclass(frozen=True, repr=False)
class DG15:
    spki_der: bytes
    public_key: PublicKey  # .kind 'rsa'|'ec', .key (pyca or ecdsa object), .curve

    @property
    def key(self) -> object:
        return self.public_key.key

    @property
    def description(self) -> str:
        return self.public_key.description

    @classmethod
    def parse(cls, data: bytes) -> "DG15":
        spki_der = tlv.parse_one(data, TAG).value
        try:
            spki = keys.PublicKeyInfo.load(spki_der, strict=True)
            if spki.dump(force=True) != spki_der:
                raise DG15Error("SubjectPublicKeyInfo is not DER", "not_der")
            return cls(spki_der, load_public_key(spki))
        except SignatureError as e:
            raise DG15Error(f"unusable key: {e.reason}", e.reason) from None
        except ASN1_DECODE_ERRORS as e:
            raise DG15Error(f"SubjectPublicKeyInfo malformed ({type(e).__name__})", "bad_public_key") from None

    def __repr__(self) -> str:
        return f"DG15({self.description})"

    def as_dict(self) -> dict[str, object]:
        return {"algorithm": self.public_key.kind, "key": self.description}


def build_dg15(public_key) -> bytes:
    """DG15 from a pyca public key object, or from SubjectPublicKeyInfo DER bytes."""
    der = public_key if isinstance(public_key, bytes) else public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return tlv.encode(TAG, der)
