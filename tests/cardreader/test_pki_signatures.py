"""The algorithm layer: explicit EC domain parameters (recognised, verified on the domain
itself, or rejected when unsound), and key/algorithm mismatches."""
from __future__ import annotations

import ecdsa
import pytest
from asn1crypto import algos, keys
from cryptography.hazmat.primitives.asymmetric import ec

from cardreader.pki import signatures
from cardreader.pki.signatures import SignatureError, load_public_key, verify
from cardreader.sim.test_pki import SigningKey, explicit_parameters, national_curve

DATA = b"to be signed"


@pytest.mark.parametrize("algorithm,curve,backend", [
    ("ecdsa-brainpoolP256r1-explicit", "BRAINPOOLP256r1", ec.EllipticCurvePublicKey),
    ("ecdsa-p256-explicit", "NIST256p", ec.EllipticCurvePublicKey),
    ("ecdsa-brainpoolP224r1-explicit", "BRAINPOOLP224r1", ecdsa.VerifyingKey),
    ("ecdsa-brainpoolP224r1", "BRAINPOOLP224r1", ecdsa.VerifyingKey),
    ("ecdsa-national-explicit", "explicit-256", ecdsa.VerifyingKey),
])
def test_explicit_parameters_are_recognised_or_verified_on_the_domain(algorithm, curve, backend):
    key = SigningKey.generate(algorithm)
    public = load_public_key(key.spki)
    assert public.curve == curve and isinstance(public.key, backend)
    algorithm_id = key.signature_algorithm("sha256")
    verify(public, algorithm_id, key.sign(DATA, "sha256"), DATA)
    with pytest.raises(SignatureError) as err:
        verify(public, algorithm_id, key.sign(DATA, "sha256"), DATA + b"!")
    assert err.value.reason == "signature_invalid"


@pytest.mark.parametrize("curve", [c for c in signatures.KNOWN_CURVES if c.order.bit_length() >= 160])
def test_every_known_curve_is_recognised_from_its_explicit_parameters(curve):
    params = explicit_parameters(curve)
    point = curve.generator * 7
    spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "ec", "parameters": params},
                               "public_key": point.to_bytes("uncompressed")})
    assert load_public_key(spki).curve == curve.name


def _spki_with(curve: ecdsa.curves.Curve, **changes) -> keys.PublicKeyInfo:
    params = explicit_parameters(curve)
    spec = params.chosen
    fp, g = curve.curve, curve.generator
    size = (fp.p().bit_length() + 7) // 8
    p = changes.get("p", fp.p())
    if "p" in changes:
        spec["field_id"] = {"field_type": "prime_field", "parameters": p}
    if "a" in changes or "b" in changes:
        spec["curve"] = {"a": changes.get("a", fp.a()).to_bytes(size, "big"),
                         "b": changes.get("b", fp.b()).to_bytes(size, "big")}
    if "g" in changes:
        gx, gy = changes["g"]
        spec["base"] = b"\x04" + gx.to_bytes(size, "big") + gy.to_bytes(size, "big")
    if "n" in changes:
        spec["order"] = changes["n"]
    if "h" in changes:
        spec["cofactor"] = changes["h"]
    point = (g * 5).to_bytes("uncompressed")
    return keys.PublicKeyInfo({"algorithm": {"algorithm": "ec", "parameters": params}, "public_key": point})


def _next_prime(n: int) -> int:
    n += 1 + n % 2
    while not ecdsa.numbertheory.is_prime(n):
        n += 2
    return n


CURVE = national_curve()
P, N = CURVE.curve.p(), CURVE.order
G = (CURVE.generator.x(), CURVE.generator.y())


@pytest.mark.parametrize("changes,why", [
    ({"p": P + 2}, "not a prime"),
    ({"g": (G[0], (G[1] + 1) % P)}, "base point is not on the curve"),
    ({"n": _next_prime(N)}, "n*G is not the point at infinity"),
    ({"n": N + 1}, "order is not a prime"),
    ({"h": 3}, "cofactor inconsistent"),
    ({"a": 0, "b": 0, "g": (0, 0)}, "singular curve"),
    ({"p": 2 ** 127 - 1}, "coefficients not reduced"),
])
def test_unsound_explicit_domains_are_rejected(changes, why):
    with pytest.raises(SignatureError) as err:
        load_public_key(_spki_with(CURVE, **changes))
    assert err.value.reason == "ec_domain_invalid" and why in str(err.value)


