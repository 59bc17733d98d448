"""PACE v2 (ICAO 9303-11 §4.4) with Generic and Integrated Mapping over ECDH and DH, both sides.

The group arithmetic is the `ecdsa` package's (it has the Brainpool curves
and raw point addition, which Generic Mapping needs and pyca/cryptography
does not expose); DH is modular exponentiation in Python integers; the
block cipher of the Integrated Mapping's pseudo-random function is pyca's
(through `sm.cbc_encrypt`). The host runs `perform_pace`; the simulated chip
runs `ChipPACE`. Both validate every received public key (on the curve / in
the subgroup, not the identity) and every mapped generator.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Callable, Protocol

from asn1crypto import keys
from asn1crypto.core import Integer
from ecdsa import curves, ellipticcurve

from cardreader.apdu import AuthenticationFailed, CardError, CommandAPDU, PlainChannel, check
from cardreader.lds.security_infos import (PACEDomainParameterInfo, PaceOption, SecurityProtocol,
                                           parse_security_infos)
from cardreader.protocol.sm import (CIPHER_KEY_LENGTHS, AccessControlError, SecureChannel, SecureMessagingError,
                                    SMSession, cbc_decrypt, cbc_encrypt, encode_do, kdf, mac, pad, parse_dos)

log = logging.getLogger(__name__)


class PACEError(AccessControlError):
    """PACE failed; reason 'access_denied' for a wrong password, 'pace_failed' otherwise."""

    def __init__(self, message: str, reason: str = "pace_failed") -> None:
        super().__init__(message, reason)


@dataclass(frozen=True, repr=False)
class CAN:
    """Card Access Number printed on the card: a PACE password. Never shown in reprs."""

    value: str

    def __post_init__(self) -> None:
        if not (self.value.isdigit() and len(self.value) == 6):
            raise ValueError("a CAN is six digits")

    def __repr__(self) -> str:
        return "CAN(<hidden>)"


class MRZPassword(Protocol):
    def key_seed_input(self) -> str: ...


def password_key(password: MRZPassword | CAN) -> tuple[bytes, int]:
    """(K, password reference) of 9303-11 §9.7.3: SHA-1 of the MRZ information, or the CAN itself."""
    if isinstance(password, CAN):
        return password.value.encode("ascii"), 2
    return hashlib.sha1(password.key_seed_input().encode("ascii")).digest(), 1


# --------------------------------------------------------------------------- groups

class ECGroup:
    """A prime-order elliptic-curve group with a (possibly mapped) generator."""

    kind = "ECDH"

    def __init__(self, curve: curves.Curve, generator: ellipticcurve.PointJacobi | None = None) -> None:
        self.curve = curve
        self.fp = curve.curve
        self.order = curve.order
        self.g = generator if generator is not None else curve.generator
        self.size = (self.fp.p().bit_length() + 7) // 8

    def random_private(self, rng: Callable[[int], bytes]) -> int:
        return int.from_bytes(rng(self.size + 8), "big") % (self.order - 1) + 1

    def public(self, private: int) -> bytes:
        return self.encode(self.g * private)

    def encode(self, point: ellipticcurve.PointJacobi) -> bytes:
        x, y = point.x(), point.y()
        return b"\x04" + x.to_bytes(self.size, "big") + y.to_bytes(self.size, "big")

    def decode(self, data: bytes) -> ellipticcurve.PointJacobi:
        if len(data) != 1 + 2 * self.size or data[0] != 0x04:
            raise PACEError("public key is not an uncompressed point of this curve")
        x = int.from_bytes(data[1:1 + self.size], "big")
        y = int.from_bytes(data[1 + self.size:], "big")
        if not (x < self.fp.p() and y < self.fp.p() and self.fp.contains_point(x, y)):
            raise PACEError("public key is not on the curve")
        point = ellipticcurve.PointJacobi(self.fp, x, y, 1, self.order)
        if self.fp.cofactor() != 1 and point * self.order != ellipticcurve.INFINITY:
            raise PACEError("public key is not in the prime-order subgroup")
        return point

    def shared(self, private: int, public: bytes) -> ellipticcurve.PointJacobi:
        point = self.decode(public) * private
        if point == ellipticcurve.INFINITY:
            raise PACEError("shared point is the identity")
        return point

    def shared_secret(self, private: int, public: bytes) -> bytes:
        return self.shared(private, public).x().to_bytes(self.size, "big")

    def map_generic(self, nonce: int, private: int, public: bytes) -> "ECGroup":
        """Ĝ = s·G + H with H = SK_map·PK_map (9303-11 §4.4.3.3.1)."""
        g = self.g * nonce + self.shared(private, public)
        if g == ellipticcurve.INFINITY:
            raise PACEError("mapped generator is the identity")
        return ECGroup(self.curve, g)

    def map_integrated(self, s: bytes, t: bytes, cipher: str) -> "ECGroup":
        """Ĝ = f_G(R_p(s,t)) (9303-11 §4.4.3.3.2), f_G the point encoding of Appendix B.2."""
        p = self.fp.p()
        x, y = point_encoding(int.from_bytes(pseudo_random(s, t, cipher, p), "big") % p, self.fp)
        g = ellipticcurve.PointJacobi(self.fp, x, y, 1, self.order)
        if self.fp.cofactor() != 1:
            g = g * self.fp.cofactor()
            if g == ellipticcurve.INFINITY or g * self.order != ellipticcurve.INFINITY:
                raise PACEError("mapped generator is not in the prime-order subgroup")
        return ECGroup(self.curve, g)

    def public_key_do(self, oid_der: bytes, public: bytes) -> bytes:
        return encode_do2(0x7F49, encode_do(0x06, oid_der) + encode_do(0x86, public))


class DHGroup:
    """A prime-order subgroup of Z_p* (the RFC 5114 groups of 9303-11 table 'standardized parameters')."""

    kind = "DH"

    def __init__(self, p: int, g: int, q: int) -> None:
        self.p, self.g, self.order = p, g, q
        self.size = (p.bit_length() + 7) // 8

    def random_private(self, rng: Callable[[int], bytes]) -> int:
        return int.from_bytes(rng((self.order.bit_length() + 7) // 8 + 8), "big") % (self.order - 1) + 1

    def public(self, private: int) -> bytes:
        return pow(self.g, private, self.p).to_bytes(self.size, "big")

    def decode(self, data: bytes) -> int:
        y = int.from_bytes(data, "big")
        if len(data) > self.size or not 1 < y < self.p - 1 or pow(y, self.order, self.p) != 1:
            raise PACEError("public key is not in the subgroup")
        return y

    def shared_secret(self, private: int, public: bytes) -> bytes:
        return pow(self.decode(public), private, self.p).to_bytes(self.size, "big")

    def map_generic(self, nonce: int, private: int, public: bytes) -> "DHGroup":
        h = pow(self.decode(public), private, self.p)
        g = pow(self.g, nonce, self.p) * h % self.p
        if g == 1:
            raise PACEError("mapped generator is 1")
        return DHGroup(self.p, g, self.order)

    def map_integrated(self, s: bytes, t: bytes, cipher: str) -> "DHGroup":
        """ĝ = f_g(R_p(s,t)) with f_g(x) = x^a mod p, a = (p-1)/q the cofactor (9303-11 §4.4.3.3.2)."""
        x = int.from_bytes(pseudo_random(s, t, cipher, self.p), "big") % self.p
        g = pow(x, (self.p - 1) // self.order, self.p)
        if g in (0, 1):
            raise PACEError("mapped generator is 1")
        return DHGroup(self.p, g, self.order)

    def public_key_do(self, oid_der: bytes, public: bytes) -> bytes:
        return encode_do2(0x7F49, encode_do(0x06, oid_der) + encode_do(0x84, public))


def encode_do2(tag: int, value: bytes) -> bytes:
    """A DO with a two-byte tag ('7F49')."""
    return tag.to_bytes(2, "big") + encode_do(0, value)[1:]


# --------------------------------------------------------------------------- integrated mapping

# The constants c0, c1 of the pseudo-random number mapping (9303-11 §4.4.3.3.2), by the length l of s:
# 128 bits for 3DES and AES-128, 256 bits for AES-192 and AES-256.
PRF_CONSTANTS = {
    16: (bytes.fromhex("a668892a7c41e3ca739f40b057d85904"), bytes.fromhex("a4e136ac725f738b01c1f60217c188ad")),
    32: (bytes.fromhex("d463d65234124ef7897054986dca0a174e28df758cbaa03f240616414d5a1676"),
         bytes.fromhex("54bd7255f0aaf831bec3423fcf39d69b6cbf066677d0faae5aadd99df8e53517")),
}


def nonce_length(mapping: str, cipher: str) -> int:
    """Length in bytes of the chip's nonce s (9303-11 §4.4.3.3): one block for the Generic Mapping; for
    the Integrated Mapping l, the smallest multiple of the block size with l ≥ k (3DES: k = 128 bits)."""
    if mapping == "IM":
        return 16 if cipher in ("3DES", "AES-128") else 32
    return 8 if cipher == "3DES" else 16


def pseudo_random(s: bytes, t: bytes, cipher: str, p: int) -> bytes:
    """R(s,t) = x_1 || ... || x_n of 9303-11 §4.4.3.3.2 (figure 2); R_p(s,t) is its integer mod p.

    E() is the protocol's block cipher in CBC mode with IV = 0: k_0 = E(t, s),
    then x_i = E(k_{i-1}, c_1) and k_i = E(k_{i-1}, c_0), each key truncated to
    the key size k (AES-192 keeps octets 1-24; 3DES counts as 128 bits). n is
    the smallest number with n·l ≥ log2 p + 64.
    """
    k = CIPHER_KEY_LENGTHS[cipher]
    if len(s) != nonce_length("IM", cipher) or len(t) != k:
        raise PACEError("integrated mapping nonces of the wrong length")
    c0, c1 = PRF_CONSTANTS[len(s)]
    n = -(-(p.bit_length() + 64) // (8 * len(s)))
    key, x = cbc_encrypt(cipher, t, s), b""
    for _ in range(n):
        key = key[:k]
        x += cbc_encrypt(cipher, key, c1)
        key = cbc_encrypt(cipher, key, c0)
    return x


def point_encoding(t: int, fp: ellipticcurve.CurveFp) -> tuple[int, int]:
    """f_G of 9303-11 Appendix B.2 ([BCIMRT2010], affine coordinates), before the co-factor.

    Maps 0 < t < p to a point of E: y² = x³ + ax + b over GF(p); needs p ≡ 3 mod 4
    and a ≠ 0. Any input for which a step is undefined is an error, never a point.
    """
    p, a, b = fp.p(), fp.a(), fp.b()
    if p % 4 != 3 or a == 0:
        raise PACEError("the curve does not allow the Integrated Mapping", "pace_unsupported")
    alpha = -t * t % p  # 1. α = -t² mod p
    if not 0 < t < p or (alpha + alpha * alpha) % p == 0:
        raise PACEError("integrated mapping input has no image")
    x2 = -b * pow(a, -1, p) * (1 + pow(alpha + alpha * alpha, -1, p)) % p  # 2. X2 = -b·a⁻¹·(1 + (α + α²)⁻¹)
    x3 = alpha * x2 % p  # 3. X3 = α·X2
    h2 = (pow(x2, 3, p) + a * x2 + b) % p  # 4. h2 = X2³ + a·X2 + b
    u = pow(t, 3, p) * h2 % p  # 6. U = t³·h2  (step 5, h3, is only needed to see why step 9 works)
    big_a = pow(h2, p - 1 - (p + 1) // 4, p)  # 7. A = h2^(p-1-(p+1)/4)
    x, y = (x2, big_a * h2 % p) if big_a * big_a * h2 % p == 1 else (x3, big_a * u % p)  # 8. / 9.
    if not fp.contains_point(x, y):
        raise PACEError("mapped generator is not on the curve")
    return x, y


# --------------------------------------------------------------------------- domain parameters

def _modp(p: str, g: str, q: str) -> DHGroup:
    return DHGroup(int(p, 16), int(g, 16), int(q, 16))


# RFC 5114 §2.1-2.3: the MODP groups with prime-order subgroups of 9303-11 table 12, IDs 0-2
_RFC5114_1024_160 = _modp(
    "B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C69A6A9DCA52D23B616073E28675A23D189838EF1E2EE652C0"
    "13ECB4AEA906112324975C3CD49B83BFACCBDD7D90C4BD7098488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0"
    "A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708DF1FB2BC2E4A4371",
    "A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507FD6406CFF14266D31266FEA1E5C41564B777E690F5504F213"
    "160217B4B01B886A5E91547F9E2749F4D7FBD7D3B9A92EE1909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A"
    "D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24855E6EEB22B3B2E5",
    "F518AA8781A8DF278ABA4E7D64B7CB9D49462353")
_RFC5114_2048_224 = _modp(
    "AD107E1E9123A9D0D660FAA79559C51FA20D64E5683B9FD1B54B1597B61D0A75E6FA141DF95A56DBAF9A3C407BA1DF15"
    "EB3D688A309C180E1DE6B85A1274A0A66D3F8152AD6AC2129037C9EDEFDA4DF8D91E8FEF55B7394B7AD5B7D0B6C12207"
    "C9F98D11ED34DBF6C6BA0B2C8BBC27BE6A00E0A0B9C49708B3BF8A317091883681286130BC8985DB1602E714415D9330"
    "278273C7DE31EFDC7310F7121FD5A07415987D9ADC0A486DCDF93ACC44328387315D75E198C641A480CD86A1B9E587E8"
    "BE60E69CC928B2B9C52172E413042E9B23F10B0E16E79763C9B53DCF4BA80A29E3FB73C16B8E75B97EF363E2FFA31F71"
    "CF9DE5384E71B81C0AC4DFFE0C10E64F",
    "AC4032EF4F2D9AE39DF30B5C8FFDAC506CDEBE7B89998CAF74866A08CFE4FFE3A6824A4E10B9A6F0DD921F01A70C4AFA"
    "AB739D7700C29F52C57DB17C620A8652BE5E9001A8D66AD7C17669101999024AF4D027275AC1348BB8A762D0521BC98A"
    "E247150422EA1ED409939D54DA7460CDB5F6C6B250717CBEF180EB34118E98D119529A45D6F834566E3025E316A330EF"
    "BB77A86F0C1AB15B051AE3D428C8F8ACB70A8137150B8EEB10E183EDD19963DDD9E263E4770589EF6AA21E7F5F2FF381"
    "B539CCE3409D13CD566AFBB48D6C019181E1BCFE94B30269EDFE72FE9B6AA4BD7B5A0F1C71CFFF4C19C418E1F6EC0179"
    "81BC087F2A7065B384B890D3191F2BFA",
    "801C0D34C58D93FE997177101F80535A4738CEBCBF389A99B36371EB")
_RFC5114_2048_256 = _modp(
    "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F25D2CEED4435E3B00E00DF8F1D61957D4FAF7DF4561B2AA30"
    "16C3D91134096FAA3BF4296D830E9A7C209E0C6497517ABD5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B"
    "6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C4FDB70C581B23F76B63ACAE1CAA6B7902D52526735488A0E"
    "F13C6D9A51BFA4AB3AD8347796524D8EF6A167B5A41825D967E144E5140564251CCACB83E6B486F6B3CA3F7971506026"
    "C0B857F689962856DED4010ABD0BE621C3A3960A54E710C375F26375D7014103A4B54330C198AF126116D2276E11715F"
    "693877FAD7EF09CADB094AE91E1A1597",
    "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF205407F4793A1A0BA12510DBC15077BE463FFF4FED4AAC0BB555"
    "BE3A6C1B0C6B47B1BC3773BF7E8C6F62901228F8C28CBB18A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B"
    "777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC831D14348F6F2F9193B5045AF2767164E1DFC967C1FB3F2E55"
    "A4BD1BFFE83B9C80D052B985D182EA0ADB2A3B7313D3FE14C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915"
    "B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6184B523D1DB246C32F63078490F00EF8D647D148D4795451"
    "5E2327CFEF98C582664B4C0F6CC41659",
    "8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3")

# ICAO 9303-11 §9.5.1 table 12: every standardized domain parameter ID (3-7 and 19-31 are RFU)
STANDARD_NAMES = {
    0: "1024-bit MODP group with 160-bit prime order subgroup", 1: "2048-bit MODP group with 224-bit prime "
    "order subgroup", 2: "2048-bit MODP group with 256-bit prime order subgroup", 8: "NIST P-192",
    9: "brainpoolP192r1", 10: "NIST P-224", 11: "brainpoolP224r1", 12: "NIST P-256", 13: "brainpoolP256r1",
    14: "brainpoolP320r1", 15: "NIST P-384", 16: "brainpoolP384r1", 17: "brainpoolP512r1", 18: "NIST P-521",
}
STANDARD_GROUPS: dict[int, Callable[[], ECGroup | DHGroup]] = {
    0: lambda: _RFC5114_1024_160, 1: lambda: _RFC5114_2048_224, 2: lambda: _RFC5114_2048_256,
    8: lambda: ECGroup(curves.NIST192p), 9: lambda: ECGroup(curves.BRAINPOOLP192r1),
    10: lambda: ECGroup(curves.NIST224p), 11: lambda: ECGroup(curves.BRAINPOOLP224r1),
    12: lambda: ECGroup(curves.NIST256p), 13: lambda: ECGroup(curves.BRAINPOOLP256r1),
    14: lambda: ECGroup(curves.BRAINPOOLP320r1), 15: lambda: ECGroup(curves.NIST384p),
    16: lambda: ECGroup(curves.BRAINPOOLP384r1), 17: lambda: ECGroup(curves.BRAINPOOLP512r1),
    18: lambda: ECGroup(curves.NIST521p),
}


ID_EC_PUBLIC_KEY, ID_DH_PUBLIC_NUMBER = "1.2.840.10045.2.1", "1.2.840.10046.2.1"
MIN_EC_ORDER_BITS, MIN_DH_BITS = 192, 1024


def explicit_group(info: PACEDomainParameterInfo) -> ECGroup | DHGroup:
    """Domain parameters given in EF.CardAccess (proprietary parameter IDs 32-255).

    EF.CardAccess is not signed, so the parameters are checked before use: a
    prime field, a base point on the curve of the stated order, and sizes no
    smaller than the standardized ones.
    """
    algorithm = info["domain_parameter"]["algorithm"].dotted
    raw = info["domain_parameter"]["parameters"]
    try:
        if algorithm == ID_EC_PUBLIC_KEY:
            spec = keys.SpecifiedECDomain.load(raw.dump(), strict=True)
            if spec["field_id"]["field_type"].native != "prime_field":
                raise PACEError("only prime-field curves are supported", "pace_unsupported")
            p = Integer.load(spec["field_id"]["parameters"].dump()).native
            a, b = (int.from_bytes(spec["curve"][k].native, "big") for k in ("a", "b"))
            n, h = spec["order"].native, spec["cofactor"].native or 1
            if n.bit_length() < MIN_EC_ORDER_BITS or not 0 <= a < p or not 0 <= b < p:
                raise PACEError("explicit curve is too small or malformed", "pace_unsupported")
            fp = ellipticcurve.CurveFp(p, a, b, h)
            size = (p.bit_length() + 7) // 8
            base = spec["base"].native
            if len(base) != 1 + 2 * size or base[0] != 4:
                raise PACEError("explicit base point is not uncompressed", "pace_unsupported")
            x, y = int.from_bytes(base[1:1 + size], "big"), int.from_bytes(base[1 + size:], "big")
            if not fp.contains_point(x, y):
                raise PACEError("explicit base point is not on the curve", "pace_unsupported")
            g = ellipticcurve.PointJacobi(fp, x, y, 1, n)
            if g * n != ellipticcurve.INFINITY:
                raise PACEError("explicit base point does not have the stated order", "pace_unsupported")
            return ECGroup(curves.Curve("explicit", fp, g, (0, 0)))
        if algorithm == ID_DH_PUBLIC_NUMBER:
            dp = keys.DomainParameters.load(raw.dump(), strict=True)
            p, g, q = dp["p"].native, dp["g"].native, dp["q"].native
            if p.bit_length() < MIN_DH_BITS or (p - 1) % q or not 1 < g < p - 1 or pow(g, q, p) != 1:
                raise PACEError("explicit DH group is too small or malformed", "pace_unsupported")
            return DHGroup(p, g, q)
    except (ValueError, TypeError, KeyError):
        raise PACEError("explicit domain parameters do not decode", "pace_unsupported") from None
    raise PACEError(f"domain parameter algorithm {algorithm} not supported", "pace_unsupported")


def group_for(option: PaceOption, domain_parameters: tuple[PACEDomainParameterInfo, ...] = ()) -> ECGroup | DHGroup:
    """The group a PACEInfo names: standardized (IDs 0-31, table 12) or given by the
    PACEDomainParameterInfo with the same parameter ID. Anything else is a `PACEError`
    ('pace_unsupported') that names the ID and why."""
    pid = option.parameter_id
    if option.mapping not in ("GM", "IM"):
        raise PACEError(f"{option.name}: the {option.mapping} mapping is not supported", "pace_unsupported")
    if pid is not None and pid < 32:
        if pid not in STANDARD_GROUPS:
            raise PACEError(f"{option.name}: domain parameter ID {pid} is reserved (RFU) in 9303-11 table 12",
                            "pace_unsupported")
        group, name = STANDARD_GROUPS[pid](), f"standardized domain parameters {pid} ({STANDARD_NAMES[pid]})"
    else:
        matches = [d for d in domain_parameters if d["parameter_id"].native == pid]
        if len(matches) != 1:
            raise PACEError(f"{option.name}: no single PACEDomainParameterInfo for parameter ID {pid}",
                            "pace_unsupported")
        group, name = explicit_group(matches[0]), f"explicit domain parameters {pid}"
    if group.kind != option.agreement:
        raise PACEError(f"{option.name}: {name} are not {option.agreement} parameters", "pace_unsupported")
    if option.mapping == "IM" and group.kind == "ECDH" and (group.fp.p() % 4 != 3 or group.fp.a() == 0):
        raise PACEError(f"{option.name}: {name} cannot be used with the Integrated Mapping "
                        "(its point encoding needs p ≡ 3 mod 4 and a ≠ 0)", "pace_unsupported")
    return group


def supported(option: PaceOption, domain_parameters: tuple[PACEDomainParameterInfo, ...] = ()) -> bool:
    """Whether this reader can run `option`; the reason it cannot goes to the log."""
    try:
        group_for(option, domain_parameters)
    except PACEError as e:
        log.info("PACE option not usable: %s", e)
        return False
    return True


def _oid_der(dotted: str) -> bytes:
    return SecurityProtocol(dotted).contents


def auth_token(cipher: str, ks_mac: bytes, public_key_do: bytes) -> bytes:
    """T = MAC(KS_mac, public key data object) (9303-11 §4.4.3.4): padded for 3DES, plain for CMAC."""
    return mac(cipher, ks_mac, pad(public_key_do) if cipher == "3DES" else public_key_do)


def mse_set_at(option: PaceOption, password_ref: int, send_parameter_id: bool) -> CommandAPDU:
    data = encode_do(0x80, _oid_der(option.protocol)) + encode_do(0x83, bytes((password_ref,)))
    if send_parameter_id and option.parameter_id is not None:
        data += encode_do(0x84, bytes((option.parameter_id,)))
    return CommandAPDU(0x00, 0x22, 0xC1, 0xA4, data)


def _dynamic(tag: int, value: bytes) -> bytes:
    return encode_do(0x7C, encode_do(tag, value) if tag else b"")


def _open_dynamic(data: bytes, tag: int) -> bytes:
    try:
        outer = parse_dos(data, (0x7C,))
        inner = parse_dos(outer[0x7C][0], (0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88))
    except (SecureMessagingError, KeyError):
        raise PACEError("malformed dynamic authentication data") from None
    if tag not in inner:
        raise PACEError(f"dynamic authentication data without '{tag:02X}'")
    return inner[tag][0]


# --------------------------------------------------------------------------- terminal

def describe(option: PaceOption) -> str:
    """What `ReadResult.access_control` shows, e.g. 'PACE-ECDH-GM-AES-128'."""
    return f"PACE-{option.agreement}-{option.mapping}-{option.cipher}"


def perform_pace(channel: PlainChannel, password: MRZPassword | CAN, option: PaceOption, *,
                 domain_parameters: tuple[PACEDomainParameterInfo, ...] = (), send_parameter_id: bool = False,
                 rng: Callable[[int], bytes] = os.urandom,
                 _keys: tuple[int | bytes, int] | None = None) -> SecureChannel:
    """Run PACE-GM or PACE-IM; return the secure channel (SSC 0) or raise `PACEError`.

    `domain_parameters`: EF.CardAccess's PACEDomainParameterInfos, for
    proprietary parameter IDs. `send_parameter_id`: include DO'84' in
    MSE:Set AT, required when EF.CardAccess lists several PACEInfos. `_keys`
    fixes the terminal's mapping secret (SK_Map for GM, the nonce t for IM) and
    its ephemeral private key (for the published worked examples only).
    """
    group = group_for(option, domain_parameters)
    cipher = option.cipher
    k, ref = password_key(password)
    k_pi = kdf(k, 3, cipher)
    try:
        check(channel.send(mse_set_at(option, ref, send_parameter_id)))
        z = _open_dynamic(check(channel.send(CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0, b""), ne=256))).data, 0x80)
        if len(z) != nonce_length(option.mapping, cipher):
            raise PACEError("encrypted nonce of the wrong length")
        s = cbc_decrypt(cipher, k_pi, z)

        if option.mapping == "GM":
            sk_map = _keys[0] if _keys else group.random_private(rng)
            pk_map_ic = _open_dynamic(check(channel.send(
                CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0x81, group.public(sk_map)), ne=256))).data, 0x82)
            mapped = group.map_generic(int.from_bytes(s, "big"), sk_map, pk_map_ic)
        else:
            t = _keys[0] if _keys else rng(CIPHER_KEY_LENGTHS[cipher])
            if _open_dynamic(check(channel.send(
                    CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0x81, t), ne=256))).data, 0x82) != b"":
                raise PACEError("chip sent mapping data in the Integrated Mapping")
            pk_map_ic = None
            mapped = group.map_integrated(s, t, cipher)

        sk = _keys[1] if _keys else mapped.random_private(rng)
        pk = mapped.public(sk)
        pk_ic = _open_dynamic(check(channel.send(
            CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0x83, pk), ne=256))).data, 0x84)
        if hmac.compare_digest(pk_ic, pk) or (pk_map_ic is not None and hmac.compare_digest(pk_ic, pk_map_ic)):
            raise PACEError("chip reused a public key")
        shared = mapped.shared_secret(sk, pk_ic)
        ks_enc, ks_mac = kdf(shared, 1, cipher), kdf(shared, 2, cipher)
        oid = _oid_der(option.protocol)
        t_ifd = auth_token(cipher, ks_mac, mapped.public_key_do(oid, pk_ic))
        try:
            t_ic = _open_dynamic(check(channel.send(
                CommandAPDU(0x00, 0x86, 0, 0, _dynamic(0x85, t_ifd), ne=256))).data, 0x86)
        except AuthenticationFailed as e:
            raise PACEError("chip refused the authentication token (wrong password?)", "access_denied") from e
        if not hmac.compare_digest(t_ic, auth_token(cipher, ks_mac, mapped.public_key_do(oid, pk))):
            raise PACEError("chip authentication token does not verify")
    except CardError as e:
        raise PACEError(f"PACE step failed with {e.sw:04X}",
                        "access_denied" if e.sw in (0x6300, 0x6982) or e.sw & 0xFFF0 == 0x63C0 else "pace_failed") from e
    return SecureChannel(channel, SMSession(cipher, ks_enc, ks_mac, 0))


# --------------------------------------------------------------------------- chip

class ChipPACE:
    """The chip's half of PACE-GM and PACE-IM, one GENERAL AUTHENTICATE step at a time."""

    def __init__(self, option: PaceOption, k: bytes, rng: Callable[[int], bytes],
                 domain_parameters: tuple[PACEDomainParameterInfo, ...] = ()) -> None:
        self.option, self.group, self.rng = option, group_for(option, domain_parameters), rng
        self.cipher = option.cipher
        self.k_pi = kdf(k, 3, self.cipher)
        self.state = 0

    @classmethod
    def from_mse(cls, data: bytes, card_access: bytes, mrz_key: MRZPassword, can: str | None,
                 rng: Callable[[int], bytes]) -> "ChipPACE":
        try:
            dos = parse_dos(data, (0x80, 0x83, 0x84))
        except SecureMessagingError:
            raise PACEError("malformed MSE:Set AT") from None
        if 0x80 not in dos or 0x83 not in dos:
            raise PACEError("MSE:Set AT without protocol or password reference")
        infos = parse_security_infos(card_access)
        domain_parameters = tuple(infos.pace_domain_parameters)
        offered = [o for o in infos.pace
                   if o.protocol == SecurityProtocol.load(b"\x06" + dos[0x80][1][1:]).dotted]
        if 0x84 in dos:
            offered = [o for o in offered if o.parameter_id is not None and
                       dos[0x84][0] == o.parameter_id.to_bytes(1, "big")]
        if not offered or not supported(offered[0], domain_parameters):
            raise PACEError("protocol not offered")
        ref = dos[0x83][0]
        if ref == b"\x01":
            k = password_key(mrz_key)[0]
        elif ref == b"\x02" and can:
            k = password_key(CAN(can))[0]
        else:
            raise PACEError("password not supported")
        return cls(offered[0], k, rng, domain_parameters)

    def step(self, cmd: CommandAPDU) -> tuple[bytes, SMSession | None]:
        chained = bool(cmd.cla & 0x10)
        if chained != (self.state < 3):
            raise PACEError("command chaining bit out of step")
        if self.state == 0:
            if cmd.data != b"\x7c\x00":
                raise PACEError("first step carries data")
            self.s = self.rng(nonce_length(self.option.mapping, self.cipher))
            self.state = 1
            return _dynamic(0x80, cbc_encrypt(self.cipher, self.k_pi, self.s)), None
        if self.state == 1:
            mapping_data = _open_dynamic(cmd.data, 0x81)
            if self.option.mapping == "IM":  # mapping data is the terminal's nonce t; '82' stays empty
                self.mapped = self.group.map_integrated(self.s, mapping_data, self.cipher)
                self.pk_map_ifd, answer = None, b""
            else:
                sk_map = self.group.random_private(self.rng)
                self.mapped = self.group.map_generic(int.from_bytes(self.s, "big"), sk_map, mapping_data)
                self.pk_map_ifd, answer = mapping_data, self.group.public(sk_map)
            self.state = 2
            return _dynamic(0x82, answer), None
        if self.state == 2:
            self.pk_ifd = _open_dynamic(cmd.data, 0x83)
            if self.pk_ifd == self.pk_map_ifd:
                raise PACEError("terminal reused its mapping key")
            sk = self.mapped.random_private(self.rng)
            self.pk_ic = self.mapped.public(sk)
            shared = self.mapped.shared_secret(sk, self.pk_ifd)
            self.ks_enc, self.ks_mac = kdf(shared, 1, self.cipher), kdf(shared, 2, self.cipher)
            self.state = 3
            return _dynamic(0x84, self.pk_ic), None
        t_ifd = _open_dynamic(cmd.data, 0x85)
        oid = _oid_der(self.option.protocol)
        if not hmac.compare_digest(t_ifd, auth_token(self.cipher, self.ks_mac, self.mapped.public_key_do(oid, self.pk_ic))):
            raise PACEError("terminal token does not verify", "access_denied")
        t_ic = auth_token(self.cipher, self.ks_mac, self.mapped.public_key_do(oid, self.pk_ifd))
        return _dynamic(0x86, t_ic), SMSession(self.cipher, self.ks_enc, self.ks_mac, 0)

