"""A throw-away country PKI for the simulation and the tests: CSCA → DS → EF.SOD.

Certificates are assembled with asn1crypto and signed through `SigningKey`,
so the same code can emit what pyca's certificate builder cannot: ECDSA keys
with explicit domain parameters (ICAO 9303-12 requires them in the CSCA/DS
chain), on brainpool curves pyca refuses and on curves nobody has a name for.
Profiles follow 9303-12 §7.1: CSCA with basicConstraints cA and keyCertSign,
DS with digitalSignature, SKI/AKI on both, the country in C= of subject and
issuer.

Nothing here is for production keys; it exists so the reader, the gate and
the tests can run complete passive authentication end to end.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field

import ecdsa
from asn1crypto import algos, cms, core, crl, keys, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from ecdsa.ellipticcurve import CurveFp, PointJacobi
from ecdsa.util import sigencode_der

from cardreader.lds.sod import LDS_SECURITY_OBJECT_OID, build_lds_security_object
from cardreader.pki import iso9796_2
from cardreader.pki.countries import certificate_country
from cardreader.pki.signatures import HASHES
from cardreader.pki.trust import (
    DOCUMENT_TYPE_LIST_OID, MASTER_LIST_OID, ML_SIGNER_EKU_OID, CscaMasterList, DocumentTypeListSyntax)


ALGORITHMS = (
    "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ecdsa-brainpoolP256r1", "ecdsa-brainpoolP384r1",
    "ecdsa-brainpoolP256r1-explicit", "ecdsa-p256-explicit", "ecdsa-brainpoolP224r1",
    "ecdsa-brainpoolP224r1-explicit", "ecdsa-national-explicit", "rsa2048", "rsa3072", "rsa-pss",
)
_PYCA = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1,
         "brainpoolP256r1": ec.BrainpoolP256R1, "brainpoolP384r1": ec.BrainpoolP384R1}
_ECDSA_NAME = {"p256": "NIST256p", "p384": "NIST384p", "p521": "NIST521p", "brainpoolP256r1": "BRAINPOOLP256r1",
               "brainpoolP384r1": "BRAINPOOLP384r1", "brainpoolP224r1": "BRAINPOOLP224r1"}


def national_curve() -> ecdsa.curves.Curve:
    """A sound curve no library names: brainpoolP256r1 moved by the isomorphism (x, y) → (u²x, u³y).

    a' = u⁴a, b' = u⁶b keeps the group order and cofactor, so it is a valid
    prime-order domain that only explicit parameters can describe, the
    situation of a national curve.
    """
    base = ecdsa.curves.BRAINPOOLP256r1
    p, u = base.curve.p(), 0xC0FFEE
    fp = CurveFp(p, base.curve.a() * pow(u, 4, p) % p, base.curve.b() * pow(u, 6, p) % p, 1)
    g = base.generator
    gen = PointJacobi(fp, g.x() * u * u % p, g.y() * pow(u, 3, p) % p, 1, base.order, generator=True)
    return ecdsa.curves.Curve("national-256", fp, gen, (1, 3, 6, 1, 4, 1, 99999, 1))


def explicit_parameters(curve: ecdsa.curves.Curve) -> keys.ECDomainParameters:
    """SpecifiedECDomain (RFC 3279 / BSI TR-03111) for a prime curve, with cofactor."""
    fp, g = curve.curve, curve.generator
    size = (fp.p().bit_length() + 7) // 8
    return keys.ECDomainParameters(name="specified", value={
        "version": "ecdpVer1",
        "field_id": {"field_type": "prime_field", "parameters": fp.p()},
        "curve": {"a": (fp.a() % fp.p()).to_bytes(size, "big"), "b": (fp.b() % fp.p()).to_bytes(size, "big")},
        "base": b"\x04" + g.x().to_bytes(size, "big") + g.y().to_bytes(size, "big"),
        "order": curve.order,
        "cofactor": fp.cofactor() or 1,
    })


@dataclass
class SigningKey:
    """A private key plus how its public half is published (named or explicit curve)."""

    algorithm: str
    private: object  # pyca private key or ecdsa.SigningKey
    spki: keys.PublicKeyInfo

    @classmethod
    def generate(cls, algorithm: str) -> SigningKey:
        if algorithm.startswith("rsa"):
            bits = 2048 if algorithm in ("rsa-pss", "rsa2048") else int(algorithm[3:])
            private = rsa.generate_private_key(65537, bits)
            spki = keys.PublicKeyInfo.load(private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
            return cls(algorithm, private, spki)
        if not algorithm.startswith("ecdsa-"):
            raise ValueError(f"unknown test PKI algorithm {algorithm!r}")
        name = algorithm.removeprefix("ecdsa-").removesuffix("-explicit")
        explicit = algorithm.endswith("-explicit")
        curve = national_curve() if name == "national" else ecdsa.curves.curve_by_name(_ECDSA_NAME[name])
        if name in _PYCA:
            private = ec.generate_private_key(_PYCA[name]())
            point = private.public_key().public_bytes(serialization.Encoding.X962,
                                                      serialization.PublicFormat.UncompressedPoint)
        else:
            private = ecdsa.SigningKey.generate(curve=curve)
            point = private.get_verifying_key().to_string("uncompressed")
        params = (explicit_parameters(curve) if explicit
                  else keys.ECDomainParameters(name="named", value=".".join(map(str, curve.oid))))
        spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "ec", "parameters": params}, "public_key": point})
        return cls(algorithm, private, spki)

    def signature_algorithm(self, digest: str) -> algos.SignedDigestAlgorithm:
        if self.algorithm == "rsa-pss":
            return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": {
                "hash_algorithm": {"algorithm": digest},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
                "salt_length": HASHES[digest].digest_size,
                "trailer_field": "trailer_field_bc",
            }})
        suffix = "rsa" if self.algorithm.startswith("rsa") else "ecdsa"
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest}_{suffix}"})

    def sign(self, data: bytes, digest: str) -> bytes:
        h = HASHES[digest]()
        if isinstance(self.private, ecdsa.SigningKey):
            return self.private.sign_deterministic(data, hashfunc=getattr(hashlib, digest), sigencode=sigencode_der)
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return self.private.sign(data, ec.ECDSA(h))
        if self.algorithm == "rsa-pss":
            return self.private.sign(data, padding.PSS(padding.MGF1(HASHES[digest]()), h.digest_size), h)
        return self.private.sign(data, padding.PKCS1v15(), h)

    @property
    def key_identifier(self) -> bytes:
        """SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1)."""
        return self.spki.sha1


def _name(country: str, cn: str) -> x509.Name:
    """C= is the ISO alpha-2 code (9303-12 §7.1.1) even when the PKI is created with DG1's alpha-3 code."""
    return x509.Name.build({"country_name": certificate_country(country) or country, "organization_name": f"Government of {country}",
                            "common_name": cn})


