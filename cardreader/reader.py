"""Read an eMRTD end to end: access control, files, clone detection, passive authentication.

`read_document` never raises for anything the card or the link does: every
failure ends the read with `ReadResult.ok = False` and a reason code, within
the deadline. Files are kept only from verified secure-messaging responses.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cardreader.apdu import (BlockSize, CardError, DeadlineExceeded, PlainChannel, probe_extended_length,
                             read_file, select_aid)
from cardreader.lds import LDSError, tlv
from cardreader.lds.com import COM
from cardreader.lds.dg1 import DG1
from cardreader.lds.dg2 import DG2
from cardreader.lds.dg13 import DG13
from cardreader.lds.files import FILE_IDS, SFI
from cardreader.lds.mrz import MRZ, MRZKey
from cardreader.lds.security_infos import ParsedSecurityInfos, parse_security_infos
from cardreader.pki import passive_authentication
from cardreader.protocol import bac, ca, pace
from cardreader.protocol.aa import active_authentication
from cardreader.protocol.pace import CAN
from cardreader.protocol.sm import AccessControlError, SecureChannel, SecureMessagingError, max_short_payload
from cardreader.transport import CardAbsent, ReaderUnavailable, Transport, TransportError, TransportTimeout

log = logging.getLogger(__name__)

DEFAULT_FILES = ("DG1", "DG2", "DG11", "DG12", "DG13", "DG14", "DG15")


@dataclass(frozen=True)
class FileStat:
    size: int
    apdus: int
    seconds: float


@dataclass(frozen=True)
class CloneResult:
    """Outcome of chip authentication (preferred) or active authentication."""

    protocol: str | None  # 'CA' | 'AA' | None
    result: str  # 'passed' | 'failed' | 'not_performed'
    reason: str | None = None
    detail: str | None = None  # e.g. 'CA-ECDH-AES-128'


@dataclass(repr=False)
class ReadResult:
    ok: bool = False
    error: str | None = None
    access_control: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    file_stats: dict[str, FileStat] = field(default_factory=dict)
    dg1: MRZ | None = None
    face_image: Any = None  # numpy BGR uint8
    face_image_bytes: bytes | None = None
    dg13: dict | None = None
    passive_authentication: Any = None  # cardreader.pki.PAResult
    clone_detection: CloneResult | None = None
    extended_length: bool = False
    apdus: int = 0
    seconds: float = 0.0
    block_size: int = 0

    def __repr__(self) -> str:  # files, DG1, face and DG13 are personal data
        return (f"ReadResult(ok={self.ok}, error={self.error!r}, access_control={self.access_control!r}, "
                f"files={sorted(self.files)}, clone_detection={self.clone_detection}, apdus={self.apdus})")

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures without personal data."""
        pa = self.passive_authentication
        return {
            "ok": self.ok, "error": self.error, "access_control": self.access_control,
            "extended_length": self.extended_length, "block_size": self.block_size,
            "apdus": self.apdus, "seconds": round(self.seconds, 4),
            "files": {n: {"size": s.size, "apdus": s.apdus, "seconds": round(s.seconds, 4)}
                      for n, s in self.file_stats.items()},
            "clone_detection": None if self.clone_detection is None else vars(self.clone_detection),
            "passive_authentication": None if pa is None else getattr(pa, "verdict", None),
        }


class _Bounded:
    """The transport with each command's timeout cut to what is left of the read deadline,
    so a card that stops answering near the end cannot carry the read past it."""

    def __init__(self, transport: Transport, deadline: float, clock: Callable[[], float]) -> None:
        self.transport, self.deadline, self.clock = transport, deadline, clock

    def transmit(self, apdu: bytes) -> bytes:
        left = self.deadline - self.clock()
        if left <= 0:
            raise DeadlineExceeded("read deadline passed")
        base = getattr(self.transport, "command_timeout", None)
        if base is None:
            return self.transport.transmit(apdu)
        self.transport.command_timeout = min(base, left)
        try:
            return self.transport.transmit(apdu)
        finally:
            self.transport.command_timeout = base

    def reset(self) -> None:
        self.transport.reset()


