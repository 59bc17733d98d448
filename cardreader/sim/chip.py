"""A simulated ICAO 9303 eMRTD chip: the card side of every protocol the reader speaks.

It serves the files of an `IssuedDocument` and enforces access control like a
real chip: no LDS file data before BAC or PACE, SM errors end the session,
a wrong key gives 6300. `Faults` make it misbehave on purpose so tests can
show the reader ends cleanly on bad MACs, truncated or oversized answers,
giant length fields, wrong status words, silence, a card pulled mid-read,
a small read buffer, or no extended-length support.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cardreader.apdu import MRTD_AID, CommandAPDU, ResponseAPDU
from cardreader.lds import tlv
from cardreader.lds.dg1 import DG1
from cardreader.lds.files import FILE_IDS, SFI
from cardreader.lds.mrz import parse_mrz
from cardreader.lds.security_infos import parse_security_infos
from cardreader.pki import iso9796_2
from cardreader.protocol import bac, ca, pace
from cardreader.protocol.aa import AA_SIGNATURE_HASHES
from cardreader.protocol.sm import SecureMessagingError, SMSession, max_short_payload
from cardreader.transport import CardAbsent

SW_OK, SW_EOF = 0x9000, 0x6282


@dataclass
class Faults:
    """Ways to misbehave. File faults apply to READ BINARY of `target` (default DG2) only,
    so access control and the first files still work and the fault hits mid-read."""

    target: str = "DG2"
    bad_mac: bool = False  # flip a bit in the response MAC
    truncate: bool = False  # cut the protected response short
    oversized: bool = False  # return more bytes than Le asked for
    giant_length: bool = False  # the file's TLV header claims ~4 GB
    wrong_sw: int | None = None  # answer the read with this status word
    mute: bool = False  # stop answering when the target is read
    pull: bool = False  # card pulled when the target is read
    max_read: int | None = None  # buffer cap: Ne above it → 6700
    no_extended: bool = False  # extended-length APDUs → 6700
    no_sfi: bool = False  # READ BINARY with a short file identifier → 6A86
    select_mf_6d00: bool = True  # answer SELECT MF with 6D00, like Vietnam's CCCD
    delay_s: float = 0.0  # a slow chip: every answer takes this long


class SimulatedChip:
    """`process(apdu) -> response` for one card; `reset()` is a power cycle."""

    def __init__(self, document: Any, *, faults: Faults | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.document = document
        self.files: dict[str, bytes] = dict(document.files)
        self.faults = faults or Faults()
        self.rng = rng
        self.fid_to_name = {FILE_IDS[n]: n for n in self.files}
        self.sfi_to_name = {SFI[n]: n for n in self.files if n in SFI}
        persona = getattr(document, "persona", None)
        # the chip's access keys come from personalisation (the printed MRZ), not from its own DG1,
        # so a test may corrupt DG1 and still open the chip
        self.mrz_key = (parse_mrz(persona.mrz) if persona is not None else DG1.parse(self.files["DG1"]).mrz).bac_key()
        self.can = getattr(persona, "can", None)
        self.apdus = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.application = False  # False: MF is the current DF
        self.current: str | None = None
        self.sm: SMSession | None = None
        self.access: str | None = None  # 'BAC' | 'PACE'
        self.challenge: bytes | None = None
        self.pace: pace.ChipPACE | None = None
        self.next_sm: SMSession | None = None
        self.ca_cipher: str | None = None

    def _drop_session(self) -> None:
        self.sm, self.access, self.pace = None, None, None

    # ------------------------------------------------------------------ entry
    def process(self, raw: bytes) -> bytes | None:
        self.apdus += 1
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        try:
            cmd = CommandAPDU.from_bytes(raw)
        except ValueError:
            return b"\x67\x00"
        extended = len(raw) > 5 and raw[4] == 0 and len(raw) >= 7
        if extended and self.faults.no_extended:
            return b"\x67\x00"
        if cmd.cla & 0x0C == 0x0C:
            if self.sm is None:
                return b"\x69\x88"
            session = self.sm
            try:
                inner = session.unprotect_command(cmd)
            except SecureMessagingError:
                self._drop_session()
                return b"\x69\x88"
            resp = self._dispatch(inner)
            if resp is None:
                return None
            if not extended and len(resp.data) > max_short_payload(session.block):
                resp = ResponseAPDU(b"", 0x6700)  # the protected answer would not fit a short response
            out = session.protect_response(inner.ins, resp)
            if self.next_sm is not None:  # chip authentication: new keys from the next command on
                self.sm, self.next_sm = self.next_sm, None
            return self._faulty(inner, out)
        if self.sm is not None:
            self._drop_session()  # a plain command ends secure messaging
        resp = self._dispatch(cmd)
        return None if resp is None else resp.to_bytes()

    # ------------------------------------------------------------------ faults
    def _targeted(self, cmd: CommandAPDU) -> bool:
        return cmd.ins in (0xB0, 0xB1) and self.current == self.faults.target

    def _faulty(self, cmd: CommandAPDU, out: bytes) -> bytes:
        if not self._targeted(cmd):
            return out
        if self.faults.bad_mac:
            out = out[:-3] + bytes((out[-3] ^ 0x01,)) + out[-2:]
        if self.faults.truncate:
            out = out[: len(out) // 2] + b"\x90\x00"
        return out

    # ------------------------------------------------------------------ commands
    def _dispatch(self, cmd: CommandAPDU) -> ResponseAPDU | None:
        handler = {0xA4: self._select, 0xB0: self._read, 0xB1: self._read, 0x84: self._get_challenge,
                   0x82: self._external_authenticate, 0x22: self._mse, 0x86: self._general_authenticate,
                   0x88: self._internal_authenticate}.get(cmd.ins)
        if handler is None:
            return ResponseAPDU(b"", 0x6D00)
        return handler(cmd)

    def _select(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 == 0x04:
            if cmd.data != MRTD_AID:
                return ResponseAPDU(b"", 0x6A82)
            self.application, self.current = True, None
            return ResponseAPDU(b"", SW_OK)
        if cmd.p1 == 0x00 and cmd.data in (b"", b"\x3f\x00"):
            if self.faults.select_mf_6d00:
                return ResponseAPDU(b"", 0x6D00)
            self.application, self.current = False, None
            return ResponseAPDU(b"", SW_OK)
        if cmd.p1 in (0x00, 0x02) and len(cmd.data) == 2:
            name = self.fid_to_name.get(int.from_bytes(cmd.data, "big"))
            if name is None or (name == "EF.CardAccess") == self.application:
                return ResponseAPDU(b"", 0x6A82)
            self.current = name
            return ResponseAPDU(b"", SW_OK)
        return ResponseAPDU(b"", 0x6A86)

    def _read(self, cmd: CommandAPDU) -> ResponseAPDU | None:
        if cmd.ins == 0xB0 and cmd.p1 & 0x80:
            if self.faults.no_sfi:
                return ResponseAPDU(b"", 0x6A86)
            name = self.sfi_to_name.get(cmd.p1 & 0x1F)
            if name is None or (name == "EF.CardAccess") == self.application:
                return ResponseAPDU(b"", 0x6A82)
            self.current, offset = name, cmd.p2
        elif cmd.ins == 0xB0:
            offset = (cmd.p1 << 8) | cmd.p2
        else:
            if len(cmd.data) < 3 or cmd.data[0] != 0x54 or cmd.data[1] != len(cmd.data) - 2:
                return ResponseAPDU(b"", 0x6A80)
            offset = int.from_bytes(cmd.data[2:], "big")
        if self.current is None:
            return ResponseAPDU(b"", 0x6986)
        if self.current != "EF.CardAccess" and self.access is None:
            return ResponseAPDU(b"", 0x6982)
        ne = cmd.ne or 0
        if self.faults.max_read is not None and ne > self.faults.max_read:
            return ResponseAPDU(b"", 0x6700)
        content = self.files[self.current]
        if self._targeted(cmd):
            if self.faults.pull:
                raise CardAbsent("card pulled")
            if self.faults.mute:
                return None
            if self.faults.wrong_sw is not None:
                return ResponseAPDU(b"", self.faults.wrong_sw)
            if self.faults.giant_length:
                content = content[:1] + b"\x84\xff\xff\xff\xf0" + content[5:]
        if offset > len(content):
            return ResponseAPDU(b"", 0x6B00)
        data = content[offset:offset + ne]
        if self._targeted(cmd) and self.faults.oversized:
            data += bytes(32)  # past Le, or past the file's own length
        sw = SW_EOF if len(data) < ne else SW_OK
        if cmd.ins == 0xB1:
            n = len(data)
            ln = bytes((n,)) if n < 0x80 else (b"\x81" + bytes((n,)) if n < 0x100 else b"\x82" + n.to_bytes(2, "big"))
            data = b"\x53" + ln + data
        return ResponseAPDU(data, sw)

    def _get_challenge(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.ne is None or cmd.ne < 8:
            return ResponseAPDU(b"", 0x6700)
        self.challenge = self.rng(8)
        return ResponseAPDU(self.challenge, SW_OK)

    def _external_authenticate(self, cmd: CommandAPDU) -> ResponseAPDU:
        challenge, self.challenge = self.challenge, None
        if challenge is None or not self.application:
            return ResponseAPDU(b"", 0x6985)
        out = bac.bac_card_response(self.mrz_key, challenge, cmd.data, self.rng)
        if out is None:
            self._drop_session()
            return ResponseAPDU(b"", 0x6300)
        answer, self.sm = out
        self.access = "BAC"
        return ResponseAPDU(answer, SW_OK)

    def _mse(self, cmd: CommandAPDU) -> ResponseAPDU:
        if (cmd.p1, cmd.p2) in ((0x41, 0xA6), (0x41, 0xA4)):  # chip authentication
            if self.access is None or self.document.ca_private_key is None:
                return ResponseAPDU(b"", 0x6982 if self.access is None else 0x6A80)
            try:
                if cmd.p2 == 0xA6:  # MSE:Set KAT carries the key: 3DES CA is done here
                    self.next_sm = ca.chip_set_kat(cmd.data, self._dg14(), self.document.ca_private_key)
                else:
                    self.ca_cipher = ca.chip_set_at(cmd.data, self._dg14())
            except ca.CAError:
                return ResponseAPDU(b"", 0x6A80)
            return ResponseAPDU(b"", SW_OK)
        if (cmd.p1, cmd.p2) == (0xC1, 0xA4):  # PACE: MSE:Set AT
            try:
                self.pace = pace.ChipPACE.from_mse(cmd.data, self.files.get("EF.CardAccess", b""),
                                                   self.mrz_key, self.can, self.rng)
            except pace.PACEError:
                self.pace = None
                return ResponseAPDU(b"", 0x6A80)
            return ResponseAPDU(b"", SW_OK)
        return ResponseAPDU(b"", 0x6A86)

    def _general_authenticate(self, cmd: CommandAPDU) -> ResponseAPDU:
        if self.pace is not None:
            try:
                data, done = self.pace.step(cmd)
            except pace.PACEError as e:
                self.pace = None
                return ResponseAPDU(b"", 0x6300 if e.reason == "access_denied" else 0x6A80)
            if done is not None:
                self.sm, self.access, self.pace = done, "PACE", None
                self.application = False  # PACE happens in the MF; the reader selects the application next
            return ResponseAPDU(data, SW_OK)
        if self.ca_cipher is not None and self.sm is not None:
            cipher, self.ca_cipher = self.ca_cipher, None
            try:
                self.next_sm = ca.chip_general_authenticate(cmd.data, cipher, self.document.ca_private_key)
            except ca.CAError:
                return ResponseAPDU(b"", 0x6A80)
            return ResponseAPDU(b"\x7c\x00", SW_OK)
        return ResponseAPDU(b"", 0x6985)

    def _dg14(self) -> bytes:
        return tlv.parse_one(self.files.get("DG14", b"\x6e\x00"), 0x6E).value

    def _internal_authenticate(self, cmd: CommandAPDU) -> ResponseAPDU:
        """Active Authentication: ISO/IEC 9796-2 scheme 1 (RSA) or plain r||s ECDSA over the challenge."""
        key = getattr(self.document, "aa_private_key", None)
        if key is None:
            return ResponseAPDU(b"", 0x6D00)
        if self.access is None:
            return ResponseAPDU(b"", 0x6982)
        if len(cmd.data) != 8:
            return ResponseAPDU(b"", 0x6700)
        if isinstance(key, rsa.RSAPrivateKey):
            signature = iso9796_2.sign(key, cmd.data, digest="sha1", rng=self.rng)
        else:
            digest = self._aa_hash()
            r, s = decode_dss_signature(key.sign(cmd.data, ec.ECDSA(getattr(hashes, digest.upper())())))
            size = (key.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if cmd.ne is not None and len(signature) > cmd.ne:
            return ResponseAPDU(b"", 0x6700)
        return ResponseAPDU(signature, SW_OK)

    def _aa_hash(self) -> str:
        info = parse_security_infos(self._dg14()).active_authentication if "DG14" in self.files else None
        return "sha256" if info is None else AA_SIGNATURE_HASHES.get(info["signature_algorithm"].dotted, "sha256")