def _ext(oid: str, value, critical: bool = False) -> dict:
    return {"extn_id": oid, "critical": critical, "extn_value": value}


def issue_certificate(*, subject: x509.Name, subject_key: SigningKey, issuer: x509.Name, issuer_key: SigningKey,
                      not_before: dt.datetime, not_after: dt.datetime, extensions: list[dict],
                      digest: str = "sha256", serial: int | None = None) -> bytes:
    """Assemble and sign a v3 certificate; returns DER."""
    algorithm = issuer_key.signature_algorithm(digest)
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": serial or int.from_bytes(os.urandom(8), "big") >> 1 | 1,
        "signature": algorithm,
        "issuer": issuer,
        "validity": {"not_before": x509.Time(name="utc_time", value=not_before),
                     "not_after": x509.Time(name="utc_time" if not_after.year < 2050 else "general_time",
                                            value=not_after)},
        "subject": subject,
        "subject_public_key_info": subject_key.spki,
        "extensions": extensions,
    })
    signature = issuer_key.sign(tbs.dump(), digest)
    return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algorithm,
                             "signature_value": signature}).dump()


def _key_usage(*bits: str) -> x509.KeyUsage:
    return x509.KeyUsage(set(bits))


def _document_type_list(types: tuple[str, ...]) -> core.ParsableOctetString:
    return core.ParsableOctetString(DocumentTypeListSyntax({"version": 0, "doc_type_list": list(types)}).dump())


def _csca_certificate(name: x509.Name, key: SigningKey, signer: SigningKey, now: dt.datetime, digest: str) -> bytes:
    """A CSCA certificate: self-signed when `signer` is `key`, else a link certificate."""
    return issue_certificate(
        subject=name, subject_key=key, issuer=name, issuer_key=signer, digest=digest,
        not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=365 * 15),
        extensions=[
            _ext("basic_constraints", {"ca": True, "path_len_constraint": 0}, critical=True),
            _ext("key_usage", _key_usage("key_cert_sign", "crl_sign"), critical=True),
            _ext("key_identifier", key.key_identifier),
            _ext("authority_key_identifier", {"key_identifier": signer.key_identifier}),
        ])


