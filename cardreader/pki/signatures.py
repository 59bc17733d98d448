"""One signature-verification layer for SODs, certificates, CRLs and master lists.

Covers what ICAO 9303-12 allows: RSA PKCS#1 v1.5, RSASSA-PSS (with its own
hash / MGF1 hash / salt length) and ECDSA, on named curves or on curves given
by explicit domain parameters (which 9303-12 *requires* in the CSCA/DS chain).

pyca/cryptography only knows a handful of curves and refuses most explicit
parameters, so an explicit domain is first matched against the known curves
(NIST/SEC, brainpool r1 and t1) by comparing p, a, b, G and n; a match is
verified with pyca when pyca has that curve and with `ecdsa` otherwise. A
domain that matches nothing (a national curve) is validated (prime field,
non-singular, G on the curve, n prime and n·G = O, Hasse-consistent cofactor)
and then verified on that domain with `ecdsa`. Failures raise
`SignatureError` with a reason code; they never return "maybe".
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import ecdsa
from asn1crypto import algos, core, keys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from ecdsa.ellipticcurve import INFINITY, CurveFp, PointJacobi
from ecdsa.numbertheory import is_prime
from ecdsa.util import sigdecode_der, sigdecode_string

from cardreader.lds import ASN1_DECODE_ERRORS

HASHES = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}

# Curves pyca/cryptography implements, keyed by the `ecdsa` package's curve name.
_PYCA_CURVES = {
    "NIST192p": ec.SECP192R1, "NIST224p": ec.SECP224R1, "NIST256p": ec.SECP256R1,
    "NIST384p": ec.SECP384R1, "NIST521p": ec.SECP521R1, "SECP256k1": ec.SECP256K1,
    "BRAINPOOLP256r1": ec.BrainpoolP256R1, "BRAINPOOLP384r1": ec.BrainpoolP384R1,
    "BRAINPOOLP512r1": ec.BrainpoolP512R1,
}
# Every short-Weierstrass prime curve `ecdsa` knows (NIST/SEC and brainpool r1 + t1).
KNOWN_CURVES = [c for c in ecdsa.curves.curves if isinstance(c.curve, CurveFp)]


class SignatureError(Exception):
    """A signature did not verify or could not be checked; `reason` is a code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def hash_name(algorithm) -> str:
    """'sha256' etc. from an asn1crypto DigestAlgorithm or a name; refuse what ICAO doesn't allow."""
    if isinstance(algorithm, str):
        name = algorithm
    else:
        name = algorithm["algorithm"].native
        params = algorithm["parameters"]
        if not isinstance(params, (core.Void, core.Null)):  # RFC 5754: absent or NULL, nothing else
            raise SignatureError("hash_parameters_invalid", str(name))
    if name not in HASHES:
        raise SignatureError("unsupported_hash_algorithm", str(name))
    return name


def digest(name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name(name), data).digest()


@dataclass(frozen=True)
class ECDomain:
    """A prime-field curve: either a known one (`known` set) or a validated explicit domain."""

    name: str
    curve: ecdsa.curves.Curve
    pyca: type | None  # the pyca curve class when pyca implements this curve

    @property
    def order(self) -> int:
        return self.curve.order


def _curve_tuple(c: ecdsa.curves.Curve) -> tuple:
    fp, g = c.curve, c.generator
    return fp.p(), fp.a() % fp.p(), fp.b() % fp.p(), g.x(), g.y(), c.order


_BY_PARAMS = {_curve_tuple(c): c for c in KNOWN_CURVES}
_BY_OID = {".".join(map(str, c.oid)): c for c in KNOWN_CURVES}


def _known(c: ecdsa.curves.Curve) -> ECDomain:
    return ECDomain(name=c.name, curve=c, pyca=_PYCA_CURVES.get(c.name))


def _decode_point(curve_fp: CurveFp, data: bytes, order: int) -> PointJacobi:
    try:
        return PointJacobi.from_bytes(curve_fp, data, order=order)
    except Exception as exc:  # ecdsa raises several unrelated types for bad encodings
        raise SignatureError("ec_point_invalid", str(exc)) from exc


def _cofactor(p: int, n: int) -> int:
    """The h with |p+1-h*n| <= 2*sqrt(p) (Hasse); unique when n > 4*sqrt(p)."""
    return (p + 1 + math.isqrt(4 * p) + 1) // n


