"""Every way through the transaction state machine, with fake device results.

Each failure must leave the barrier closed (never commanded open) and the audit
trail must say why; the one passing path opens, waits for passage and closes.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from gate.barrier import BarrierError, BarrierState, SimulatedBarrier
from gate.policy import Policy
from gate.transaction import DeviceRefusal, Devices, State, Timeouts, Transaction

TODAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


@dataclass
class FakeMRZ:
    document_code: str = "ID"
    issuing_state: str = "UTO"
    document_number: str = "000123456"
    date_of_birth: dt.date = dt.date(1956, 11, 19)
    date_of_expiry: dt.date = dt.date(2031, 1, 1)
    sex: str = "F"
    nationality: str = "UTO"
    primary_identifier: str = "COLLINS"
    secondary_identifier: str = "EILEEN MARIE"
    optional_data: str = ""
    optional_data_2: str = ""
    format: str = "TD1"
    checks: dict = field(default_factory=lambda: {"document_number": True, "composite": True})

    def bac_key(self):
        return ("key", self.document_number)

    @property
    def lines(self):
        return (self.document_number, self.primary_identifier, self.secondary_identifier)


@dataclass
class Clone:
    protocol: str | None = "CA"
    result: str = "passed"
    reason: str | None = None


@dataclass
class PA:
    verdict: str = "valid"
    reasons: list = field(default_factory=list)


@dataclass
class FakeRead:
    ok: bool = True
    error: str | None = None
    access_control: str = "PACE-ECDH-GM-AES-128"
    dg1: FakeMRZ | None = field(default_factory=FakeMRZ)
    dg13: dict | None = None
    face_image: np.ndarray | None = field(default_factory=lambda: np.zeros((8, 8, 3), np.uint8))
    face_image_bytes: bytes | None = b"\xff\xd8chip"
    passive_authentication: PA | None = field(default_factory=PA)
    clone_detection: Clone | None = field(default_factory=Clone)


@dataclass
class FakeFace:
    outcome: str = "match"
    score: float = 0.8
    threshold: float = 0.4
    liveness: str = "live"
    liveness_score: float = 0.99
    quality_ok: bool = True
    quality_failures: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    best_frame: np.ndarray | None = None


@dataclass
class Answer:
    outcome: str = "clear"
    reasons: list = field(default_factory=list)


class Scanner:
    def __init__(self, mrz=None, exc=None):
        self.mrz, self.exc = mrz or FakeMRZ(), exc

    def scan(self):
        if self.exc:
            raise self.exc
        return self.mrz


class Reader:
    def __init__(self, result=None, exc=None, delay=0.0):
        self.result, self.exc, self.delay = result or FakeRead(), exc, delay
        self.keys = []

    def read(self, key, *, at, deadline_s):
        self.keys.append(key)
        time.sleep(self.delay)
        if self.exc:
            raise self.exc
        return self.result


class Face:
    def __init__(self, result=None, exc=None, delay=0.0):
        self.result, self.exc, self.delay = result or FakeFace(), exc, delay
        self.called = False

    def reference(self, image):
        return "ref"

    def verify(self, ref, window_s, on_guidance):
        self.called = True
        on_guidance(type("G", (), {"code": "move_closer", "vi": "Lại gần hơn", "en": "Move closer"})())
        time.sleep(self.delay)
        if self.exc:
            raise self.exc
        return self.result


class Identity:
    def __init__(self, answer=None, exc=None, delay=0.0):
        self.answer, self.exc, self.delay = answer or Answer(), exc, delay
        self.called = False

    def check(self, person, document):
        self.called = True
        time.sleep(self.delay)
        if self.exc:
            raise self.exc
        return self.answer


class AuditUnavailable(Exception):
    pass


class Audit:
    def __init__(self, fail_on: set[str] = frozenset()):
        self.events: list[dict] = []
        self.fail_on = fail_on

    def append(self, event):
        if event.event_type in self.fail_on or "*" in self.fail_on:
            raise AuditUnavailable("down")
        self.events.append(event)
        return len(self.events)


def make(scanner=None, reader=None, face=None, identity=None, audit=None, barrier=None,
         policy=None, timeouts=None, events=None):
    devices = Devices(scanner=scanner or Scanner(), reader=reader or Reader(), face=face or Face(),
                      identity=identity or Identity(), audit=audit or Audit(),
                      barrier=barrier or SimulatedBarrier(auto_pass_after=0.01),
                      identity_query=None)
    tx = Transaction(devices, policy or Policy(), timeouts=timeouts or Timeouts(passage_s=0.5),
                     on_event=(events.append if events is not None else None), clock=lambda: NOW)
    return tx, devices


def run(**kw):
    tx, d = make(**kw)
    return tx.run(), d


def never_opened(barrier: SimulatedBarrier) -> bool:
    return barrier.state() is BarrierState.CLOSED and not any(e == "open" for _, e in barrier.history)


def test_passing_traveller_opens_waits_for_passage_and_closes():
    events = []
    rec, d = run(events=events)
    assert rec.outcome == "passed" and rec.reasons == []
    assert [e for _, e in d.barrier.history] == ["open", "close"]
    assert d.barrier.state() is BarrierState.CLOSED
    assert [s for s, _ in rec.states] == ["card_detected", "document_read", "document_verified",
                                          "face_capture", "face_verified", "identity_checked", "decision",
                                          "barrier_open", "passage", "closed"]
    assert [e.event_type for e in d.audit.events] == ["decision", "passage"]
    assert d.audit.events[0].outcome == "open"
    assert d.audit.events[0].document.document_number == "000123456"   # hashed by the store, not here
    assert d.reader.keys == [("key", "000123456")]   # the access key came from the scanned MRZ
    # guidance reached the kiosk stream
    assert any(e.guidance == "move_closer" and e.guidance_vi for e in events)
    # personal data dropped at the end
    assert rec.personal.mrz is None and rec.personal.chip_face_jpeg is None
    assert "COLLINS" not in repr(rec) and "000123456" not in str(rec.public())


def test_decision_is_committed_before_the_barrier_opens():
    order = []

    class OrderedAudit(Audit):
        def append(self, event):
            order.append(("audit", event.event_type))
            return super().append(event)

    class OrderedBarrier(SimulatedBarrier):
        def open(self):
            order.append(("barrier", "open"))
            super().open()

    run(audit=OrderedAudit(), barrier=OrderedBarrier(auto_pass_after=0.01))
    assert order.index(("audit", "decision")) < order.index(("barrier", "open"))


FAILURES = {
    "card_error": (dict(reader=Reader(FakeRead(ok=False, error="access_denied", dg1=None, face_image=None,
                                               passive_authentication=None, clone_detection=None))),
                   "document.read_failed:access_denied"),
    "card_removed": (dict(reader=Reader(FakeRead(ok=False, error="card_removed"))),
                     "document.read_failed:card_removed"),
    "reader_exception": (dict(reader=Reader(exc=OSError("reader unplugged"))), "read.error:OSError"),
    "scanner_exception": (dict(scanner=Scanner(exc=RuntimeError("ocr"))), "scan.error:RuntimeError"),
    "scanner_unreadable": (dict(scanner=Scanner(exc=DeviceRefusal("low_confidence"))), "scan.low_confidence"),
    "pa_invalid": (dict(reader=Reader(FakeRead(passive_authentication=PA("invalid", ["dg_hash_mismatch"])))),
                   "document.pa_invalid"),
    "pa_incomplete": (dict(reader=Reader(FakeRead(passive_authentication=PA("incomplete")))),
                      "document.pa_incomplete"),
    "pa_missing": (dict(reader=Reader(FakeRead(passive_authentication=None))), "document.pa_missing"),
    "clone_failed": (dict(reader=Reader(FakeRead(clone_detection=Clone("CA", "failed", "ca_mac")))),
                     "document.clone_detection_failed"),
    "clone_not_performed": (dict(reader=Reader(FakeRead(clone_detection=Clone(None, "not_performed")))),
                            "document.clone_detection_not_performed"),
    "expired": (dict(reader=Reader(FakeRead(dg1=FakeMRZ(date_of_expiry=dt.date(2026, 11, 22))))),
                "document.expired"),
    "mrz_mismatch": (dict(reader=Reader(FakeRead(dg1=FakeMRZ(secondary_identifier="EILEEN")))),
                     "document.mrz_mismatch"),
    "mrz_check_digits": (dict(reader=Reader(FakeRead(dg1=FakeMRZ(checks={"composite": False})))),
                         "document.mrz_check_digits"),
    "no_chip_face": (dict(reader=Reader(FakeRead(face_image=None))), "document.no_chip_face"),
    "face_no_match": (dict(face=Face(FakeFace(outcome="no_match", score=0.1))), "face.no_match"),
    "face_fta": (dict(face=Face(FakeFace(outcome="failure_to_acquire", score=None, liveness=None,
                                         quality_ok=False))), "face.failure_to_acquire"),
    "face_score_below_threshold": (dict(face=Face(FakeFace(score=0.3))), "face.below_threshold"),
    "attack": (dict(face=Face(FakeFace(liveness="attack"))), "face.liveness_attack"),
    "liveness_undetermined": (dict(face=Face(FakeFace(liveness="undetermined"))), "face.liveness_undetermined"),
    "quality": (dict(face=Face(FakeFace(quality_ok=False, quality_failures=["blur"]))), "face.quality"),
    "camera_exception": (dict(face=Face(exc=RuntimeError("camera gone"))), "face.error:RuntimeError"),
    "identity_revoked": (dict(identity=Identity(Answer("revoked"))), "identity.revoked"),
    "identity_lost_stolen": (dict(identity=Identity(Answer("lost_stolen"))), "identity.lost_stolen"),
    "identity_exit_ban": (dict(identity=Identity(Answer("exit_ban"))), "identity.exit_ban"),
    "identity_watch_list": (dict(identity=Identity(Answer("watch_list"))), "identity.watch_list"),
    "identity_not_found": (dict(identity=Identity(Answer("not_found"))), "identity.not_found"),
    "identity_unavailable": (dict(identity=Identity(Answer("unavailable"))), "identity.unavailable"),
    "identity_exception": (dict(identity=Identity(exc=ConnectionError("down"))), "identity.error:ConnectionError"),
    "identity_unknown_outcome": (dict(identity=Identity(Answer("maybe"))), "identity.maybe"),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_every_failure_refers_with_the_barrier_closed(name):
    kw, reason = FAILURES[name]
    rec, d = run(**kw)
    assert rec.outcome == "referred"
    assert reason in rec.reasons, rec.reasons
    assert never_opened(d.barrier)
    assert rec.state is State.REFERRED
    audited = d.audit.events[-1]
    assert audited.event_type in ("decision", "referral") and audited.outcome == "refer"
    assert reason in audited.reason_codes
    assert not any(e.outcome == "open" for e in d.audit.events)
    assert rec.personal.mrz is not None or rec.personal.chip_face_jpeg is None  # kept for the officer


def test_document_failure_stops_before_face_and_identity():
    rec, d = run(reader=Reader(FakeRead(passive_authentication=PA("invalid"))))
    assert not d.face.called and not d.identity.called
    assert "missing.face" in rec.reasons and "missing.identity" in rec.reasons


@pytest.mark.parametrize("step,kw", [
    ("read", dict(reader=Reader(delay=1.0))),
    ("face", dict(face=Face(delay=1.0))),
    ("identity", dict(identity=Identity(delay=1.0))),
])
def test_step_timeouts_refer(step, kw):
    t = Timeouts(read_s=0.2, face_s=0.2, identity_s=0.2, passage_s=0.5)
    started = time.monotonic()
    rec, d = run(timeouts=t, **kw)
    assert time.monotonic() - started < 0.9
    assert rec.reasons == [f"{step}.timeout"]
    assert never_opened(d.barrier)
    assert d.audit.events[-1].reason_codes == [f"{step}.timeout"]


def test_audit_unavailable_refers_and_never_opens():
    rec, d = run(audit=Audit(fail_on={"*"}))
    assert rec.outcome == "referred" and rec.reasons == ["audit.unavailable"]
    assert not rec.audit_ok
    assert never_opened(d.barrier)


def test_barrier_fault_refers_and_is_audited():
    barrier = SimulatedBarrier(auto_pass_after=0.01)
    barrier.fail_next_open = True
    rec, d = run(barrier=barrier)
    assert rec.reasons == ["barrier.fault"]
    assert d.audit.events[-1].event_type == "referral" and d.audit.events[-1].reason_codes == ["barrier.fault"]
    assert barrier.state() is not BarrierState.OPEN


def test_barrier_that_reports_not_open_is_a_fault():
    class Stuck(SimulatedBarrier):
        def open(self):
            self.history.append((0, "open-ignored"))

    rec, d = run(barrier=Stuck())
    assert rec.reasons == ["barrier.fault"]


def test_passage_timeout_closes_and_refers():
    barrier = SimulatedBarrier(auto_pass_after=None)
    rec, d = run(barrier=barrier, timeouts=Timeouts(passage_s=0.1))
    assert rec.reasons == ["barrier.passage_timeout"]
    assert barrier.state() is BarrierState.CLOSED
    assert [e for _, e in barrier.history] == ["open", "close"]
    assert [e.event_type for e in d.audit.events] == ["decision", "referral"]


def test_unexpected_bug_becomes_a_referral():
    def broken_query(mrz, dg13):
        raise KeyError("bug")

    tx, d = make()
    d.identity_query = broken_query
    rec = tx.run()
    assert rec.reasons == ["error.KeyError"]
    assert never_opened(d.barrier)


def test_kiosk_listener_failure_does_not_change_the_decision():
    def bad_listener(event):
        raise RuntimeError("socket closed")

    tx, d = make()
    tx._emit = bad_listener
    assert tx.run().outcome == "passed"


def test_policy_override_lets_not_found_pass_for_one_nationality_only():
    policy = Policy(overrides=[{"nationality": "UTO", "identity_pass": ["clear", "not_found"]}])
    rec, _ = run(identity=Identity(Answer("not_found")), policy=policy)
    assert rec.outcome == "passed"
    rec, _ = run(identity=Identity(Answer("not_found")), policy=policy,
                 reader=Reader(FakeRead(dg1=FakeMRZ(nationality="VNM"))),
                 scanner=Scanner(FakeMRZ(nationality="VNM")))
    assert rec.reasons == ["identity.not_found"]


def test_keep_face_images_only_when_configured():
    tx, d = make(face=Face(FakeFace(best_frame=np.zeros((4, 4, 3), np.uint8))))
    tx.run()
    assert d.audit.events[0].face_image is None
    tx, d = make(face=Face(FakeFace(best_frame=np.zeros((4, 4, 3), np.uint8))))
    tx.keep_face_images = True
    tx.run()
    assert d.audit.events[0].face_image[:2] == b"\xff\xd8"   # the live capture, JPEG


def test_replace_keeps_fakes_honest():
    # The fixtures above must themselves pass: a changed default would hide failures.
    assert replace(FakeFace()).outcome == "match"


def test_json_logs_carry_ids_and_reason_codes_but_no_personal_data():
    import io
    import json
    import logging

    from gate.config import JsonFormatter
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    # only this thread's records: threads left by earlier tests (gate lanes) may log meanwhile
    handler.addFilter(lambda r, me=__import__("threading").get_ident(): r.thread == me)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        rec, _ = run(face=Face(FakeFace(outcome="no_match", score=0.1)))
        logging.getLogger("gate.test").info("with stray extras", extra={"surname": "COLLINS",
                                                                        "document_number": "000123456"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert any(x.get("transaction_id") == rec.id and x.get("reasons") == rec.reasons for x in lines)
    text = stream.getvalue()
    for secret in ("COLLINS", "EILEEN", "000123456", "1956", "chip"):
        assert secret not in text


def test_unresolved_referral_drops_its_personal_data_after_the_ttl(tmp_path):
    from gate.config import Settings
    from gate.station import Gate
    gate = Gate(Settings(data_dir=tmp_path, transaction={"referral_ttl_s": 0.2}),
                devices=make(face=Face(FakeFace(outcome="no_match", score=0.1)))[1])
    rec = gate.run_transaction()
    assert gate.open_referrals() and rec.personal.chip_face_jpeg is not None
    time.sleep(0.25)
    gate.expire_referrals()
    assert rec.personal.chip_face_jpeg is None and rec.personal.mrz is None
    assert gate.open_referrals() == []


class CardTakenDuringCapture(Face):
    """The traveller takes the card back while looking at the camera."""

    def __init__(self, lane_state):
        super().__init__()
        self.lane_state = lane_state

    def verify(self, ref, window_s, on_guidance):
        self.lane_state["present"] = False
        return super().verify(ref, window_s, on_guidance)


@pytest.mark.parametrize("when", ["face_capture", "before_decision"])
def test_card_removed_before_the_decision_refers(when):
    lane_state = {"present": True}
    face = CardTakenDuringCapture(lane_state) if when == "face_capture" else Face()
    identity = Identity()
    if when == "before_decision":
        inner = identity.check

        def check(person, document):
            lane_state["present"] = False
            return inner(person, document)
        identity.check = check
    tx, d = make(face=face, identity=identity)
    d.card_present = lambda: lane_state["present"]
    rec = tx.run()
    assert rec.outcome == "referred" and rec.reasons == ["card.removed"]
    assert never_opened(d.barrier)
    assert d.audit.events[-1].reason_codes == ["card.removed"]
    # the card staying put: the same devices pass
    lane_state["present"] = True
    tx2, d2 = make()
    d2.card_present = lambda: True
    assert tx2.run().outcome == "passed"