class _Reader:
    """One read: the state every step needs, so the steps stay short."""

    def __init__(self, transport: Transport, deadline: float, clock: Callable[[], float],
                 rng: Callable[[int], bytes]) -> None:
        self.transport, self.deadline, self.clock, self.rng = transport, deadline, clock, rng
        self.plain = PlainChannel(_Bounded(transport, deadline, clock))
        self.channel: PlainChannel | SecureChannel = self.plain
        self.block = BlockSize()
        self.result = ReadResult()

    def check_deadline(self) -> None:
        if self.clock() > self.deadline:
            raise DeadlineExceeded("read deadline passed")

    def read(self, name: str) -> bytes:
        self.check_deadline()
        start, before = self.clock(), self.plain.stats.apdus
        data = read_file(self.channel, fid=FILE_IDS[name], sfi=SFI.get(name), block=self.block,
                         deadline=self.deadline, clock=self.clock)
        self.result.files[name] = data
        self.result.file_stats[name] = FileStat(len(data), self.plain.stats.apdus - before, self.clock() - start)
        return data

    def card_access(self) -> ParsedSecurityInfos | None:
        """EF.CardAccess from the MF, read in plain; absent or unreadable means no PACE. A chip
        still in an earlier reader's secure-messaging session refuses the plain read, so the
        read is tried once more after a reset (else a re-read would silently fall back to BAC,
        and a CAN, which only PACE takes, would be refused)."""
        for _ in range(2):
            try:
                data = self.read("EF.CardAccess")
                break
            except CardError:
                self.transport.reset()
        else:
            return None
        try:
            return parse_security_infos(data)
        except LDSError:
            log.warning("EF.CardAccess does not decode; falling back to BAC")
            return None

    def access_control(self, key: MRZKey | CAN, infos: ParsedSecurityInfos | None) -> None:
        """PACE when the chip offers an option this reader supports, else BAC (9303-11 §4.2).

        A PACE run that fails is not retried with BAC: that would let whoever
        disturbs PACE choose the weaker protocol.
        """
        domain_parameters = tuple(infos.pace_domain_parameters) if infos else ()
        options = [o for o in (infos.pace if infos else []) if pace.supported(o, domain_parameters)]
        if options:
            self.channel = pace.perform_pace(self.plain, key, options[0], domain_parameters=domain_parameters,
                                             send_parameter_id=len(infos.pace) > 1, rng=self.rng)
            self.result.access_control = pace.describe(options[0])
            select_aid(self.channel)
            return
        if infos and infos.pace:
            log.info("no offered PACE option is supported here; using BAC")
        if isinstance(key, CAN):
            raise AccessControlError("the chip offers no PACE, and a CAN cannot do BAC", "access_denied")
        select_aid(self.plain)
        self.channel = bac.perform_bac(self.plain, key, rng=self.rng)
        self.result.access_control = "BAC"


def _reason(exc: BaseException, apdus_sent: int) -> str:
    if isinstance(exc, CardAbsent):
        return "card_removed" if apdus_sent else "no_card"
    if isinstance(exc, ReaderUnavailable):
        return "reader_unavailable"
    if isinstance(exc, (TransportTimeout, DeadlineExceeded)):
        return "timeout"
    if isinstance(exc, TransportError):
        return "transport_error"
    if isinstance(exc, LDSError):  # the specific parser reason goes to the log, the result says what failed
        return "malformed_file"
    if isinstance(exc, (SecureMessagingError, AccessControlError, CardError)):
        return exc.reason
    return "internal_error"


