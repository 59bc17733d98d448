"""Basic Access Control (ICAO 9303-11 §4.3): MRZ-derived keys, mutual authentication, 3DES SM.

`perform_bac` is the terminal side; `bac_card_response` is the chip side
used by the simulated chip, so both use one derivation.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Callable, Protocol

from cardreader.apdu import AuthenticationFailed, CardError, CommandAPDU, PlainChannel, check
from cardreader.protocol.sm import (AccessControlError, SecureChannel, SMSession, cbc_decrypt,
                                    cbc_encrypt, kdf, pad, retail_mac)


class BACKey(Protocol):
    """`cardreader.lds.mrz.MRZKey` fits: document number, birth and expiry dates with check digits."""

    def key_seed_input(self) -> str: ...


def key_seed(key: BACKey) -> bytes:
    return hashlib.sha1(key.key_seed_input().encode("ascii")).digest()[:16]


def bac_keys(key: BACKey) -> tuple[bytes, bytes]:
    """(K_enc, K_mac) of the document basic access keys."""
    seed = key_seed(key)
    return kdf(seed, 1, "3DES"), kdf(seed, 2, "3DES")


def _session(k_ifd: bytes, k_ic: bytes, rnd_ic: bytes, rnd_ifd: bytes) -> SMSession:
    seed = bytes(a ^ b for a, b in zip(k_ifd, k_ic))
    return SMSession("3DES", kdf(seed, 1, "3DES"), kdf(seed, 2, "3DES"),
                     int.from_bytes(rnd_ic[4:] + rnd_ifd[4:], "big"))


def perform_bac(channel: PlainChannel, key: BACKey, *,
                rng: Callable[[int], bytes] = os.urandom) -> SecureChannel:
    """GET CHALLENGE + EXTERNAL AUTHENTICATE; returns the 3DES secure channel.

    Raises `AccessControlError('access_denied')` when the chip refuses the
    cryptogram (wrong MRZ) and `AccessControlError('bac_failed')` when the
    chip's answer does not authenticate.
    """
    k_enc, k_mac = bac_keys(key)
    rnd_ic = check(channel.send(CommandAPDU(0x00, 0x84, 0, 0, ne=8))).data
    if len(rnd_ic) != 8:
        raise AccessControlError("challenge is not 8 bytes", "bac_failed")
    rnd_ifd, k_ifd = rng(8), rng(16)
    e_ifd = cbc_encrypt("3DES", k_enc, rnd_ifd + rnd_ic + k_ifd)
    try:
        resp = check(channel.send(CommandAPDU(0x00, 0x82, 0, 0, e_ifd + retail_mac(k_mac, pad(e_ifd)), ne=40)))
    except AuthenticationFailed as e:
        raise AccessControlError("chip refused the BAC cryptogram (wrong MRZ?)") from e
    except CardError as e:
        if e.sw in (0x6982, 0x6985, 0x6A80, 0x6A88):
            raise AccessControlError(f"chip refused BAC ({e.sw:04X})") from e
        raise
    if len(resp.data) != 40:
        raise AccessControlError("EXTERNAL AUTHENTICATE answer is not 40 bytes", "bac_failed")
    e_ic, m_ic = resp.data[:32], resp.data[32:]
    if not hmac.compare_digest(retail_mac(k_mac, pad(e_ic)), m_ic):
        raise AccessControlError("chip cryptogram MAC does not verify", "bac_failed")
    r = cbc_decrypt("3DES", k_enc, e_ic)
    if r[:8] != rnd_ic or r[8:16] != rnd_ifd:
        raise AccessControlError("chip did not return our nonces", "bac_failed")
    return SecureChannel(channel, _session(k_ifd, r[16:], rnd_ic, rnd_ifd))


def bac_card_response(key: BACKey, rnd_ic: bytes, cmd_data: bytes,
                      rng: Callable[[int], bytes] = os.urandom) -> tuple[bytes, SMSession] | None:
    """Chip side of EXTERNAL AUTHENTICATE: the 40-byte answer and the session, or None (→ 6300)."""
    k_enc, k_mac = bac_keys(key)
    if len(cmd_data) != 40:
        return None
    e_ifd, m_ifd = cmd_data[:32], cmd_data[32:]
    if not hmac.compare_digest(retail_mac(k_mac, pad(e_ifd)), m_ifd):
        return None
    s = cbc_decrypt("3DES", k_enc, e_ifd)
    rnd_ifd, got_ic, k_ifd = s[:8], s[8:16], s[16:]
    if not hmac.compare_digest(got_ic, rnd_ic):
        return None
    k_ic = rng(16)
    e_ic = cbc_encrypt("3DES", k_enc, rnd_ic + rnd_ifd + k_ic)
    return e_ic + retail_mac(k_mac, pad(e_ic)), _session(k_ifd, k_ic, rnd_ic, rnd_ifd)
