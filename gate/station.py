"""The running gate: devices wired from settings, the transaction loop, the kiosk's
event stream and the officer's referral queue.

One `Gate` owns one lane: it waits for a card, runs a `Transaction`, shows the
outcome, waits for the card to be taken, and starts again. Referred
transactions wait in memory (with the traveller's photos, for the officer)
until an officer resolves them or their time-to-live passes; nothing personal
is written anywhere else.
"""
from __future__ import annotations

import asyncio
import sys
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gate.audit import AuditEvent
from gate.barrier import BarrierState, SimulatedBarrier
from gate.config import SHARED, Settings
from gate.transaction import (DEVICE_ERRORS, DeviceRefusal, Devices, OpenJournal, State, Timeouts, Transaction,
                              TransactionEvent, TransactionRecord, call_with_timeout, reconcile)

log = logging.getLogger("gate.station")
SHARED_DATA = SHARED / "data"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- simulated and real device adapters --------------------------------------------------------

class PreviewCamera:
    """A `Camera` whose source can be swapped (integrator API) and whose latest frame
    is kept for the kiosk's preview. Frames stay in memory only."""

    def __init__(self, camera: Any):
        self._camera = camera
        self._lock = threading.Lock()
        self.latest: np.ndarray | None = None

    def set_source(self, camera: Any) -> None:
        with self._lock:
            old, self._camera = self._camera, camera
        old.close()

    def frames(self) -> Iterator[Any]:
        with self._lock:
            cam = self._camera
        for f in cam.frames():
            img = getattr(f, "image", None)   # a broken frame (None, empty, odd dtype) is not previewed
            if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim in (2, 3) and img.size \
                    and (img.ndim == 2 or img.shape[2] in (1, 3, 4)):
                self.latest = img
            yield f

    def close(self) -> None:
        self.latest = None

    def respond(self, code: str) -> None:
        """A kiosk prompt, for a simulated person who answers challenges (`RespondingCamera`)."""
        respond = getattr(self._camera, "respond", None)
        if respond is not None:
            respond(code)

    def preview_jpeg(self) -> bytes | None:
        img = self.latest
        if img is None:
            return None
        try:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
        except cv2.error:
            return None
        return buf.tobytes() if ok else None


class MovingImageCamera:
    """Simulated camera: still images played in real time with small random head
    movements (rotation, scale, shift), the way a person standing at the gate looks
    to a camera. A single still replayed unchanged is what a photo held up to the
    camera looks like, and liveness rightly rejects it."""

    def __init__(self, paths: list[str], fps: float = 15.0, seed: int = 0):
        from biometrics.camera import CameraError
        self._images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
        if not self._images or any(i is None for i in self._images):
            raise CameraError("cannot read a camera source image")
        self._fps, self._seed = fps, seed

    def frames(self) -> Iterator[Any]:
        from biometrics.camera import Frame
        rng = np.random.default_rng(self._seed)
        t0, n = time.monotonic(), 0
        while True:
            img = self._images[n % len(self._images)]
            h, w = img.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.normal(0, 1.5), 1 + rng.normal(0, 0.02))
            m[:, 2] += rng.normal(0, 3, 2)
            time.sleep(max(0.0, t0 + n / self._fps - time.monotonic()))
            yield Frame(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT), time.monotonic(), n)
            n += 1

    def close(self) -> None:
        pass


def camera_from(kind: str, source: str | list[str], fps: float = 15.0, simulate_motion: bool = True) -> Any:
    from biometrics.camera import ImageSequenceCamera, OpenCVCamera, RespondingCamera
    if kind == "recorded":
        return RespondingCamera.pad_dev(SHARED_DATA / "pad-dev", fps=fps, realtime=True)[1]
    if kind == "webcam":
        return OpenCVCamera(int(source) if str(source).isdigit() else source)
    if kind == "clip":
        return OpenCVCamera(str(source), loop=True)
    paths = source if isinstance(source, list) else [source]
    if simulate_motion:
        return MovingImageCamera(paths, fps=fps)
    return ImageSequenceCamera(paths, fps=fps, realtime=True)