@dataclass
class TestPKI:
    """A country's CSCA and one Document Signer. Certificates are DER bytes."""

    __test__ = False  # a fixture builder, not a pytest test class

    country: str
    algorithm: str
    csca_key: SigningKey
    csca_cert: bytes
    ds_key: SigningKey
    ds_cert: bytes
    now: dt.datetime
    digest: str = "sha256"
    _ml_signer: tuple[SigningKey, bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, country: str = "UTO", algorithm: str = "ecdsa-p256", now: dt.datetime | None = None, *,
               ds_algorithm: str | None = None, digest: str = "sha256") -> TestPKI:
        now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
        csca_key = SigningKey.generate(algorithm)
        name = _name(country, f"CSCA {country}")
        pki = cls(country, algorithm, csca_key, _csca_certificate(name, csca_key, csca_key, now, digest),
                  csca_key, b"", now, digest)
        return pki.new_ds(algorithm=ds_algorithm)

    def rollover(self) -> tuple[TestPKI, bytes]:
        """A new CSCA key under the same name (as countries do) and the link certificate old → new."""
        key = SigningKey.generate(self.algorithm)
        new = dataclasses.replace(self, csca_key=key, _ml_signer=None,
                                  csca_cert=_csca_certificate(self.csca_name, key, key, self.now, self.digest))
        link = _csca_certificate(self.csca_name, key, self.csca_key, self.now, self.digest)
        return new.new_ds(), link

    @property
    def csca_name(self) -> x509.Name:
        return x509.Certificate.load(self.csca_cert).subject

    def issue(self, *, cn: str, key: SigningKey, key_usage: tuple[str, ...], not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, extra_extensions: list[dict] = (), country: str | None = None,
              issuer_key: SigningKey | None = None, issuer_name: x509.Name | None = None) -> bytes:
        """A certificate signed by this CSCA (or by `issuer_key`) with the 9303-12 end-entity profile."""
        issuer_key = issuer_key or self.csca_key
        return issue_certificate(
            subject=_name(country or self.country, cn), subject_key=key, issuer=issuer_name or self.csca_name,
            issuer_key=issuer_key, digest=self.digest,
            not_before=not_before or self.now - dt.timedelta(days=1),
            not_after=not_after or self.now + dt.timedelta(days=365 * 10 + 90),
            extensions=[
                _ext("key_usage", _key_usage(*key_usage), critical=True),
                _ext("key_identifier", key.key_identifier),
                _ext("authority_key_identifier", {"key_identifier": issuer_key.key_identifier}),
                *extra_extensions,
            ])

    def new_ds(self, *, algorithm: str | None = None, not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None, extra_extensions: list[dict] = (),
               country: str | None = None, document_types: tuple[str, ...] | None = ("P", "I")) -> TestPKI:
        """A copy of this PKI with a fresh Document Signer under the same CSCA.

        `document_types` fills the optional DocumentTypeList extension (None leaves it out).
        """
        key = SigningKey.generate(algorithm or self.algorithm)
        types = [_ext(DOCUMENT_TYPE_LIST_OID, _document_type_list(document_types))] if document_types else []
        cert = self.issue(cn=f"Document Signer {self.country}", key=key, key_usage=("digital_signature",),
                          not_before=not_before, not_after=not_after, country=country,
                          extra_extensions=[*types, *extra_extensions])
        return dataclasses.replace(self, ds_key=key, ds_cert=cert)

    @property
    def ds_serial(self) -> int:
        return x509.Certificate.load(self.ds_cert).serial_number

    def crl(self, revoked: list[int | bytes] = (), *, this_update: dt.datetime | None = None,
            next_update: dt.datetime | None = None) -> bytes:
        """A CRL from this CSCA revoking the given serials or certificates (DER)."""
        this_update = this_update or self.now - dt.timedelta(hours=1)
        next_update = next_update or this_update + dt.timedelta(days=90)
        serials = [x509.Certificate.load(r).serial_number if isinstance(r, bytes) else r for r in revoked]
        algorithm = self.csca_key.signature_algorithm(self.digest)
        tbs = crl.TbsCertList({
            "version": "v2", "signature": algorithm, "issuer": self.csca_name,
            "this_update": x509.Time(name="utc_time", value=this_update),
            "next_update": x509.Time(name="utc_time", value=next_update),
            "revoked_certificates": [{"user_certificate": s,
                                      "revocation_date": x509.Time(name="utc_time", value=this_update)}
                                     for s in serials] or None,
            "crl_extensions": [
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": self.csca_key.key_identifier}},
                {"extn_id": "crl_number", "critical": False, "extn_value": 1},
            ],
        })
        if not serials:
            del tbs["revoked_certificates"]
        return crl.CertificateList({"tbs_cert_list": tbs, "signature_algorithm": algorithm,
                                    "signature": self.csca_key.sign(tbs.dump(), self.digest)}).dump()

    @property
    def ml_signer(self) -> tuple[SigningKey, bytes]:
        """The Master List Signer (key, certificate) under this CSCA, made on first use."""
        if self._ml_signer is None:
            key = SigningKey.generate(self.algorithm)
            cert = self.issue(cn=f"Master List Signer {self.country}", key=key, key_usage=("digital_signature",),
                              extra_extensions=[_ext("extended_key_usage", [ML_SIGNER_EKU_OID], critical=True)])
            self._ml_signer = (key, cert)
        return self._ml_signer

    def masterlist(self, cscas: list[bytes] | None = None, *, signer: tuple[SigningKey, bytes] | None = None) -> bytes:
        """A CSCA Master List (ICAO 9303-12 §9) signed by this country's Master List Signer (DER)."""
        key, cert = signer or self.ml_signer
        content = CscaMasterList({"version": 0, "cert_list": [x509.Certificate.load(c) for c in
                                                              (cscas if cscas is not None else [self.csca_cert])]})
        return cms_sign(content.dump(), MASTER_LIST_OID, key, cert, self.digest).dump()


