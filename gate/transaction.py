"""One traveller's transaction: a state machine from card on the reader to barrier
open or referral.

waiting → card_detected → document_read → document_verified → face_capture →
face_verified → identity_checked → decision → barrier_open → passage → closed,
and from every state a way out to `referred`. Between document_verified and
face_capture the repeat-attempt rule refers a document that was referred a short
while ago and not since allowed by an officer (`Transaction.repeat_limit`).
Every device call runs under its
own timeout (settings) in a worker thread, so a hung or broken device becomes a
referral with a reason code instead of a stuck gate; an exception anywhere in the
transaction is caught here and also becomes a referral. The barrier is commanded
only after the decision has been committed to the audit trail.

Personal data (MRZ, chip photo, live capture) lives in `PersonalData`, never in
logs or reprs, and is dropped when the transaction ends; a referral keeps it in
memory until an officer resolves it.
"""
from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from gate.audit import AuditEvent, AuditUnavailable
from gate.barrier import Barrier, BarrierState
from gate.identity import DocumentQuery, PersonQuery
from gate.policy import (Decision, DocumentEvidence, Evidence, FaceEvidence, IdentityEvidence, Policy,
                         blocking_reasons, evaluate)

log = logging.getLogger("gate.transaction")

TRANSACTIONS = Counter("egate_transactions_total", "Transactions by outcome", ["outcome"])
STEP_SECONDS = Histogram("egate_step_seconds", "Latency of each transaction step", ["step"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32))
DEVICE_ERRORS = Counter("egate_device_errors_total", "Device errors and timeouts by step", ["step", "kind"])
REFERRAL_REASONS = Counter("egate_referral_reasons_total", "Referral reasons", ["reason"])


class State(str, enum.Enum):
    WAITING = "waiting"
    CARD_DETECTED = "card_detected"
    DOCUMENT_READ = "document_read"
    DOCUMENT_VERIFIED = "document_verified"
    FACE_CAPTURE = "face_capture"
    FACE_VERIFIED = "face_verified"
    IDENTITY_CHECKED = "identity_checked"
    DECISION = "decision"
    BARRIER_OPEN = "barrier_open"
    PASSAGE = "passage"
    CLOSED = "closed"
    REFERRED = "referred"


# --- device seams as the transaction sees them -------------------------------------------------

class DocumentScanner(Protocol):
    """Gives the printed MRZ (the chip access key and the fields DG1 must repeat)."""

    def scan(self) -> Any:
        """Return an MRZ (cardreader.lds.mrz.MRZ-like: `.bac_key()` and the fields), or only
        the CAN (cardreader.protocol.pace.CAN) when the MRZ could not be read."""
        ...


class DocumentReader(Protocol):
    def read(self, key: Any, *, at: dt.datetime, deadline_s: float) -> Any:
        """Read and verify the chip; return a cardreader.reader.ReadResult-like object."""
        ...


class FaceStation(Protocol):
    def reference(self, chip_image: Any) -> Any: ...

    def verify(self, reference: Any, window_s: float, on_guidance: Callable[[Any], None]) -> Any:
        """Return a biometrics.pipeline.FaceResult-like object."""
        ...


class IdentityChecker(Protocol):
    def check(self, person: Any, document: Any) -> Any: ...


class AuditSink(Protocol):
    def append(self, event: Any) -> Any:
        """Return only after the event is committed; raise when the store is unavailable."""
        ...

    def unresolved_referrals(self, document_number: str, since: dt.datetime, limit: int) -> list[Any]:
        """The document's referrals since `since` that no officer has allowed since, newest first, at
        most `limit` (gate.audit.AuditStore). A sink without it fails the repeat-attempt rule (refers)."""
        ...


