"""Chip Authentication v1 (ICAO 9303-11 §6.2): ECDH with the chip's DG14 key, then SM restarts.

A cloned chip has the DG14 public key (it is signed in EF.SOD) but not the
private key, so it cannot derive the new session keys: the first response
after the key switch fails its MAC. `perform_ca` therefore ends with one
harmless command under the new keys and only then reports success.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from asn1crypto.core import Integer
from asn1crypto.keys import DomainParameters, PublicKeyInfo
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardreader.apdu import CardError, CommandAPDU, check, select_ef
from cardreader.lds import ASN1_DECODE_ERRORS
from cardreader.lds.security_infos import (ChipAuthenticationKey, ChipAuthenticationOption, ParsedSecurityInfos,
                                           SecurityProtocol, parse_security_infos)
from cardreader.protocol.pace import DHGroup, PACEError
from cardreader.protocol.sm import (AccessControlError, SecureChannel, SecureMessagingError, SMSession,
                                    encode_do, kdf, parse_dos)

EF_COM = 0x011E
DH_MAX_BITS = 4096  # 9303-11 standardizes 1024- and 2048-bit groups
_DEFAULT_3DES = {"ECDH": "0.4.0.127.0.7.2.2.3.2.1", "DH": "0.4.0.127.0.7.2.2.3.1.1"}


class CAError(AccessControlError):
    def __init__(self, message: str, reason: str = "chip_authentication_failed") -> None:
        super().__init__(message, reason)


def choose(infos: ParsedSecurityInfos) -> tuple[ChipAuthenticationOption, ChipAuthenticationKey]:
    """An offered option and its key (same agreement, matching keyId), ECDH first; a DG14 with
    only a key means 3DES (9303-11 §9.2.5)."""
    keys = sorted(infos.chip_authentication_keys, key=lambda k: k.protocol != "id-PK-ECDH")
    if not keys:
        raise CAError("DG14 has no chip authentication key", "ca_unsupported")
    for key in keys:
        agreement = "ECDH" if key.protocol == "id-PK-ECDH" else "DH"
        options = [o for o in infos.chip_authentication if o.agreement == agreement] or \
            [ChipAuthenticationOption(_DEFAULT_3DES[agreement], agreement, "3DES", None)]
        for option in options:
            if option.key_id is None or key.key_id is None or option.key_id == key.key_id:
                return option, key
    raise CAError("no chip authentication key matches the protocol's keyId", "ca_unsupported")


@dataclass(frozen=True, repr=False)
class DHChipKey:
    """A chip's DH chip-authentication key pair (pyca's FFDH is deprecated, so DH stays in `pace.DHGroup`)."""

    group: DHGroup
    x: int

    def public_bytes(self) -> bytes:
        return self.group.public(self.x)

    def spki(self) -> bytes:
        """SubjectPublicKeyInfo (dhpublicnumber, X9.42 domain parameters) for DG14."""
        g = self.group
        return PublicKeyInfo({
            "algorithm": {"algorithm": "dh", "parameters": DomainParameters({"p": g.p, "g": g.g, "q": g.order})},
            "public_key": Integer(int.from_bytes(self.public_bytes(), "big")),
        }).dump()


def _dh_key(info: PublicKeyInfo) -> tuple[DHGroup, bytes]:
    """The chip's DH group and public value, refused (CAError) unless the numbers are sane: a hostile
    DG14 may carry anything (q = 1, a negative y, a 100 000-bit p to stall the exponentiation)."""
    try:
        params = info["algorithm"]["parameters"]
        p, g, q = params["p"].native, params["g"].native, params["q"].native
        y = info["public_key"].parsed.native
        if not (1024 <= p.bit_length() <= DH_MAX_BITS and p % 2 and 1 < g < p - 1 and 1 < q < p and 1 < y < p - 1):
            raise ValueError("DH numbers out of range")
    except ASN1_DECODE_ERRORS:
        raise CAError("chip DH key is malformed or out of range", "ca_key_invalid") from None
    group = DHGroup(p, g, q)
    return group, y.to_bytes(group.size, "big")


def _terminal_agreement(key: ChipAuthenticationKey) -> tuple[bytes, bytes]:
    """(PK_IFD, shared secret K) against the chip's DG14 key, EC via pyca, DH via `DHGroup`."""
    info = key.public_key
    if info["algorithm"]["algorithm"].native == "dh":
        group, y = _dh_key(info)
        x = group.random_private(os.urandom)
        try:
            return group.public(x), group.shared_secret(x, y)
        except PACEError as e:
            raise CAError(f"chip DH key rejected: {e}", "ca_key_invalid") from None
    try:
        chip_key = serialization.load_der_public_key(info.dump())
    except (ValueError, TypeError, UnsupportedAlgorithm):   # e.g. a curve OpenSSL does not know
        raise CAError("chip authentication key cannot be loaded", "ca_unsupported") from None
    if not isinstance(chip_key, ec.EllipticCurvePublicKey):
        raise CAError("chip authentication key is neither EC nor DH", "ca_unsupported")
    ephemeral = ec.generate_private_key(chip_key.curve)
    pk_ifd = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
    return pk_ifd, ephemeral.exchange(ec.ECDH(), chip_key)