def test_public_point_off_the_curve_is_rejected():
    key = SigningKey.generate("ecdsa-national-explicit")
    point = bytearray(key.spki["public_key"].native)
    point[-1] ^= 1
    spki = keys.PublicKeyInfo({"algorithm": key.spki["algorithm"], "public_key": bytes(point)})
    with pytest.raises(SignatureError) as err:
        load_public_key(spki)
    assert err.value.reason == "ec_point_invalid"


def test_key_and_algorithm_must_agree():
    rsa_key, ec_key = SigningKey.generate("rsa2048"), SigningKey.generate("ecdsa-p256")
    with pytest.raises(SignatureError) as err:
        verify(load_public_key(ec_key.spki), rsa_key.signature_algorithm("sha256"), rsa_key.sign(DATA, "sha256"), DATA)
    assert err.value.reason == "key_algorithm_mismatch"


def test_md5_is_refused():
    key = SigningKey.generate("rsa2048")
    with pytest.raises(SignatureError) as err:
        verify(load_public_key(key.spki), algos.SignedDigestAlgorithm({"algorithm": "md5_rsa"}), b"\x00" * 256, DATA)
    assert err.value.reason == "unsupported_hash_algorithm"


def test_pss_parameters_are_honoured():
    key = SigningKey.generate("rsa-pss")
    public = load_public_key(key.spki)
    signature = key.sign(DATA, "sha256")
    verify(public, key.signature_algorithm("sha256"), signature, DATA)
    wrong = key.signature_algorithm("sha256")
    wrong["parameters"]["salt_length"] = 20
    with pytest.raises(SignatureError):
        verify(public, wrong, signature, DATA)


def test_non_der_ecdsa_signature_is_refused():
    key = SigningKey.generate("ecdsa-p256")
    sig = key.sign(DATA, "sha256")
    # same r, s with a long-form SEQUENCE length: BER, not DER (signature malleability)
    ber = b"\x30\x81" + sig[1:2] + sig[2:]
    with pytest.raises(SignatureError) as err:
        verify(load_public_key(key.spki), key.signature_algorithm("sha256"), ber, DATA)
    assert err.value.reason in ("signature_not_der", "signature_invalid")


def test_icao_appendix_g_explicit_brainpool_parameters_are_recognised():
    """9303-11 Appendix G.1 prints brainpoolP256r1 as explicit ECParameters; they must map to the named curve."""
    import json
    from pathlib import Path

    vector = json.loads((Path(__file__).parent / "pki_vectors" /
                         "icao9303_11_appendix_g_brainpoolP256r1_explicit.json").read_text())
    algorithm = keys.PublicKeyAlgorithm.load(bytes.fromhex(vector["algorithm_identifier_der"]))
    assert algorithm["parameters"].name == "specified"
    spki = keys.PublicKeyInfo({"algorithm": algorithm, "public_key": bytes.fromhex(vector["public_point"])})
    key = load_public_key(spki)
    assert key.curve == vector["curve"] and isinstance(key.key, ec.EllipticCurvePublicKey)
    off_curve = bytearray.fromhex(vector["public_point"])
    off_curve[-1] ^= 1
    with pytest.raises(SignatureError):
        load_public_key(keys.PublicKeyInfo({"algorithm": algorithm, "public_key": bytes(off_curve)}))


@pytest.mark.parametrize("bits,exponent", [(1024, 1), (1024, 65536), (768, 65537)])
def test_weak_rsa_keys_are_refused(bits, exponent):
    n = (1 << (bits - 1)) | 1  # only the sizes matter here: the key is refused before any arithmetic
    spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"},
                               "public_key": keys.RSAPublicKey({"modulus": n, "public_exponent": exponent})})
    with pytest.raises(SignatureError) as err:
        load_public_key(spki)
    assert err.value.reason == "public_key_weak"