def aa_sign(private_key, challenge: bytes, digest: str | None = None) -> bytes:
    """The simulated chip's INTERNAL AUTHENTICATE answer: ISO/IEC 9796-2 scheme 1 for RSA
    (SHA-1 with trailer 0xBC unless `digest` says otherwise), plain r||s ECDSA (BSI TR-03111,
    `digest` as DG14's ActiveAuthenticationInfo names it, default SHA-256) for EC keys."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return iso9796_2.sign(private_key, challenge, digest=digest or "sha1")
    r, s = decode_dss_signature(private_key.sign(challenge, ec.ECDSA(HASHES[digest or "sha256"]())))
    size = (private_key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def cms_sign(econtent: bytes, content_type: str, key: SigningKey, cert_der: bytes, digest: str, *,
             signed_attributes: bool = True, sid: str = "issuer_and_serial_number",
             include_certificate: bool = True, signed_data_version: str = "v3",
             signing_time: dt.datetime | None = None) -> cms.ContentInfo:
    """CMS SignedData over `econtent` as ICAO profiles it (one SignerInfo, DS cert embedded)."""
    cert = x509.Certificate.load(cert_der)
    if sid == "subject_key_identifier":
        signer_id = cms.SignerIdentifier(name="subject_key_identifier", value=key.key_identifier)
    else:
        signer_id = cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number})
    signer = {
        "version": "v3" if sid == "subject_key_identifier" else "v1",
        "sid": signer_id,
        "digest_algorithm": {"algorithm": digest},
        "signature_algorithm": key.signature_algorithm(digest),
    }
    if signed_attributes:
        attrs = [
            {"type": "content_type", "values": [content_type]},
            {"type": "message_digest", "values": [hashlib.new(digest, econtent).digest()]},
        ]
        if signing_time:
            attrs.append({"type": "signing_time", "values": [cms.Time(name="utc_time", value=signing_time)]})
        signed_attrs = cms.CMSAttributes(attrs)
        signer["signed_attrs"] = signed_attrs
        signer["signature"] = key.sign(signed_attrs.dump(), digest)
    else:
        signer["signature"] = key.sign(econtent, digest)
    signed = {
        "version": signed_data_version,
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": {"content_type": content_type, "content": core.ParsableOctetString(econtent)},
        "signer_infos": [signer],
    }
    if include_certificate:
        signed["certificates"] = [cert]
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})


def wrap_sod(content_info_der: bytes) -> bytes:
    """EF.SOD = [APPLICATION 23] ContentInfo (tag 0x77, DER length)."""
    n = len(content_info_der)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return b"\x77" + length + content_info_der


def sign_sod(dgs: dict[int, bytes], pki: TestPKI, digest: str = "sha256", *, signature_digest: str | None = None,
             lds_version: tuple[str, str] | None = ("0108", "040000"), econtent: bytes | None = None,
             **cms_options) -> bytes:
    """EF.SOD bytes (tag 0x77) hashing every data group in `dgs` (number → file bytes incl. tag).

    `econtent` replaces the LDSSecurityObject (tests use it to sign malformed
    ones); `signature_digest` lets the signature hash differ from the LDS
    hash, as 9303-10 allows; `cms_options` go to `cms_sign` (signed_attributes,
    sid, include_certificate, ...).
    """
    if econtent is None:
        hashed = {n: hashlib.new(digest, data).digest() for n, data in dgs.items()}
        econtent = build_lds_security_object(hashed, digest, lds_version)
    content_info = cms_sign(econtent, LDS_SECURITY_OBJECT_OID, pki.ds_key, pki.ds_cert,
                            signature_digest or digest, **cms_options)
    return wrap_sod(content_info.dump())