class FaceStationAdapter:
    """biometrics.FaceVerifier behind the transaction's `FaceStation` seam; loads the
    models in the background so the web app answers at once."""

    def __init__(self, settings: Settings, camera: PreviewCamera):
        self.settings = settings
        self.camera = camera
        self.verifier: Any = None
        self.error: str | None = None
        threading.Thread(target=self._load, daemon=True, name="face-models").start()

    def _load(self) -> None:
        try:
            import dataclasses

            from biometrics.pipeline import FaceVerifier
            f = self.settings.face
            v = FaceVerifier.load(self.settings.models_dir, self.settings.manifest, threshold=f.match_threshold)
            v.liveness_policy = dataclasses.replace(v.liveness_policy, challenge=f.challenge,
                                                    challenge_actions=f.challenge_actions,
                                                    challenge_response_s=f.challenge_response_s)
            self.verifier = v
        except Exception as e:
            self.error = f"{type(e).__name__}"
            log.error("face models not loaded", extra={"error_type": type(e).__name__})

    @property
    def ready(self) -> bool:
        return self.verifier is not None

    def _v(self) -> Any:
        if self.verifier is None:
            raise RuntimeError("face models not loaded")
        return self.verifier

    def reference(self, chip_image: Any) -> Any:
        return self._v().reference(chip_image)

    def verify(self, reference: Any, window_s: float, on_guidance: Callable[[Any], None]) -> Any:
        def guide(g: Any) -> None:   # to the kiosk, and to a simulated person in front of the camera
            on_guidance(g)
            self.camera.respond(g.code)

        return self._v().verify(self.camera, reference, window_s=window_s, on_guidance=guide)


class Lane:
    """One reader and its document scanner: the transaction's `DocumentScanner` (the
    printed MRZ, read by OCR from the scanner's image) and `DocumentReader` (the chip,
    read through the Transport seam and checked against the trust store)."""

    def __init__(self, settings: Settings, transport: Any, scanner: Any, trust_store: Any):
        self.settings = settings
        self.transport = transport
        self.scanner = scanner
        self._trust_store = trust_store

    def scan(self) -> Any:
        """The printed MRZ; when it cannot be read, a sure CAN (PACE-CAN opens the chip, and
        DG1 then has no printed MRZ to be compared with)."""
        from cardreader.protocol.pace import CAN
        from cardreader.scanner import read_can, read_mrz
        image = self.scanner.capture(timeout=self.settings.transaction.scan_s)
        if image is None:
            raise DeviceRefusal("no_document")
        scan = read_mrz(image)
        if scan.ok:
            return scan.mrz
        can = read_can(image)
        if can.ok:
            return CAN(can.can)
        raise DeviceRefusal(scan.reason or "unreadable")

    def read(self, key: Any, *, at: dt.datetime, deadline_s: float) -> Any:
        from cardreader.reader import read_document
        return read_document(self.transport, key, trust_store=self.trust_store(), at=at, deadline_s=deadline_s)

    def same_card(self, key: Any, dg1: Any) -> bool:
        """Re-read DG1 with the access key: another card refuses the key or holds another document."""
        from cardreader.reader import read_document
        again = read_document(self.transport, key, files=("DG1",), clone_detection=False,
                              deadline_s=self.settings.transaction.read_s)
        return bool(again.ok and dg1 is not None and again.dg1 is not None
                    and again.dg1.document_number == dg1.document_number)

    def trust_store(self) -> Any:
        return self._trust_store

    def wait_for_card(self, timeout: float) -> bool:
        return self.transport.wait_for_card(timeout)

    def wait_for_removal(self, timeout: float) -> bool:
        return self.transport.wait_for_removal(timeout)

    def card_present(self) -> bool:
        return self.transport.card_present()

    @classmethod
    def pcsc(cls, settings: Settings) -> "Lane":
        """A real lane: PC/SC reader, the reader's document camera, the configured trust store."""
        from cardreader.pki import TrustStore
        from cardreader.scanner import OpenCVDocumentScanner
        from cardreader.transport import PcscTransport
        r = settings.reader
        name: str | int = int(r.name) if r.name and r.name.isdigit() else (r.name or 0)
        device: str | int = int(r.document_camera) if r.document_camera.isdigit() else r.document_camera
        return cls(settings, PcscTransport(name, command_timeout=r.command_timeout_s),
                   OpenCVDocumentScanner(device), TrustStore(r.trust_store))