def _key_id_do(key_id: int | None) -> bytes:
    if key_id is None:
        return b""
    return encode_do(0x84, key_id.to_bytes(max(1, (key_id.bit_length() + 7) // 8), "big"))


def describe(option: ChipAuthenticationOption) -> str:
    return f"CA-{option.agreement}-{option.cipher}"


def perform_ca(channel: SecureChannel, dg14_infos: ParsedSecurityInfos) -> str:
    """Run CA over `channel`, switch it to the new keys, confirm with one command; return e.g. 'CA-ECDH-AES-128'.

    Raises `CAError` when the chip refuses, and `SecureMessagingError` when the
    confirming response does not verify under the new keys (a clone).
    """
    option, key = choose(dg14_infos)
    pk_ifd, shared = _terminal_agreement(key)
    try:
        if option.cipher == "3DES":
            check(channel.send(CommandAPDU(0x00, 0x22, 0x41, 0xA6, encode_do(0x91, pk_ifd) + _key_id_do(key.key_id))))
        else:
            oid = SecurityProtocol(option.protocol).contents
            check(channel.send(CommandAPDU(0x00, 0x22, 0x41, 0xA4, encode_do(0x80, oid) + _key_id_do(key.key_id))))
            check(channel.send(CommandAPDU(0x00, 0x86, 0x00, 0x00, encode_do(0x7C, encode_do(0x80, pk_ifd)), ne=256)))
    except CardError as e:
        raise CAError(f"chip refused chip authentication ({e.sw:04X})") from e
    channel.session = SMSession(option.cipher, kdf(shared, 1, option.cipher), kdf(shared, 2, option.cipher), 0)
    select_ef(channel, EF_COM)  # the first MAC under the new keys is the proof
    return describe(option)


# --------------------------------------------------------------------------- chip side

def _exchange(private_key: ec.EllipticCurvePrivateKey | DHChipKey, point: bytes) -> bytes:
    if isinstance(private_key, DHChipKey):
        try:
            return private_key.group.shared_secret(private_key.x, point)
        except PACEError:
            raise CAError("terminal key is not in the chip's DH group") from None
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, point)
    except ValueError:
        raise CAError("terminal key is not a point of the chip's curve") from None
    return private_key.exchange(ec.ECDH(), peer)


def _dos(data: bytes, order: tuple[int, ...]) -> dict[int, tuple[bytes, bytes]]:
    try:
        return parse_dos(data, order)
    except SecureMessagingError:
        raise CAError("malformed chip authentication command") from None


def chip_set_kat(data: bytes, dg14_value: bytes, private_key: ec.EllipticCurvePrivateKey | DHChipKey) -> SMSession:
    """MSE:Set KAT (3DES CA): the new session, to take effect after this command's response."""
    dos = _dos(data, (0x91, 0x84))
    if 0x91 not in dos:
        raise CAError("MSE:Set KAT without a terminal key")
    ciphers = {o.cipher for o in parse_security_infos(dg14_value).chip_authentication} or {"3DES"}
    if "3DES" not in ciphers:
        raise CAError("3DES chip authentication not offered")
    shared = _exchange(private_key, dos[0x91][0])
    return SMSession("3DES", kdf(shared, 1, "3DES"), kdf(shared, 2, "3DES"), 0)


def chip_set_at(data: bytes, dg14_value: bytes) -> str:
    dos = _dos(data, (0x80, 0x84))
    if 0x80 not in dos:
        raise CAError("MSE:Set AT without a protocol")
    oid = SecurityProtocol.load(b"\x06" + dos[0x80][1][1:]).dotted
    offered = {o.protocol: o for o in parse_security_infos(dg14_value).chip_authentication}
    if oid not in offered:
        raise CAError("protocol not offered")
    return offered[oid].cipher


def chip_general_authenticate(data: bytes, cipher: str,
                              private_key: ec.EllipticCurvePrivateKey | DHChipKey) -> SMSession:
    outer = _dos(data, (0x7C,))
    inner = _dos(outer.get(0x7C, (b"", b""))[0], (0x80,))
    if 0x80 not in inner:
        raise CAError("GENERAL AUTHENTICATE without a terminal key")
    shared = _exchange(private_key, inner[0x80][0])
    return SMSession(cipher, kdf(shared, 1, cipher), kdf(shared, 2, cipher), 0)