def _validate_domain(p: int, a: int, b: int, gx: int, gy: int, n: int, h: int | None) -> None:
    """Reject explicit domains that are not a sound prime-order-subgroup curve (BSI TR-03111 §2.3)."""
    if p < 3 or p.bit_length() < 160 or not is_prime(p):
        raise SignatureError("ec_domain_invalid", "field modulus is not a prime of at least 160 bits")
    if not (0 <= a < p and 0 <= b < p):
        raise SignatureError("ec_domain_invalid", "coefficients not reduced mod p")
    if (4 * pow(a, 3, p) + 27 * pow(b, 2, p)) % p == 0:
        raise SignatureError("ec_domain_invalid", "singular curve (discriminant is zero)")
    if (gy * gy - (gx ** 3 + a * gx + b)) % p != 0:
        raise SignatureError("ec_domain_invalid", "base point is not on the curve")
    if n < 2 or not is_prime(n) or n == p:
        raise SignatureError("ec_domain_invalid", "order is not a prime distinct from p")
    if h is not None and h != _cofactor(p, n):
        raise SignatureError("ec_domain_invalid", "cofactor inconsistent with p and n (Hasse bound)")
    if _cofactor(p, n) > 4:
        raise SignatureError("ec_domain_invalid", "cofactor too large for a signature curve")
    fp = CurveFp(p, a, b, _cofactor(p, n))
    g = PointJacobi(fp, gx, gy, 1, n)
    if g * n != INFINITY:
        raise SignatureError("ec_domain_invalid", "n*G is not the point at infinity")


def ec_domain(params: keys.ECDomainParameters) -> ECDomain:
    """The curve behind named or explicit (`specified`) parameters."""
    if params.name == "named":
        oid = params.chosen.dotted
        if oid not in _BY_OID:
            raise SignatureError("ec_curve_unsupported", oid)
        return _known(_BY_OID[oid])
    if params.name != "specified":
        raise SignatureError("ec_curve_unsupported", "implicitCA parameters")
    spec = params.chosen
    if spec["field_id"]["field_type"].native != "prime_field":
        raise SignatureError("ec_curve_unsupported", "characteristic-two field")
    p = spec["field_id"]["parameters"].native
    a = int.from_bytes(spec["curve"]["a"].native, "big")
    b = int.from_bytes(spec["curve"]["b"].native, "big")
    n = spec["order"].native
    h = spec["cofactor"].native
    if not (0 <= a < p and 0 <= b < p):
        raise SignatureError("ec_domain_invalid", "coefficients not reduced mod p")
    fp0 = CurveFp(p, a, b, h or 1)
    g = _decode_point(fp0, spec["base"].native, n)
    gx, gy = g.x(), g.y()
    match = _BY_PARAMS.get((p, a, b, gx, gy, n))
    if match is not None:
        if h is not None and h != match.curve.cofactor():
            raise SignatureError("ec_domain_invalid", "cofactor differs from the named curve's")
        return _known(match)
    _validate_domain(p, a, b, gx, gy, n, h)
    fp = CurveFp(p, a, b, _cofactor(p, n))
    gen = PointJacobi(fp, gx, gy, 1, n, generator=True)
    curve = ecdsa.curves.Curve(f"explicit-{p.bit_length()}", fp, gen, (1, 3, 6, 1, 4, 1, 99999))
    return ECDomain(name=curve.name, curve=curve, pyca=None)


@dataclass(frozen=True)
class PublicKey:
    """A verification key: an RSA or pyca EC key, or an `ecdsa` key on a curve pyca lacks."""

    kind: str  # 'rsa' | 'ec'
    key: object
    curve: str | None = None  # curve name for EC keys

    @property
    def description(self) -> str:
        if self.kind == "rsa":
            return f"rsa{self.key.key_size}"
        return f"ec-{self.curve}"


def load_public_key(spki: keys.PublicKeyInfo) -> PublicKey:
    """Turn a SubjectPublicKeyInfo into a verification key; raise `SignatureError` if unusable."""
    try:
        algo = spki["algorithm"]["algorithm"].native
        if algo in ("rsa", "rsassa_pss"):
            rsa_key = spki["public_key"].parsed
            n, e = rsa_key["modulus"].native, rsa_key["public_exponent"].native
            if n.bit_length() < 1024 or e < 3 or e % 2 == 0:  # e = 1 would make every "signature" valid
                raise SignatureError("public_key_weak", f"RSA modulus {n.bit_length()} bits, exponent {e}")
            return PublicKey("rsa", rsa.RSAPublicNumbers(e, n).public_key())
        if algo == "ec":
            domain = ec_domain(spki["algorithm"]["parameters"])
            point_bytes = spki["public_key"].native
            if domain.pyca is not None:  # pyca checks the point is on the curve (all cofactor 1)
                try:
                    key = ec.EllipticCurvePublicKey.from_encoded_point(domain.pyca(), point_bytes)
                except ValueError as exc:
                    raise SignatureError("ec_point_invalid", str(exc)) from exc
                return PublicKey("ec", key, domain.name)
            point = _decode_point(domain.curve.curve, point_bytes, domain.order)
            if not domain.curve.curve.contains_point(point.x(), point.y()):
                raise SignatureError("ec_point_invalid", "public point is not on the curve")
            if domain.curve.curve.cofactor() != 1 and point * domain.order != INFINITY:
                raise SignatureError("ec_point_invalid", "public point not in the prime-order subgroup")
            return PublicKey("ec", ecdsa.VerifyingKey.from_public_point(point, curve=domain.curve), domain.name)
    except SignatureError:
        raise
    except ASN1_DECODE_ERRORS as exc:  # hostile encodings
        raise SignatureError("public_key_invalid", str(exc)) from exc
    raise SignatureError("unsupported_public_key_algorithm", str(algo))


