"""PACE v2 (ICAO 9303-11 §4.4) with Generic Mapping over ECDH and DH, both sides.

The group arithmetic is the `ecdsa` package's (it has the Brainpool curves
and raw point addition, which Generic Mapping needs and pyca/cryptography
does not expose); DH is modular exponentiation in Python integers. The host
runs `perform_pace`; the simulated chip runs `ChipPACE`. Both validate every
received public key (on the curve / in the subgroup, not the identity).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable, Protocol

from asn1crypto import keys
from asn1crypto.core import Integer
from ecdsa import curves, ellipticcurve

from cardreader.apdu import AuthenticationFailed, CardError, CommandAPDU, PlainChannel, check
from cardreader.lds.security_infos import (PACEDomainParameterInfo, PaceOption, SecurityProtocol,
                                           parse_security_infos)
from cardreader.protocol.sm import (AccessControlError, SecureChannel, SecureMessagingError, SMSession,
                                    cbc_decrypt, cbc_encrypt, encode_do, kdf, mac, pad, parse_dos)


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
        return ellipticcurve.PointJacobi(self.fp, x, y, 1, self.order)

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

    def public_key_do(self, oid_der: bytes, public: bytes) -> bytes:
        return encode_do2(0x7F49, encode_do(0x06, oid_der) + encode_do(0x84, public))


def encode_do2(tag: int, value: bytes) -> bytes:
    """A DO with a two-byte tag ('7F49')."""
    return tag.to_bytes(2, "big") + encode_do(0, value)[1:]


_RFC5114_1024 = DHGroup(
    int("B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C69A6A9DCA52D23B616073E28675A23D189838EF1E2EE652C0"
        "13ECB4AEA906112324975C3CD49B83BFACCBDD7D90C4BD7098488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0"
        "A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708DF1FB2BC2E4A4371", 16),
    int("A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507FD6406CFF14266D31266FEA1E5C41564B777E690F5504F213"
        "160217B4B01B886A5E91547F9E2749F4D7FBD7D3B9A92EE1909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A"
        "D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24855E6EEB22B3B2E5", 16),
    int("F518AA8781A8DF278ABA4E7D64B7CB9D49462353", 16),
)

# ICAO 9303-11 §9.5.1 standardized domain parameters (DH groups 1 and 2 are not offered here)
STANDARD_GROUPS: dict[int, Callable[[], ECGroup | DHGroup]] = {
    0: lambda: _RFC5114_1024,
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
    """The group a PACEInfo names: standardized (IDs 0-31) or given by the PACEDomainParameterInfo
    with the same parameter ID."""
    if option.parameter_id is not None and option.parameter_id < 32:
        if option.parameter_id not in STANDARD_GROUPS:
            raise PACEError(f"domain parameters {option.parameter_id} not supported", "pace_unsupported")
        group = STANDARD_GROUPS[option.parameter_id]()
    else:
        matches = [d for d in domain_parameters if d["parameter_id"].native == option.parameter_id]
        if len(matches) != 1:
            raise PACEError(f"no single PACEDomainParameterInfo for parameter ID {option.parameter_id}",
                            "pace_unsupported")
        group = explicit_group(matches[0])
    if group.kind != option.agreement:
        raise PACEError("domain parameters do not match the key agreement", "pace_unsupported")
    return group


def supported(option: PaceOption, domain_parameters: tuple[PACEDomainParameterInfo, ...] = ()) -> bool:
    if option.mapping != "GM":
        return False
    try:
        group_for(option, domain_parameters)
    except PACEError:
        return False
    return True


def _oid_der(dotted: str) -> bytes:
    return SecurityProtocol(dotted).contents


def _nonce_length(cipher: str) -> int:
    return 8 if cipher == "3DES" else 16


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
                 rng: Callable[[int], bytes] = os.urandom, _keys: tuple[int, int] | None = None) -> SecureChannel:
    """Run PACE-GM; return the secure channel (SSC 0) or raise `PACEError`.

    `domain_parameters`: EF.CardAccess's PACEDomainParameterInfos, for
    proprietary parameter IDs. `send_parameter_id`: include DO'84' in
    MSE:Set AT, required when EF.CardAccess lists several PACEInfos. `_keys`
    fixes the two ephemeral private keys (for the published worked examples only).
    """
    if option.mapping != "GM":
        raise PACEError(f"{option.name} is not supported", "pace_unsupported")
    group = group_for(option, domain_parameters)
    cipher = option.cipher
    k, ref = password_key(password)
    k_pi = kdf(k, 3, cipher)
    try:
        check(channel.send(mse_set_at(option, ref, send_parameter_id)))
        z = _open_dynamic(check(channel.send(CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0, b""), ne=256))).data, 0x80)
        if len(z) != _nonce_length(cipher):
            raise PACEError("encrypted nonce of the wrong length")
        s = int.from_bytes(cbc_decrypt(cipher, k_pi, z), "big")

        sk_map = _keys[0] if _keys else group.random_private(rng)
        pk_map = group.public(sk_map)
        pk_map_ic = _open_dynamic(check(channel.send(
            CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0x81, pk_map), ne=256))).data, 0x82)
        mapped = group.map_generic(s, sk_map, pk_map_ic)

        sk = _keys[1] if _keys else mapped.random_private(rng)
        pk = mapped.public(sk)
        pk_ic = _open_dynamic(check(channel.send(
            CommandAPDU(0x10, 0x86, 0, 0, _dynamic(0x83, pk), ne=256))).data, 0x84)
        if hmac.compare_digest(pk_ic, pk_map_ic) or hmac.compare_digest(pk_ic, pk):
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
    """The chip's half of PACE-GM, one GENERAL AUTHENTICATE step at a time."""

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
            self.s = self.rng(_nonce_length(self.cipher))
            self.state = 1
            return _dynamic(0x80, cbc_encrypt(self.cipher, self.k_pi, self.s)), None
        if self.state == 1:
            pk_map_ifd = _open_dynamic(cmd.data, 0x81)
            sk_map = self.group.random_private(self.rng)
            self.mapped = self.group.map_generic(int.from_bytes(self.s, "big"), sk_map, pk_map_ifd)
            self.pk_map_ifd = pk_map_ifd
            self.state = 2
            return _dynamic(0x82, self.group.public(sk_map)), None
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