class SimulatedLane(Lane):
    """The simulated card reader and document scanner of a demo lane: cards are issued
    from personas, placed and taken away; the scanner sees the card's printed MRZ
    (as issued, or read by OCR from a rendered photograph of the card)."""

    def __init__(self, settings: Settings):
        from cardreader.pki import TrustStore
        from cardreader.transport import SimulatedTransport
        super().__init__(settings, SimulatedTransport(None), None, TrustStore(None))
        self._printed: Any = None
        self.issued: dict[str, Any] = {}      # card id -> IssuedDocument
        self._trusted: set[bytes] = set()

    def scan(self) -> Any:
        if self._printed is None:
            raise DeviceRefusal("no_document")
        if self.settings.reader.mrz_source == "printed":
            return self._printed
        return super().scan()

    def issue(self, persona: Any) -> str:
        """A card signed by the simulation's test CSCA, which (alone) this lane trusts."""
        from cardreader.sim.issuer import issue
        doc = issue(persona)
        if doc.pki.csca_cert not in self._trusted:
            self.trust_store().add_csca(doc.pki.csca_cert)
            self._trusted.add(doc.pki.csca_cert)
        card_id = f"card-{len(self.issued) + 1}"
        self.issued[card_id] = doc
        return card_id

    def insert(self, card_id: str, side: str = "mrz") -> None:
        """Place the card on the reader; the scanner sees its printed MRZ, or with
        `side='front'` only the CAN printed on a chip ID card's front."""
        from cardreader.lds.mrz import parse_mrz
        from cardreader.protocol.pace import CAN
        from cardreader.sim.chip import SimulatedChip
        from cardreader.scanner import SimulatedDocumentScanner
        doc = self.issued[card_id]
        self.scanner = SimulatedDocumentScanner.for_persona(doc.persona, side=side)
        self._printed = parse_mrz(doc.persona.mrz) if side == "mrz" else CAN(doc.persona.can)
        self.transport.insert(SimulatedChip(doc))

    def remove(self) -> None:
        self.transport.remove()
        self._printed = None
        if self.scanner is not None:
            self.scanner.remove()


class ScriptedIdentity:
    """The identity service with answers the integrator API can set per document
    number (simulation only); otherwise the real service answers."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.answers: dict[str, tuple[str, list[str]]] = {}

    def check(self, person: Any, document: Any) -> Any:
        from gate.identity import IdentityAnswer, normalise_document_number
        scripted = self.answers.get(normalise_document_number(document.document_number))
        if scripted is not None:
            return IdentityAnswer(outcome=scripted[0], reasons=scripted[1])
        return self.inner.check(person, document)


# --- the event stream ---------------------------------------------------------------------------

class EventBus:
    """Fan-out of transaction events to the kiosk's SSE connections. Published from
    the transaction thread, consumed on the web server's event loop."""

    def __init__(self) -> None:
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self.last: dict[str, Any] = {"state": State.WAITING.value, "transaction_id": None}

    def publish(self, message: dict[str, Any]) -> None:
        self.last = message
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(q.put_nowait, message)
            except RuntimeError:   # loop closed
                self.unsubscribe((loop, q))

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        sub = (asyncio.get_running_loop(), asyncio.Queue(maxsize=100))
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: tuple[asyncio.AbstractEventLoop, asyncio.Queue]) -> None:
        with self._lock:
            self._subs.discard(sub)


# The one referral reason the kiosk spells out: the traveller knows their document was just referred,
# and saying so spares them a walk to the next lane. Every other referral shows only "see an officer".
KIOSK_REFERRAL_NOTES: dict[str, dict[str, str]] = {
    "document.repeat_attempt": {
        "vi": "Giấy tờ này cần được cán bộ biên phòng kiểm tra trước khi dùng lại cổng tự động. "
              "Vui lòng gặp cán bộ biên phòng.",
        "en": "This document must be checked by a border officer before it can use the automated gates "
              "again. Please see a border officer."},
}


