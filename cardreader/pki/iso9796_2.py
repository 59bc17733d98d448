"""ISO/IEC 9796-2 digital signature scheme 1 with partial message recovery, as
Active Authentication uses it with RSA (ICAO 9303-11 §6.1, Appendix F).

The chip signs M = M1 || M2 where M2 is the terminal's 8-byte challenge and
M1 a nonce that fills the capacity of the modulus; the representative is

    F = 0x6A || M1 || H(M1 || M2) || T

with T = 0xBC (implicit SHA-1) or the two-byte trailer `hash-id || 0xCC`
(ISO/IEC 10118-3 identifiers: SHA-1 0x33, SHA-256 0x34, SHA-512 0x35,
SHA-384 0x36, SHA-224 0x38). Verification recovers F = s^e mod n (or
n - s^e when the signer returned the smaller of the two, as 9796-2 allows),
checks header and trailer and compares the hash in constant time.

pyca/cryptography has no raw RSA, so the arithmetic is done on its key
numbers; `sign` is for the simulated chip only.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

HEADER_PARTIAL = 0x6A  # '01' header, partial recovery, no padding
TRAILER_IMPLICIT = 0xBC  # hash is SHA-1 by convention
TRAILER_IDS = {"sha1": 0x33, "sha256": 0x34, "sha512": 0x35, "sha384": 0x36, "sha224": 0x38}
_BY_ID = {v: k for k, v in TRAILER_IDS.items()}


class ISO9796Error(Exception):
    """The signature does not verify; `reason` is a code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Recovered:
    """What verification learnt: the recovered part of the message and the hash used."""

    m1: bytes
    digest: str
    implicit_trailer: bool


def _trailer(digest: str, implicit: bool) -> bytes:
    if implicit:
        if digest != "sha1":
            raise ValueError("the implicit trailer 0xBC means SHA-1")
        return bytes([TRAILER_IMPLICIT])
    return bytes([TRAILER_IDS[digest], 0xCC])


def m1_length(modulus_bits: int, digest: str = "sha1", implicit: bool = True) -> int:
    """Bytes of M1 that fit: k - Lh - 8t - 8 bits (9303-11 Appendix F steps 5-6)."""
    if modulus_bits % 8:
        raise ValueError("modulus length must be a multiple of 8 bits")
    return modulus_bits // 8 - hashlib.new(digest).digest_size - len(_trailer(digest, implicit)) - 1


def encode(m1: bytes, m2: bytes, modulus_bits: int, digest: str = "sha1", *, implicit: bool = True) -> bytes:
    """The message representative F for M = m1 || m2 (m1 must fill the capacity exactly)."""
    if len(m1) != m1_length(modulus_bits, digest, implicit):
        raise ValueError(f"M1 must be {m1_length(modulus_bits, digest, implicit)} bytes for a {modulus_bits}-bit key")
    h = hashlib.new(digest, m1 + m2).digest()
    return bytes([HEADER_PARTIAL]) + m1 + h + _trailer(digest, implicit)


def sign(private_key: rsa.RSAPrivateKey, m2: bytes, *, digest: str = "sha1", implicit: bool | None = None,
         rng=os.urandom, m1: bytes | None = None) -> bytes:
    """Sign challenge `m2` as an AA chip does: s = F^d mod n with a fresh nonce M1."""
    implicit = digest == "sha1" if implicit is None else implicit
    numbers = private_key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    k = n.bit_length()
    m1 = m1 if m1 is not None else rng(m1_length(k, digest, implicit))
    f = int.from_bytes(encode(m1, m2, k, digest, implicit=implicit), "big")
    return pow(f, d, n).to_bytes((k + 7) // 8, "big")


def recover(public_key: rsa.RSAPublicKey, signature: bytes) -> bytes:
    """F from the signature, taking n - J when J does not end in the nibble 0xC."""
    numbers = public_key.public_numbers()
    n, e = numbers.n, numbers.e
    size = (n.bit_length() + 7) // 8
    s = int.from_bytes(signature, "big")
    if len(signature) != size or not 0 < s < n:
        raise ISO9796Error("aa_signature_length", f"{len(signature)} bytes for a {n.bit_length()}-bit key")
    j = pow(s, e, n)
    if j & 0xF != 0xC:
        j = n - j
    return j.to_bytes(size, "big")


def verify(public_key: rsa.RSAPublicKey, signature: bytes, m2: bytes) -> Recovered:
    """Check `signature` over M1 || `m2`; return the recovered M1, raise `ISO9796Error`."""
    f = recover(public_key, signature)
    if f[0] != HEADER_PARTIAL:
        raise ISO9796Error("aa_bad_header", f"{f[0]:02X}")
    if f[-1] == TRAILER_IMPLICIT:
        digest, t = "sha1", 1
    elif f[-1] == 0xCC and f[-2] in _BY_ID:
        digest, t = _BY_ID[f[-2]], 2
    else:
        raise ISO9796Error("aa_bad_trailer", f[-2:].hex())
    lh = hashlib.new(digest).digest_size
    if len(f) < 1 + lh + t:
        raise ISO9796Error("aa_signature_length", "modulus too small for the hash")
    m1, h = f[1:len(f) - lh - t], f[len(f) - lh - t:len(f) - t]
    if not hmac.compare_digest(hashlib.new(digest, m1 + m2).digest(), h):
        raise ISO9796Error("aa_signature_invalid", "hash of M1 || challenge does not match")
    return Recovered(m1, digest, t == 1)