def read_document(transport: Transport, key: MRZKey | CAN, *, trust_store: Any = None,
                  at: dt.datetime | None = None, deadline_s: float = 20.0, files: tuple[str, ...] = DEFAULT_FILES,
                  clone_detection: bool = True, clock: Callable[[], float] = time.monotonic,
                  rng: Callable[[int], bytes] = os.urandom) -> ReadResult:
    """Read and check the document on `transport` with the MRZ key or the CAN.

    PACE is used when EF.CardAccess offers a supported option, else BAC.
    EF.COM and EF.SOD are always read; of `files`, those EF.COM lists. DG14 is
    read first so chip authentication protects every later file.
    """
    start = clock()
    r = _Reader(transport, start + deadline_s, clock, rng)
    res = r.result
    try:
        if not transport.card_present():
            raise CardAbsent("no card on the reader")
        res.extended_length = probe_extended_length(r.plain)
        r.block.extended = res.extended_length
        r.access_control(key, r.card_access())
        if r.channel.session.cipher == "3DES":  # 3DES SM fits 231 data bytes in a short response, AES 223
            r.block.steps = (max_short_payload(8), *r.block.steps)
        listed = _listed(r.read("EF.COM"))
        wanted = [n for n in files if n in listed]
        if "DG14" in wanted:
            r.read("DG14")
            if clone_detection:
                res.clone_detection = _chip_authentication(r)
        r.read("EF.SOD")
        for name in wanted:
            if name not in res.files:
                r.read(name)
        if clone_detection and (res.clone_detection is None or res.clone_detection.result == "not_performed"):
            aa = _active_authentication(r)  # AA when CA is not offered (9303-11 §6: CA preferred)
            if res.clone_detection is None or aa.result != "not_performed":
                res.clone_detection = aa
        _parse(res)
        if trust_store is not None:
            res.passive_authentication = _passive_authentication(res, trust_store, at)
        res.ok = res.clone_detection is None or res.clone_detection.result != "failed"
        if not res.ok:
            res.error = res.clone_detection.reason
    except Exception as exc:  # the boundary: every failure becomes a reason, never a crash
        res.ok, res.error = False, _reason(exc, r.plain.stats.apdus)
        if res.error == "internal_error":
            log.exception("read failed unexpectedly")
        else:
            log.info("read ended: %s (%s %s)", res.error, type(exc).__name__, getattr(exc, "reason", ""))
        if isinstance(exc, SecureMessagingError):
            res.files.clear()  # nothing from a broken channel is kept
    res.apdus, res.seconds, res.block_size = r.plain.stats.apdus, clock() - start, r.block.current
    return res


def _listed(com: bytes) -> set[str]:
    return set(COM.parse(com).data_groups)


def _chip_authentication(r: _Reader) -> CloneResult:
    try:
        infos = parse_security_infos(_dg14_value(r.result.files["DG14"]))
    except LDSError as e:
        return CloneResult("CA", "failed", e.reason)
    if not infos.chip_authentication_keys:
        return CloneResult(None, "not_performed", "no_ca_key")
    try:
        start, before = r.clock(), r.plain.stats.apdus
        detail = ca.perform_ca(r.channel, infos)
        r.result.file_stats["CA"] = FileStat(0, r.plain.stats.apdus - before, r.clock() - start)
        return CloneResult("CA", "passed", None, detail)
    except ca.CAError as e:
        if e.reason == "ca_unsupported":
            return CloneResult("CA", "not_performed", e.reason)
        return CloneResult("CA", "failed", e.reason)
    except SecureMessagingError:
        # the chip could not answer under the keys its DG14 key implies: a clone
        r.result.clone_detection = CloneResult("CA", "failed", "no_valid_mac_after_ca")
        raise SecureMessagingError("chip authentication failed: no valid MAC under the new keys",
                                   "chip_authentication_failed") from None


def _dg14_value(dg14: bytes) -> bytes:
    return tlv.parse_one(dg14, 0x6E).value


def _active_authentication(r: _Reader) -> CloneResult:
    files = r.result.files
    if "DG15" not in files:
        return CloneResult(None, "not_performed", "no_dg15")
    aa = active_authentication(r.channel, files["DG15"], files.get("DG14"), rng=r.rng)
    return CloneResult("AA", aa.result, aa.reason, aa.algorithm)


def _parse(res: ReadResult) -> None:
    res.dg1 = DG1.parse(res.files["DG1"]).mrz if "DG1" in res.files else None
    if "DG2" in res.files:
        faces = DG2.parse(res.files["DG2"]).faces
        if faces:
            res.face_image_bytes = faces[0].image_bytes
            res.face_image = faces[0].decode()
    if "DG13" in res.files:
        res.dg13 = DG13.parse(res.files["DG13"]).as_dict()


def _passive_authentication(res: ReadResult, trust_store: Any, at: dt.datetime | None) -> Any:
    dgs = {int(n[2:]): d for n, d in res.files.items() if n.startswith("DG")}
    return passive_authentication(res.files["EF.SOD"], dgs, trust_store, at=at, com=res.files.get("EF.COM"),
                                  dg1_issuing_state=res.dg1.issuing_state if res.dg1 else None)
