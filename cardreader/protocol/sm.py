"""Secure messaging (ICAO 9303-11 §9.8): 3DES (retail MAC) and AES (CMAC), both directions.

`SMSession` holds the session keys and the send sequence counter; the host
uses `protect`/`unprotect`, the simulated chip `unprotect_command`/
`protect_response`, so both ends share one implementation of the padding,
DO layout and MAC input and cannot silently disagree. A response whose MAC
does not verify raises `SecureMessagingError`; its data is never returned.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography ≥ 43 keeps 3DES under "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES

from cardreader.apdu import CommandAPDU, PlainChannel, ResponseAPDU, card_error


class SecureMessagingError(Exception):
    """The secure channel is broken: bad MAC, malformed SM objects, or an unprotected answer.

    After this error the session is unusable; the read must end.
    """

    def __init__(self, message: str, reason: str = "bad_mac") -> None:
        super().__init__(message)
        self.reason = reason


class AccessControlError(Exception):
    """BAC/PACE/CA did not establish a session (wrong key, protocol mismatch, bad token)."""

    def __init__(self, message: str, reason: str = "access_denied") -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- primitives

def pad(data: bytes, block: int = 8) -> bytes:
    """ISO/IEC 9797-1 padding method 2."""
    data += b"\x80"
    return data + b"\x00" * (-len(data) % block)


def unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise SecureMessagingError("bad padding", "malformed_sm_response")
    return stripped[:-1]


def _adjust_parity(key: bytes) -> bytes:
    return bytes((b & 0xFE) | ((bin(b & 0xFE).count("1") + 1) & 1) for b in key)


CIPHER_KEY_LENGTHS = {"3DES": 16, "AES-128": 16, "AES-192": 24, "AES-256": 32}


def kdf(shared: bytes, counter: int, cipher: str) -> bytes:
    """Key derivation function of 9303-11 §9.7.1 (counter 1: ENC, 2: MAC, 3: PACE password)."""
    c = counter.to_bytes(4, "big")
    if cipher == "3DES":
        return _adjust_parity(hashlib.sha1(shared + c).digest()[:16])
    if cipher == "AES-128":
        return hashlib.sha1(shared + c).digest()[:16]
    if cipher in ("AES-192", "AES-256"):
        return hashlib.sha256(shared + c).digest()[:CIPHER_KEY_LENGTHS[cipher]]
    raise ValueError(f"unknown cipher {cipher}")


def _3des(key: bytes) -> TripleDES:
    return TripleDES(key + key[:8] if len(key) == 16 else key)


def cbc_encrypt(cipher: str, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    algo = _3des(key) if cipher == "3DES" else algorithms.AES(key)
    iv = iv or bytes(algo.block_size // 8)
    enc = Cipher(algo, modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(cipher: str, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    algo = _3des(key) if cipher == "3DES" else algorithms.AES(key)
    iv = iv or bytes(algo.block_size // 8)
    if len(data) % len(iv):
        raise SecureMessagingError("cryptogram is not a whole number of blocks", "malformed_sm_response")
    dec = Cipher(algo, modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (DES) over data the caller has already padded."""
    if len(data) % 8:
        raise ValueError("retail MAC input must be padded")
    k1, k2 = key[:8], key[8:16]
    h = cbc_encrypt("3DES", k1 + k1, data)[-8:]  # single-DES CBC: K1 twice = DES
    d = Cipher(_3des(k2 + k2), modes.ECB()).decryptor()
    h = d.update(h) + d.finalize()
    e = Cipher(_3des(k1 + k1), modes.ECB()).encryptor()
    return e.update(h) + e.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC truncated to 8 bytes."""
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()[:8]


def mac(cipher: str, key: bytes, data: bytes) -> bytes:
    return retail_mac(key, data) if cipher == "3DES" else aes_cmac(key, data)


def encode_do(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        ln = bytes((n,))
    elif n < 0x100:
        ln = bytes((0x81, n))
    elif n < 0x10000:
        ln = b"\x82" + n.to_bytes(2, "big")
    else:
        ln = b"\x83" + n.to_bytes(3, "big")
    return bytes((tag,)) + ln + value


def parse_dos(data: bytes, order: tuple[int, ...]) -> dict[int, tuple[bytes, bytes]]:
    """Split SM data objects (one-byte tags) in the allowed `order`, each at most once.

    Returns tag → (value, raw encoding). Anything else — unknown tag, repeated
    or out-of-order object, a length running past the data — is malformed.
    """
    out: dict[int, tuple[bytes, bytes]] = {}
    pos, rank = 0, -1
    while pos < len(data):
        start, tag = pos, data[pos]
        if tag not in order or order.index(tag) <= rank:
            raise SecureMessagingError(f"unexpected SM data object {tag:02X}", "malformed_sm_response")
        rank = order.index(tag)
        if pos + 1 >= len(data):
            raise SecureMessagingError("truncated SM data object", "malformed_sm_response")
        first = data[pos + 1]
        pos += 2
        if first >= 0x80:
            k = first & 0x7F
            if not 1 <= k <= 3 or pos + k > len(data):
                raise SecureMessagingError("bad SM length", "malformed_sm_response")
            n, pos = int.from_bytes(data[pos:pos + k], "big"), pos + k
        else:
            n = first
        if pos + n > len(data):
            raise SecureMessagingError("SM data object runs past the response", "malformed_sm_response")
        out[tag] = (data[pos:pos + n], data[start:pos + n])
        pos += n
    return out


def max_short_payload(block: int) -> int:
    """Largest response payload whose SM answer (DO'87' + DO'99' + DO'8E') fits a short Le of 256:
    223 bytes with AES, 231 with 3DES."""
    n = 256
    while 1 + (1 if (n // block + 1) * block + 1 < 0x80 else 2) + (n // block + 1) * block + 1 + 4 + 10 > 256:
        n -= 1
    return n


# --------------------------------------------------------------------------- session

@dataclass(repr=False)
class SMSession:
    """Session keys + SSC. `cipher` is '3DES' or 'AES-128'/'AES-192'/'AES-256'."""

    cipher: str
    ks_enc: bytes
    ks_mac: bytes
    ssc: int = 0

    def __repr__(self) -> str:  # keys never in logs
        return f"SMSession({self.cipher}, ssc=<hidden>)"

    @property
    def block(self) -> int:
        return 8 if self.cipher == "3DES" else 16

    def _ssc_bytes(self) -> bytes:
        return self.ssc.to_bytes(self.block, "big")

    def _iv(self) -> bytes | None:
        if self.cipher == "3DES":
            return None
        e = Cipher(algorithms.AES(self.ks_enc), modes.ECB()).encryptor()
        return e.update(self._ssc_bytes()) + e.finalize()

    def _mac(self, data: bytes) -> bytes:
        return mac(self.cipher, self.ks_mac, pad(self._ssc_bytes() + data, self.block))

    def _encrypt(self, data: bytes) -> bytes:
        return cbc_encrypt(self.cipher, self.ks_enc, pad(data, self.block), self._iv())

    def _decrypt(self, data: bytes) -> bytes:
        return unpad(cbc_decrypt(self.cipher, self.ks_enc, data, self._iv()))

    def _data_do(self, ins: int, data: bytes) -> bytes:
        if not data:
            return b""
        if ins & 1:  # odd INS: data is BER-TLV already, DO'85' without padding indicator
            return encode_do(0x85, self._encrypt(data))
        return encode_do(0x87, b"\x01" + self._encrypt(data))

    def _open_data_do(self, dos: dict[int, tuple[bytes, bytes]]) -> bytes:
        if 0x87 in dos:
            value = dos[0x87][0]
            if not value or value[0] != 0x01:
                raise SecureMessagingError("DO'87' without padding indicator 01", "malformed_sm_response")
            return self._decrypt(value[1:])
        if 0x85 in dos:
            return self._decrypt(dos[0x85][0])
        return b""

    def _check_mac(self, dos: dict[int, tuple[bytes, bytes]], covered: bytes) -> None:
        if 0x8E not in dos:
            raise SecureMessagingError("no DO'8E' checksum", "malformed_sm_response")
        if not hmac.compare_digest(dos[0x8E][0], self._mac(covered)):
            raise SecureMessagingError("MAC does not verify")

    # ---- host side
    def protect(self, cmd: CommandAPDU, extended: bool = False) -> CommandAPDU:
        self.ssc += 1
        cla = cmd.cla | 0x0C
        header = pad(bytes((cla, cmd.ins, cmd.p1, cmd.p2)), self.block)
        do87 = self._data_do(cmd.ins, cmd.data)
        do97 = b""
        if cmd.ne is not None:  # 256 → '00', 65536 → '0000'
            le = bytes((cmd.ne & 0xFF,)) if cmd.ne <= 256 else (cmd.ne & 0xFFFF).to_bytes(2, "big")
            do97 = encode_do(0x97, le)
        cc = self._mac(header + do87 + do97)
        body = do87 + do97 + encode_do(0x8E, cc)
        ext = extended or len(body) > 255
        return CommandAPDU(cla, cmd.ins, cmd.p1, cmd.p2, body, ne=65536 if ext else 256)

    def unprotect(self, resp: ResponseAPDU) -> ResponseAPDU:
        self.ssc += 1
        if not resp.data:
            # An unprotected status: the chip aborted SM (6987/6988) or refused in plain.
            if resp.sw in (0x6987, 0x6988):
                raise SecureMessagingError(f"chip reported an SM error {resp.sw:04X}", "sm_aborted")
            if resp.sw == 0x9000:
                raise SecureMessagingError("unprotected success status", "malformed_sm_response")
            raise card_error(resp.sw)
        dos = parse_dos(resp.data, (0x85, 0x87, 0x99, 0x8E))
        if 0x99 not in dos or len(dos[0x99][0]) != 2:
            raise SecureMessagingError("no DO'99' status", "malformed_sm_response")
        covered = b"".join(dos[t][1] for t in (0x85, 0x87, 0x99) if t in dos)
        if len(dos[0x8E][0] if 0x8E in dos else b"") not in (0, 8):
            raise SecureMessagingError("DO'8E' is not 8 bytes", "malformed_sm_response")
        self._check_mac(dos, covered)
        return ResponseAPDU(self._open_data_do(dos), int.from_bytes(dos[0x99][0], "big"))

    # ---- card side (the simulated chip)
    def unprotect_command(self, cmd: CommandAPDU) -> CommandAPDU:
        self.ssc += 1
        if cmd.cla & 0x0C != 0x0C:
            raise SecureMessagingError("command is not protected", "malformed_sm_command")
        dos = parse_dos(cmd.data, (0x85, 0x87, 0x97, 0x8E))
        covered = pad(bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2)), self.block)
        covered += b"".join(dos[t][1] for t in (0x85, 0x87, 0x97) if t in dos)
        self._check_mac(dos, covered)
        ne = None
        if 0x97 in dos:
            le = dos[0x97][0]
            if len(le) not in (1, 2):
                raise SecureMessagingError("bad DO'97'", "malformed_sm_command")
            ne = int.from_bytes(le, "big") or (256 if len(le) == 1 else 65536)
        return CommandAPDU(cmd.cla & ~0x0C & 0xFF, cmd.ins, cmd.p1, cmd.p2, self._open_data_do(dos), ne)

    def protect_response(self, ins: int, resp: ResponseAPDU) -> bytes:
        self.ssc += 1
        do87 = self._data_do(ins, resp.data)
        do99 = encode_do(0x99, resp.sw.to_bytes(2, "big"))
        cc = self._mac(do87 + do99)
        return do87 + do99 + encode_do(0x8E, cc) + resp.sw.to_bytes(2, "big")


class SecureChannel:
    """A `Channel` that protects every command and verifies every response."""

    def __init__(self, plain: PlainChannel, session: SMSession) -> None:
        self.plain = plain
        self.session = session

    def send(self, cmd: CommandAPDU) -> ResponseAPDU:
        protected = self.session.protect(cmd, self.plain.extended)
        return self.session.unprotect(self.plain.send(protected))