def _pss_padding(params: algos.RSASSAPSSParams) -> tuple[padding.PSS, str]:
    msg_hash = hash_name(params["hash_algorithm"])
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise SignatureError("unsupported_pss_mgf", str(mgf["algorithm"].native))
    mgf_hash = hash_name(mgf["parameters"])
    if params["trailer_field"].native not in ("trailer_field_bc", 1):
        raise SignatureError("unsupported_pss_trailer", str(params["trailer_field"].native))
    salt = params["salt_length"].native
    if not isinstance(salt, int) or not 0 <= salt <= 1024:
        raise SignatureError("pss_parameters_invalid", f"salt length {salt}")
    return padding.PSS(mgf=padding.MGF1(HASHES[mgf_hash]()), salt_length=salt), msg_hash


def signature_algorithm_name(algorithm: algos.SignedDigestAlgorithm, digest_hint: str | None = None) -> str:
    """A stable label, e.g. 'ecdsa-with-sha256', 'rsassa-pss-sha256', 'sha1-rsa'."""
    scheme = algorithm.signature_algo
    try:
        h = algorithm.hash_algo
    except ValueError:
        h = digest_hint
    return {"ecdsa": f"ecdsa-with-{h}", "rsassa_pss": f"rsassa-pss-{h}",
            "rsassa_pkcs1v15": f"{h}-rsa"}.get(scheme, f"{scheme}-{h}")


def verify(public_key: PublicKey, algorithm: algos.SignedDigestAlgorithm, signature: bytes, data: bytes,
           digest_hint: str | None = None) -> None:
    """Verify `signature` over `data`; raise `SignatureError` on any failure.

    `digest_hint` is the CMS digestAlgorithm, used when the signature
    algorithm identifier names no hash (plain rsaEncryption / ecPublicKey).
    """
    try:
        scheme = algorithm.signature_algo
    except ValueError as exc:
        raise SignatureError("unsupported_signature_algorithm", algorithm["algorithm"].dotted) from exc
    if scheme == "rsassa_pss":
        if public_key.kind != "rsa":
            raise SignatureError("key_algorithm_mismatch", "PSS signature with a non-RSA key")
        pss, h = _pss_padding(algorithm["parameters"])
        if digest_hint is not None and digest_hint != h:
            raise SignatureError("digest_algorithm_mismatch", f"PSS hash {h} vs digestAlgorithm {digest_hint}")
        _verify_rsa(public_key, signature, data, pss, h)
        return
    try:
        h = hash_name(algorithm.hash_algo)
    except ValueError:
        if digest_hint is None:
            raise SignatureError("unsupported_signature_algorithm", algorithm["algorithm"].dotted) from None
        h = hash_name(digest_hint)
    if scheme == "rsassa_pkcs1v15":
        if public_key.kind != "rsa":
            raise SignatureError("key_algorithm_mismatch", "RSA signature with a non-RSA key")
        _verify_rsa(public_key, signature, data, padding.PKCS1v15(), h)
    elif scheme == "ecdsa":
        if public_key.kind != "ec":
            raise SignatureError("key_algorithm_mismatch", "ECDSA signature with a non-EC key")
        verify_ecdsa(public_key, signature, data, h, plain=False)
    else:
        raise SignatureError("unsupported_signature_algorithm", str(scheme))


def _verify_rsa(public_key: PublicKey, signature: bytes, data: bytes, pad, h: str) -> None:
    try:
        public_key.key.verify(signature, data, pad, HASHES[h]())
    except InvalidSignature:
        raise SignatureError("signature_invalid", "RSA signature does not verify") from None


def verify_ecdsa(public_key: PublicKey, signature: bytes, data: bytes, h: str, *, plain: bool) -> None:
    """ECDSA over `data` hashed with `h`; `plain` = r||s (BSI TR-03111) instead of DER."""
    key = public_key.key
    if isinstance(key, ecdsa.VerifyingKey):
        decode = sigdecode_string if plain else sigdecode_der
        try:
            ok = key.verify(signature, data, hashfunc=getattr(hashlib, h), sigdecode=decode)
        except (ecdsa.BadSignatureError, ecdsa.der.UnexpectedDER, ValueError, AssertionError):
            ok = False
        if not ok:
            raise SignatureError("signature_invalid", "ECDSA signature does not verify")
        return
    if plain:
        size = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            raise SignatureError("signature_invalid", "plain ECDSA signature has the wrong length")
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    else:
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            raise SignatureError("signature_invalid", "ECDSA signature is not a DER SEQUENCE") from None
    if not plain and encode_dss_signature(r, s) != signature:
        raise SignatureError("signature_not_der", "ECDSA signature is not DER")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(HASHES[h]()))
    except InvalidSignature:
        raise SignatureError("signature_invalid", "ECDSA signature does not verify") from None