@dataclass
class Devices:
    scanner: DocumentScanner
    reader: DocumentReader
    face: FaceStation
    identity: IdentityChecker
    audit: AuditSink
    barrier: Barrier
    # Builds the identity service's (person, document) queries from the MRZ and DG13.
    identity_query: Callable[[Any, dict | None], tuple[Any, Any]] | None = None
    # Whether the document is still on the reader; None when the reader cannot tell.
    card_present: Callable[[], bool] | None = None
    # (access key, DG1 read) -> whether the card on the reader is still that document (re-read
    # of DG1): a card swapped while presence never dropped. None when the reader cannot tell.
    same_card: Callable[[Any, Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.identity_query is None:
            self.identity_query = identity_queries


def identity_queries(mrz: Any, dg13: dict | None) -> tuple[PersonQuery, DocumentQuery]:
    """The identity service's questions, from the chip's DG1 (the authenticated MRZ)."""
    person = PersonQuery(surname=_text(mrz.primary_identifier), given_names=_text(mrz.secondary_identifier),
                         date_of_birth=getattr(mrz, "date_of_birth", None),
                         nationality=getattr(mrz, "nationality", None))
    document = DocumentQuery(document_number=_text(mrz.document_number), issuing_state=mrz.issuing_state,
                             document_type=_text(getattr(mrz, "document_code", "")),
                             date_of_expiry=getattr(mrz, "date_of_expiry", None))
    return person, document


def _text(v: Any) -> str:
    return "" if v is None else str(v).replace("<", " ").strip()


@dataclass(frozen=True)
class Timeouts:
    scan_s: float = 10.0
    read_s: float = 25.0
    face_s: float = 15.0
    identity_s: float = 5.0
    audit_s: float = 5.0
    barrier_s: float = 3.0
    passage_s: float = 15.0


# --- what the transaction produces -------------------------------------------------------------

class PersonalData:
    """The traveller's data the officer may need for a referral. Never printed."""

    def __init__(self) -> None:
        self.mrz: Any = None
        self.dg13: dict | None = None
        self.chip_face_jpeg: bytes | None = None
        self.live_face_jpeg: bytes | None = None

    def drop(self) -> None:
        self.mrz = self.dg13 = self.chip_face_jpeg = self.live_face_jpeg = None

    def __repr__(self) -> str:
        return "PersonalData(<hidden>)"

    def summary(self) -> dict[str, Any]:
        """Fields an officer sees on a referral (console only, authenticated)."""
        m = self.mrz
        if m is None:
            return {}
        return {k: str(getattr(m, k, "") or "") for k in (
            "document_code", "issuing_state", "document_number", "primary_identifier",
            "secondary_identifier", "nationality", "date_of_birth", "sex", "date_of_expiry")}


@dataclass
class TransactionRecord:
    id: str
    started_at: dt.datetime
    state: State = State.WAITING
    states: list[tuple[str, float]] = field(default_factory=list)  # (state, seconds since start)
    step_seconds: dict[str, float] = field(default_factory=dict)
    evidence: Evidence = field(default_factory=Evidence)
    decision: Decision | None = None
    outcome: str | None = None        # 'passed' | 'referred'
    reasons: list[str] = field(default_factory=list)
    # the unresolved referrals that made this one a repeat attempt (gate, time, reasons; nothing personal)
    earlier_referrals: list[dict[str, Any]] = field(default_factory=list)
    audit_ok: bool = True
    ended_at: dt.datetime | None = None
    personal: PersonalData = field(default_factory=PersonalData, repr=False)

    def public(self) -> dict[str, Any]:
        """The record without personal data (API, logs, integrator)."""
        ev = self.evidence
        return {
            "id": self.id, "state": self.state.value, "outcome": self.outcome, "reasons": list(self.reasons),
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "states": [{"state": s, "t": round(t, 4)} for s, t in self.states],
            "step_seconds": {k: round(v, 4) for k, v in self.step_seconds.items()},
            "decision": None if self.decision is None else {"open": self.decision.open,
                                                             "reasons": self.decision.reasons},
            "document": None if ev.document is None else _document_public(ev.document),
            "face": None if ev.face is None else {
                "outcome": ev.face.outcome, "score": ev.face.score, "threshold": ev.face.threshold,
                "liveness": ev.face.liveness, "liveness_score": ev.face.liveness_score,
                "quality_ok": ev.face.quality_ok, "quality_failures": list(ev.face.quality_failures),
                "reasons": list(ev.face.reasons)},
            "identity": None if ev.identity is None else {"outcome": ev.identity.outcome,
                                                          "reasons": list(ev.identity.reasons)},
            "earlier_referrals": [dict(x) for x in self.earlier_referrals],
            "audit_ok": self.audit_ok,
        }


def _document_public(d: DocumentEvidence) -> dict[str, Any]:
    return {"read_ok": d.read_ok, "read_error": d.read_error, "access_control": d.access_control,
            "access_key": d.access_key,
            "pa_verdict": d.pa_verdict, "pa_reasons": list(d.pa_reasons),
            "clone_protocol": d.clone_protocol, "clone_result": d.clone_result,
            "clone_reason": d.clone_reason, "document_type": d.document_type,
            "nationality": d.nationality,
            "mrz_check_digits_ok": d.mrz_check_digits_ok,
            "mrz_mismatch_fields": None if d.mrz_mismatch_fields is None else list(d.mrz_mismatch_fields),
            "face_on_chip": d.face_on_chip}


@dataclass(frozen=True)
class TransactionEvent:
    """Pushed to the kiosk: the state and, during capture, the face pipeline's guidance."""

    transaction_id: str | None
    state: State
    guidance: str | None = None      # Guidance.code
    guidance_vi: str | None = None
    guidance_en: str | None = None
    reasons: tuple[str, ...] = ()


class StepTimeout(Exception):
    pass


class DeviceRefusal(Exception):
    """A device answered but could not do its job (e.g. the scanner found no readable
    MRZ); `reason` becomes the referral reason `<step>.<reason>`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def call_with_timeout(fn: Callable[..., Any], timeout: float, *args, **kwargs) -> Any:
    """Run `fn` in a daemon thread; raise StepTimeout if it does not return in time.
    A device that hangs keeps its thread, but never the gate."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # carried to the caller's thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name=f"step-{getattr(fn, '__name__', 'call')}").start()
    if not done.wait(timeout):
        raise StepTimeout(f"no answer within {timeout:.1f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- evidence from the devices' result objects (duck-typed on the contract's names) -------------

def mrz_mismatches(chip: Any, printed: Any) -> tuple[str, ...]:
    """Field names in which DG1 differs from the printed (scanned) MRZ: a genuine chip
    in a forged document, or a card swapped after the scan."""
    from cardreader.scanner import compare_with_dg1
    return tuple(r.removeprefix("mrz_mismatch_") for r in compare_with_dg1(printed, chip))


def document_evidence(read: Any, printed: Any) -> DocumentEvidence:
    if not getattr(read, "ok", False):
        clone = getattr(read, "clone_detection", None)
        if getattr(clone, "result", None) == "failed":   # the reader stops on a cloned chip
            return DocumentEvidence(read_ok=True, clone_protocol=clone.protocol, clone_result="failed",
                                    clone_reason=clone.reason)
        return DocumentEvidence(read_ok=False, read_error=getattr(read, "error", None) or "unknown")
    dg1 = getattr(read, "dg1", None)
    pa = getattr(read, "passive_authentication", None)
    clone = getattr(read, "clone_detection", None)
    code = getattr(dg1, "document_code", None) or ""
    checks = getattr(dg1, "checks", None)
    return DocumentEvidence(
        read_ok=True,
        access_control=getattr(read, "access_control", None),
        pa_verdict=getattr(pa, "verdict", None),
        pa_reasons=tuple(getattr(pa, "reasons", ()) or ()),
        clone_protocol=getattr(clone, "protocol", None),
        clone_result=getattr(clone, "result", None),
        clone_reason=getattr(clone, "reason", None),
        document_type=("P" if code.startswith("P") else code[:1] or None) if dg1 is not None else None,
        nationality=getattr(dg1, "nationality", None),
        issuing_state=getattr(dg1, "issuing_state", None),
        date_of_expiry=getattr(dg1, "date_of_expiry", None),
        mrz_check_digits_ok=None if dg1 is None else bool(getattr(dg1, "valid", False) if checks is None
                                                          else all(checks.values())),
        mrz_mismatch_fields=None if dg1 is None or printed is None else mrz_mismatches(dg1, printed),
        face_on_chip=getattr(read, "face_image", None) is not None,
    )


def face_evidence(res: Any) -> FaceEvidence:
    return FaceEvidence(
        outcome=res.outcome, score=getattr(res, "score", None), threshold=getattr(res, "threshold", None),
        liveness=getattr(res, "liveness", None), liveness_score=getattr(res, "liveness_score", None),
        quality_ok=getattr(res, "quality_ok", None),
        quality_failures=tuple(getattr(res, "quality_failures", ()) or ()),
        reasons=tuple(getattr(res, "reasons", ()) or ()))


def identity_evidence(ans: Any) -> IdentityEvidence:
    return IdentityEvidence(outcome=ans.outcome, reasons=tuple(getattr(ans, "reasons", ()) or ()))


def _jpeg(image: Any) -> bytes | None:
    if image is None:
        return None
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    import cv2
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Transaction:
    """Runs one transaction to its end; `run()` never raises and never leaves the barrier open."""

    def __init__(self, devices: Devices, policy: Policy, *, timeouts: Timeouts = Timeouts(),
                 face_window_s: float = 8.0, keep_face_images: bool = False, gate_id: str = "gate-1",
                 on_event: Callable[[TransactionEvent], None] | None = None,
                 clock: Callable[[], dt.datetime] = _utcnow, monotonic: Callable[[], float] = time.monotonic,
                 journal: "OpenJournal | None" = None, repeat_limit: int = 0, repeat_window_s: float = 1800.0):
        self.d = devices
        self.repeat_limit = repeat_limit        # 0: no repeat-attempt rule (the lane passes its settings)
        self.repeat_window_s = repeat_window_s
        self.journal = journal
        self.policy = policy
        self.t = timeouts
        self.face_window_s = face_window_s
        self.keep_face_images = keep_face_images
        self.gate_id = gate_id
        self._queries: tuple[Any, Any] | None = None
        self._emit = on_event or (lambda e: None)
        self.clock = clock
        self.mono = monotonic
        self.record = TransactionRecord(id=uuid.uuid4().hex, started_at=clock())
        self._t0 = monotonic()
        self._barrier_commanded = False

    # -- helpers --
    def _enter(self, state: State, **guidance: Any) -> None:
        self.record.state = state
        self.record.states.append((state.value, self.mono() - self._t0))
        self._publish(TransactionEvent(self.record.id, state, **guidance))
        log.info("state", extra={"transaction_id": self.record.id, "state": state.value})

    def _publish(self, event: TransactionEvent) -> None:
        try:
            self._emit(event)
        except Exception:  # the kiosk display must never change a decision
            log.exception("event listener failed", extra={"transaction_id": self.record.id})

    def _step(self, name: str, timeout: float, fn: Callable[..., Any], *args, **kwargs) -> Any:
        start = self.mono()
        try:
            return call_with_timeout(fn, timeout, *args, **kwargs)
        except StepTimeout:
            DEVICE_ERRORS.labels(name, "timeout").inc()
            raise _Refer(f"{name}.timeout")
        except _Refer:
            raise
        except DeviceRefusal as e:
            raise _Refer(f"{name}.{e.reason}")
        except Exception as e:
            DEVICE_ERRORS.labels(name, "error").inc()
            log.warning("device error", extra={"transaction_id": self.record.id, "step": name,
                                               "error_type": type(e).__name__})
            raise _Refer(f"{name}.error:{type(e).__name__}")
        finally:
            took = self.mono() - start
            self.record.step_seconds[name] = took
            STEP_SECONDS.labels(name).observe(took)

    def _audit(self, kind: str, outcome: str, reasons: list[str], **checks: Any) -> None:
        rec = self.record
        person, document = self._queries if self._queries else (None, None)
        faces = self.keep_face_images and kind != "passage"   # once per transaction, with its decision
        event = AuditEvent(event_type=kind, gate_id=self.gate_id, transaction_id=rec.id, outcome=outcome,
                           reason_codes=list(reasons), checks=checks, occurred_at=self.clock(),
                           person=person, document=document,
                           face_image=rec.personal.live_face_jpeg if faces else None,
                           chip_face_image=rec.personal.chip_face_jpeg if faces else None)
        self._step("audit", self.t.audit_s, self.d.audit.append, event)

    def _evidence(self, **changes: Any) -> Evidence:
        ev = self.record.evidence
        self.record.evidence = Evidence(**{**{"document": ev.document, "face": ev.face,
                                              "identity": ev.identity}, **changes})
        return self.record.evidence

    def _stop_early(self) -> bool:
        return bool(blocking_reasons(self.record.evidence, self.policy, self.clock().date()))

    # -- the run --
    def run(self) -> TransactionRecord:
        rec = self.record
        try:
            if self.journal is not None:
                self.journal.begin(rec.id)
            self._enter(State.CARD_DETECTED)
            self._checks()
            decision = evaluate(rec.evidence, self.policy, self.clock().date())
            rec.decision = decision
            self._enter(State.DECISION)
            self._decide_and_act(decision)
        except _Refer as r:
            self._refer([r.reason])
        except Exception as e:  # a bug or an unexpected device failure: fail secure
            log.exception("transaction error", extra={"transaction_id": rec.id})
            self._refer([f"error.{type(e).__name__}"])
        finally:
            self._secure_barrier()
            if self.journal is not None and rec.audit_ok:   # unrecorded: left for reconcile
                self.journal.end(rec.id)
            rec.ended_at = self.clock()
            TRANSACTIONS.labels(rec.outcome or "referred").inc()
            if rec.outcome != "referred":
                rec.personal.drop()
            log.info("transaction end", extra={"transaction_id": rec.id, "outcome": rec.outcome,
                                               "reasons": rec.reasons})
        return rec

    def _checks(self) -> None:
        rec = self.record
        scanned = self._step("scan", self.t.scan_s, self.d.scanner.scan)
        printed = scanned if hasattr(scanned, "bac_key") else None   # None: only the CAN was read
        key = printed.bac_key() if printed is not None else scanned
        rec.personal.mrz = printed
        if printed is not None:
            self._queries = self.d.identity_query(printed, None)   # the audit's document/person references
        read = self._step("read", self.t.read_s, self.d.reader.read, key, at=self.clock(), deadline_s=self.t.read_s)
        doc = replace(document_evidence(read, printed), access_key="mrz" if printed is not None else "can")
        self._evidence(document=doc)
        self._enter(State.DOCUMENT_READ)
        if not doc.read_ok:
            return
        rec.personal.mrz = getattr(read, "dg1", None) or printed
        rec.personal.dg13 = getattr(read, "dg13", None)
        self._queries = self.d.identity_query(rec.personal.mrz, rec.personal.dg13)
        rec.personal.chip_face_jpeg = getattr(read, "face_image_bytes", None) or _jpeg(read.face_image)
        self._enter(State.DOCUMENT_VERIFIED)
        if self._stop_early():
            return
        self._repeat_check()

        self._enter(State.FACE_CAPTURE)
        ref = self._step("face_reference", self.t.face_s, self.d.face.reference, read.face_image)

        def guidance(g: Any) -> None:
            self._publish(TransactionEvent(rec.id, State.FACE_CAPTURE, getattr(g, "code", None),
                                        getattr(g, "vi", None), getattr(g, "en", None)))

        face = self._step("face", self.t.face_s, self.d.face.verify, ref, self.face_window_s, guidance)
        rec.personal.live_face_jpeg = _jpeg(getattr(face, "best_frame", None))
        self._evidence(face=face_evidence(face))
        self._card_still_there()
        self._enter(State.FACE_VERIFIED)
        if self._stop_early():
            return

        person, document = self._queries
        answer = self._step("identity", self.t.identity_s, self.d.identity.check, person, document)
        self._evidence(identity=identity_evidence(answer))
        self._enter(State.IDENTITY_CHECKED)
        self._card_still_there()
        if self.d.same_card is not None and not self._step("card", self.t.read_s, self.d.same_card,
                                                           key, getattr(read, "dg1", None)):
            raise _Refer("card.swapped")

    def _repeat_check(self) -> None:
        """The repeat-attempt rule: a document with `repeat_limit` referrals in the last
        `repeat_window_s` that no officer has allowed since (at any gate sharing the audit store)
        is referred before any face is captured, so nobody can retry the liveness challenge until
        its odds fall their way. A store that cannot answer refers too: never a free retry."""
        if self.repeat_limit <= 0:
            return
        since = self.clock() - dt.timedelta(seconds=self.repeat_window_s)
        lookup = getattr(self.d.audit, "unresolved_referrals", None) or _no_referral_history
        try:
            earlier = self._step("repeat_check", self.t.audit_s, lookup, self._queries[1].document_number,
                                 since, self.repeat_limit)
        except _Refer:
            raise _Refer("document.repeat_check_unavailable")
        if len(earlier) >= self.repeat_limit:
            self.record.earlier_referrals = [
                {"transaction_id": r.transaction_id, "gate_id": r.gate_id,
                 "occurred_at": r.occurred_at.isoformat(), "reasons": list(r.reason_codes)} for r in earlier]
            raise _Refer("document.repeat_attempt")

    def _card_still_there(self) -> None:
        """The document stays on the reader until the decision: a card taken away during the
        face capture or before the decision may be swapped for another, so the traveller is referred."""
        if self.d.card_present is not None and not self._step("card", self.t.scan_s, self.d.card_present):
            raise _Refer("card.removed")

    def _decide_and_act(self, decision: Decision) -> None:
        rec = self.record
        try:
            self._audit("decision", "open" if decision.open else "refer", decision.reasons, **self._checks_summary())
        except _Refer as r:
            rec.audit_ok = False
            raise _Refer("audit.unavailable") from r
        if not decision.open:
            self._refer(decision.reasons, audited=True)
            return
        self._open_and_pass()

    def _open_and_pass(self) -> None:
        """Open, wait for one passage, close; the audit trail records each."""
        rec = self.record
        self._barrier_commanded = True
        try:
            self._step("barrier", self.t.barrier_s, self.d.barrier.open)
        except _Refer:
            raise _Refer("barrier.fault")
        if self.d.barrier.state() is not BarrierState.OPEN:
            raise _Refer("barrier.fault")
        self._enter(State.BARRIER_OPEN)
        passed = self._step("passage", self.t.passage_s + 1.0, self.d.barrier.wait_for_passage,
                            self.t.passage_s)
        self._step("barrier_close", self.t.barrier_s, self.d.barrier.close)
        if not passed:
            raise _Refer("barrier.passage_timeout")
        self._enter(State.PASSAGE)
        rec.outcome = "passed"
        rec.reasons = []
        self._enter(State.CLOSED)
        try:
            self._audit("passage", "passed", [])
        except _Refer:
            rec.audit_ok = False
            log.error("passage not recorded: audit unavailable", extra={"transaction_id": rec.id})

    def _checks_summary(self) -> dict[str, Any]:
        p = self.record.public()
        return {k: p[k] for k in ("document", "face", "identity", "step_seconds", "states", "earlier_referrals")}

    def _refer(self, reasons: list[str], audited: bool = False) -> None:
        rec = self.record
        rec.outcome = "referred"
        rec.reasons = list(reasons)
        for r in reasons:
            REFERRAL_REASONS.labels(r.split(":")[0]).inc()
        if not audited and rec.audit_ok:
            try:
                self._audit("referral", "refer", rec.reasons, **self._checks_summary())
            except _Refer:
                rec.audit_ok = False
        self._enter(State.REFERRED, reasons=tuple(reasons))

    def _secure_barrier(self) -> None:
        """Whatever happened, the barrier ends closed (or reported as faulty)."""
        if not self._barrier_commanded:
            return
        try:
            if self.d.barrier.state() is not BarrierState.CLOSED:
                call_with_timeout(self.d.barrier.close, self.t.barrier_s)
        except Exception as e:
            DEVICE_ERRORS.labels("barrier_close", type(e).__name__).inc()
            log.error("barrier did not close", extra={"transaction_id": self.record.id})


class OpenJournal:
    """Transactions begun and not yet ended, one empty file per id, created and
    removed with fsync. A gate killed mid-transaction leaves its file behind; on
    restart `reconcile` closes the barrier and records the transaction as aborted."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def begin(self, transaction_id: str) -> None:
        fd = os.open(self.dir / transaction_id, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._sync_dir()

    def end(self, transaction_id: str) -> None:
        (self.dir / transaction_id).unlink(missing_ok=True)
        self._sync_dir()

    def pending(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if p.is_file())


def reconcile(journal: OpenJournal, audit: AuditSink, barrier: Barrier, *, gate_id: str,
              clock: Callable[[], dt.datetime] = _utcnow, timeout_s: float = 5.0) -> list[str]:
    """At start-up: command the barrier closed (unless it reports closed), then give
    every transaction left open by a crash an `aborted` record. An id whose record
    cannot be committed stays in the journal for the next start. A barrier that will
    not close raises: the gate must not serve. Returns the ids recorded."""
    try:
        closed = barrier.state() is BarrierState.CLOSED
    except Exception:
        closed = False
    if not closed:
        call_with_timeout(barrier.close, timeout_s)
    done = []
    for tx_id in journal.pending():
        event = AuditEvent(event_type="aborted", gate_id=gate_id, transaction_id=tx_id, outcome="refer",
                           reason_codes=["gate.restarted"], occurred_at=clock())
        try:
            call_with_timeout(audit.append, timeout_s, event)
        except Exception as e:
            log.error("aborted transaction not recorded", extra={"transaction_id": tx_id,
                                                                 "error_type": type(e).__name__})
            continue
        journal.end(tx_id)
        done.append(tx_id)
    return done


def _no_referral_history(*_: Any) -> list[Any]:
    raise AuditUnavailable("the audit sink cannot search referrals")


class _Refer(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