def kiosk_message(e: TransactionEvent) -> dict[str, Any]:
    """What the kiosk may show: the state and guidance, no reasons, no personal data."""
    out = {"state": e.state.value, "transaction_id": e.transaction_id, "guidance": e.guidance,
           "guidance_vi": e.guidance_vi, "guidance_en": e.guidance_en}
    for r in e.reasons if e.state is State.REFERRED else ():
        if r in KIOSK_REFERRAL_NOTES:
            out.update(guidance=r, guidance_vi=KIOSK_REFERRAL_NOTES[r]["vi"], guidance_en=KIOSK_REFERRAL_NOTES[r]["en"])
    return out


# --- referrals --------------------------------------------------------------------------------

@dataclass
class Referral:
    record: TransactionRecord
    created: float
    resolved: str | None = None        # 'open' | 'deny' | 'expired'
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class OverrideError(Exception):
    pass


# --- the gate ---------------------------------------------------------------------------------

class Gate:
    def __init__(self, settings: Settings, *, devices: Devices | None = None, lane: SimulatedLane | None = None,
                 camera: PreviewCamera | None = None, face: Any = None, clock: Callable[[], dt.datetime] = utcnow):
        self.settings = settings
        self.clock = clock
        self.bus = EventBus()
        self.referrals: dict[str, Referral] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)
        self.history: deque[tuple[dt.datetime, str, tuple[str, ...], float]] = deque(maxlen=10000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: Transaction | None = None
        self.journal = OpenJournal(settings.data_dir / "open-transactions")   # what a crash leaves open
        self.audit: Any = None
        self.audit_error: str | None = None
        if devices is None:
            devices, lane, camera, face = self._build_devices(settings)
        else:
            self.audit = devices.audit
        self.devices, self.lane, self.camera, self.face = devices, lane, camera, face

    def _build_devices(self, s: Settings) -> tuple[Devices, Any, PreviewCamera, Any]:
        from gate.audit import AuditStore
        from gate.identity import connect
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.audit = AuditStore.from_settings(s)
        except Exception as e:
            self.audit_error = type(e).__name__
            log.error("audit store unavailable", extra={"error_type": type(e).__name__})
            self.audit = _NoAudit()
        lane = SimulatedLane(s) if s.reader.kind == "simulated" else Lane.pcsc(s)
        camera = PreviewCamera(camera_from(s.camera.kind, s.camera.source, s.camera.fps, s.camera.simulate_motion))
        face = FaceStationAdapter(s, camera)
        identity = connect(s)
        if s.integrator_api and s.reader.kind == "simulated":
            identity = ScriptedIdentity(identity)
        devices = Devices(scanner=lane, reader=lane, face=face, identity=identity, audit=self.audit,
                          barrier=SimulatedBarrier(auto_pass_after=None), card_present=lane.card_present,
                          same_card=lane.same_card)
        return devices, lane, camera, face

    # -- loop --
    def start(self) -> None:
        reconcile(self.journal, self.devices.audit, self.devices.barrier, gate_id=self.settings.gate_id,
                  clock=self.clock)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gate-lane")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lane.wait_for_card(self.settings.transaction.card_wait_s):
                    self.run_transaction()
                    while not self._stop.is_set() and self.lane.card_present():
                        self.lane.wait_for_removal(self.settings.transaction.card_wait_s)
                    self._publish_waiting()
                self.expire_referrals()
            except Exception as e:  # the lane keeps serving; the error is counted and logged
                DEVICE_ERRORS.labels("lane", type(e).__name__).inc()
                log.exception("lane loop error")
                time.sleep(0.5)

    def play_demo(self, show_s: float = 20.0, models_wait_s: float = 180.0) -> threading.Thread:
        """The demo's one traveller: when the face models are loaded, the demo card goes on the
        simulated reader, the transaction runs with the configured camera, and the card is
        taken back after the outcome has been shown. A referral stays for the console."""
        def run() -> None:
            from cardreader.sim.persona import load_persona
            end = time.monotonic() + models_wait_s
            while (not self._stop.is_set() and time.monotonic() < end and not getattr(self.face, "ready", True)
                   and getattr(self.face, "error", None) is None):
                time.sleep(0.2)
            if self._stop.is_set():
                return
            card = self.lane.issue(load_persona("demo"))
            seen = len(self.history)
            self.lane.insert(card)
            while not self._stop.is_set() and len(self.history) == seen:
                time.sleep(0.2)
            self._stop.wait(show_s)
            self.lane.remove()

        t = threading.Thread(target=run, daemon=True, name="demo-traveller")
        t.start()
        return t

    def demo_note(self) -> str | None:
        """What the kiosk says about its simulated devices (demo profile only)."""
        s = self.settings
        if s.profile != "demo" or s.reader.kind != "simulated":
            return None
        cam = s.camera
        if cam.kind == "webcam":
            camera = "webcam"
        elif cam.kind == "recorded":
            camera = "simulated camera playing a recorded live person who answers the challenge"
        else:
            camera = f"simulated camera playing {Path(str(cam.source)).name}" + (
                " with simulated head movement" if cam.kind == "images" and cam.simulate_motion else "")
        return (f"Demo gate: simulated card reader, {camera}, simulated barrier. The demo card is placed "
                "once at start; a still photo, even moved, is refused by liveness and referred to an "
                "officer. Integrator API: /docs")

    def _publish_waiting(self) -> None:
        self.bus.publish({"state": State.WAITING.value, "transaction_id": None})

    def run_transaction(self) -> TransactionRecord:
        t = self.settings.transaction
        tx = Transaction(self.devices, self.settings.policy,
                         timeouts=Timeouts(scan_s=t.scan_s, read_s=t.read_s, face_s=t.face_s,
                                           identity_s=t.identity_s, audit_s=t.audit_s, barrier_s=t.barrier_s,
                                           passage_s=t.passage_s),
                         face_window_s=self.settings.face.capture_window_s,
                         keep_face_images=self.settings.audit.keep_face_images, gate_id=self.settings.gate_id,
                         on_event=lambda e: self.bus.publish(kiosk_message(e)), clock=self.clock,
                         journal=self.journal, repeat_limit=t.repeat_limit, repeat_window_s=t.repeat_window_s)
        self.current = tx
        rec = tx.run()
        self.current = None
        self.recent.append(rec.public())
        self.history.append((rec.started_at, rec.outcome or "referred", tuple(rec.reasons),
                             sum(rec.step_seconds.values())))
        if rec.outcome == "referred":
            self.referrals[rec.id] = Referral(rec, time.monotonic())
        return rec

    # -- referrals --
    def open_referrals(self) -> list[Referral]:
        return [r for r in self.referrals.values() if r.resolved is None]

    def expire_referrals(self) -> None:
        ttl = self.settings.transaction.referral_ttl_s
        for r in list(self.referrals.values()):
            if r.resolved is None and time.monotonic() - r.created > ttl:
                r.resolved, r.resolved_at = "expired", self.clock()
                r.record.personal.drop()
            if r.resolved is not None and time.monotonic() - r.created > ttl:
                self.referrals.pop(r.record.id, None)

    def resolve(self, referral_id: str, action: str, reason: str, actor: str) -> Referral:
        """An officer's override: audited first; 'open' then lets the traveller through."""
        r = self.referrals.get(referral_id)
        if r is None:
            raise OverrideError("unknown referral")
        if action not in ("open", "deny"):
            raise OverrideError("action must be open or deny")
        if not reason.strip():
            raise OverrideError("a reason is required")
        with r.lock:
            if r.resolved is not None:
                raise OverrideError(f"referral already {r.resolved}")
            ev = AuditEvent(event_type="override", gate_id=self.settings.gate_id, transaction_id=referral_id,
                            outcome=action, reason_codes=[f"override.{action}"] + list(r.record.reasons),
                            checks={"reason": reason.strip()[:500]}, actor=actor, occurred_at=self.clock())
            call_with_timeout(self.devices.audit.append, self.settings.transaction.audit_s, ev)
            if action == "open":
                self._officer_open(referral_id, actor)
            r.resolved, r.resolved_by, r.resolved_at, r.reason = action, actor, self.clock(), reason.strip()
            r.record.personal.drop()
        log.info("referral resolved", extra={"referral_id": referral_id, "action": action, "user": actor})
        return r

    def _officer_open(self, referral_id: str, actor: str) -> None:
        b = self.devices.barrier
        t = self.settings.transaction
        call_with_timeout(b.open, t.barrier_s)
        if b.state() is not BarrierState.OPEN:
            raise OverrideError("barrier fault")
        self.bus.publish({"state": State.BARRIER_OPEN.value, "transaction_id": referral_id})
        threading.Thread(target=self._officer_passage, args=(referral_id, actor), daemon=True).start()

    def _officer_passage(self, referral_id: str, actor: str) -> None:
        b = self.devices.barrier
        t = self.settings.transaction
        passed = False
        try:
            passed = b.wait_for_passage(t.passage_s)
        finally:
            try:
                b.close()
            except Exception:
                DEVICE_ERRORS.labels("barrier_close", "error").inc()
        try:
            self.devices.audit.append(AuditEvent(
                event_type="passage", gate_id=self.settings.gate_id, transaction_id=referral_id,
                outcome="passed" if passed else "no_passage", actor=actor, occurred_at=self.clock(),
                reason_codes=[] if passed else ["barrier.passage_timeout"]))
        except Exception:
            log.error("officer passage not recorded", extra={"referral_id": referral_id})
        self._publish_waiting()

    # -- operations --
    def readiness(self) -> dict[str, Any]:
        audit_ok = False
        try:
            if self.audit is not None and hasattr(self.audit, "engine"):
                with self.audit.engine.connect() as c:
                    c.exec_driver_sql("SELECT 1")
                audit_ok = True
        except Exception:
            audit_ok = False
        face_ok = bool(getattr(self.face, "ready", True))
        reader_ok = self.lane is not None and getattr(self.lane.transport, "available", True)   # PC/SC: reachable
        return {"ready": audit_ok and face_ok and reader_ok,
                "checks": {"models_loaded": face_ok, "audit_store": audit_ok, "reader_present": reader_ok},
                "face_models_error": getattr(self.face, "error", None)}


class _NoAudit:
    """Stands in when the audit store cannot be opened: every append fails, so every
    transaction refers (and /readyz says not ready)."""

    def append(self, event: Any) -> Any:
        from gate.audit import AuditUnavailable
        raise AuditUnavailable("audit store not open")


def persona_from(base: Any, **changes: Any) -> Any:
    """A persona with some fields replaced (pydantic model or dataclass)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if hasattr(base, "model_copy"):
        return base.model_copy(update=changes)
    import dataclasses
    return dataclasses.replace(base, **changes)


def save_upload(data_dir: Path, name: str, data: bytes) -> Path:
    d = data_dir / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(data)
    return p


# --- command line: `python -m gate run` and `python -m gate bench` -------------------------------

DEMO_ACCOUNT = "demo-supervisor"


def register(subparsers) -> None:
    run = subparsers.add_parser("run", help="start the gate (the default command)")
    run.add_argument("--host", help="listen address (settings: host)")
    run.add_argument("--port", type=int, help="listen port (settings: port)")
    run.set_defaults(func=_cmd_run)
    bench = subparsers.add_parser("bench", help="time end-to-end transactions on the simulated devices")
    bench.add_argument("-n", type=int, default=5, help="transactions to run")
    bench.set_defaults(func=_cmd_bench)


def demo_account(settings: Settings, users: Any) -> str | None:
    """In the demo profile only: a supervisor account with a fresh random password,
    returned once to be printed (there is no fixed default password)."""
    import secrets
    if settings.profile != "demo":
        return None
    password = secrets.token_urlsafe(12)
    if any(u.username == DEMO_ACCOUNT for u in users.list()):
        users.set_password(DEMO_ACCOUNT, password)
        users.set_disabled(DEMO_ACCOUNT, False)
    else:
        users.add(DEMO_ACCOUNT, password, "supervisor")
    return password


def _cmd_run(args) -> int:
    import uvicorn

    from gate.config import setup_logging
    from gate.web.app import create_app
    from gate.web.auth import UserStore
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    setup_logging()
    users = UserStore.from_settings(settings)   # in the audit store: a fleet shares its accounts
    password = demo_account(settings, users)
    if settings.profile == "production" and not users.has_role("supervisor"):
        print("No supervisor account: create one with `python -m gate users add NAME --role supervisor`")
    g = Gate(settings)
    g.start()
    if settings.profile == "demo" and settings.reader.kind == "simulated" and settings.reader.demo_card:
        g.play_demo()
    app = create_app(g, users)
    base = f"http://{settings.host}:{settings.port}"
    print(f"Kiosk:   {base}/kiosk")
    print(f"Console: {base}/console")
    if password:
        print(f"Demo console account: {DEMO_ACCOUNT} / {password}  (demo profile only; new at each start)")
    if settings.integrator_api and settings.profile != "production":
        print(f"Integrator API: {base}/integrator  (OpenAPI: {base}/docs)")
    sys.stdout.flush()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    finally:
        g.stop()
    return 0


def recorded_live_person(tmp: Path) -> tuple[Path, Any]:
    """A person recorded live by a webcam (shared pad-dev data) who answers the kiosk's challenge
    prompts: (chip photo JPEG made from his first frame, the camera that plays the others)."""
    from biometrics.camera import RespondingCamera
    first, camera = RespondingCamera.pad_dev(SHARED_DATA / "pad-dev", realtime=True)
    chip = tmp / "chip.jpg"
    cv2.imwrite(str(chip), cv2.imread(str(first)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return chip, camera


def _cmd_bench(args) -> int:
    """Run n demo transactions and print where the time goes."""
    import tempfile

    from cardreader.sim.persona import load_persona
    from gate.identity_service import DocumentIn
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), transaction={"passage_s": 1.0})
        g = Gate(settings)
        while not g.face.ready and g.face.error is None:
            time.sleep(0.1)
        if not g.face.ready:
            print(f"face models not loaded: {g.face.error}")
            return 1
        g.devices.barrier._auto = 0.0   # the simulated traveller walks straight through
        chip, _ = recorded_live_person(Path(tmp))
        demo = load_persona("demo")
        registry = g.devices.identity.inner
        holder = next(p for p in registry.list_persons() if any(
            d.number == demo.document_number for d in p.documents))
        totals, device = [], []
        for i in range(args.n):
            # a document of its own for each traveller (a referral must not make the next one a repeat
            # attempt), registered to the demo holder so the reference identity service still answers
            number = f"UB{i:07d}"
            registry.add_document(holder.id, DocumentIn(number=number, issuing_state=demo.issuing_state,
                                                        document_type=demo.document_type,
                                                        date_of_expiry=demo.date_of_expiry))
            card = g.lane.issue(persona_from(demo, face_image_path=chip, document_number=number))
            g.camera.set_source(camera_from("recorded", "", settings.camera.fps))
            g.lane.insert(card)
            t0 = time.perf_counter()
            rec = g.run_transaction()
            took = time.perf_counter() - t0
            g.lane.remove()
            dev = sum(v for k, v in rec.step_seconds.items() if k in ("scan", "read", "face_reference", "face",
                                                                      "identity", "barrier", "passage",
                                                                      "barrier_close"))
            totals.append(took)
            device.append(dev)
            steps = " ".join(f"{k}={v * 1000:.0f}ms" for k, v in rec.step_seconds.items())
            print(f"#{i + 1} {rec.outcome:8s} total={took * 1000:.0f}ms devices={dev * 1000:.0f}ms {steps} "
                  f"{' '.join(rec.reasons)}")
        n = len(totals)
        mean_t, mean_d = sum(totals) / n, sum(device) / n
        print(f"mean end-to-end {mean_t * 1000:.0f} ms; device time {mean_d * 1000:.0f} ms; "
              f"gate overhead (audit, policy, threads) {(mean_t - mean_d) * 1000:.0f} ms")
        g.stop()
    return 0
