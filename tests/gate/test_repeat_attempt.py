"""The repeat-attempt rule: a document referred a short while ago goes to an officer before any
face is captured, at this lane or any lane sharing the audit store, until an officer allows it or
the window passes. Fake devices from test_transaction over a real audit store (SQLite, and
PostgreSQL under the `postgres` marker), an injected clock; the real simulated lane for the
integrator's demo flows."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from test_transaction import NOW, Answer, Face, FakeFace, FakeMRZ, FakeRead, Identity, Reader, Scanner

from gate.audit import AuditKeys, AuditStore
from gate.barrier import SimulatedBarrier
from gate.config import Settings
from gate.station import Gate, kiosk_message
from gate.transaction import Devices, State

REFUSED = FakeFace(outcome="match", liveness="undetermined", reasons=["challenge_wrong:turn_left"])


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class CountingFace(Face):
    """The face station; counts every use, so a test can say no biometric was taken."""

    def __init__(self, result=None):
        super().__init__(result)
        self.calls = 0

    def reference(self, image):
        self.calls += 1
        return super().reference(image)

    def verify(self, ref, window_s, on_guidance):
        self.calls += 1
        return super().verify(ref, window_s, on_guidance)


def lane(tmp_path, audit, clock, gate_id="gate-1", **transaction):
    """A gate with fake devices over `audit`; its card's document number is set per transaction
    with `use(gate, number)`."""
    settings = Settings(data_dir=tmp_path / gate_id, integrator_api=False, gate_id=gate_id,
                        transaction={"passage_s": 0.5, "audit_s": 2.0, **transaction})
    devices = Devices(scanner=Scanner(), reader=Reader(), face=CountingFace(), identity=Identity(Answer("clear")),
                      audit=audit, barrier=SimulatedBarrier(auto_pass_after=0.01))
    return Gate(settings, devices=devices, clock=clock)


def use(gate, number, face=None):
    mrz = FakeMRZ(document_number=number)
    gate.devices.scanner.mrz = mrz
    gate.devices.reader.result = FakeRead(dg1=mrz)
    gate.devices.face.result = face or FakeFace()
    gate.devices.face.calls = 0
    return gate.run_transaction()


def allow(gate, audit, referral_id, reason):
    """An officer's allow; returns once the traveller has walked through and the barrier closed again."""
    import time
    gate.resolve(referral_id, "open", reason, "olga")
    end = time.monotonic() + 10
    while not audit.search(transaction_id=referral_id, event_type="passage"):
        assert time.monotonic() < end, "the officer's passage was not recorded"
        time.sleep(0.02)


def store(url, tmp_path):
    return AuditStore(url, AuditKeys.load_or_create(tmp_path / "audit.key"))


@pytest.fixture
def one(tmp_path):
    clock = Clock()
    audit = store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path)
    yield lane(tmp_path, audit, clock), audit, clock
    audit.close()


def test_a_referred_document_is_referred_again_at_once_without_a_face_capture(one):
    gate, audit, clock = one
    first = use(gate, "000123456", REFUSED)
    assert first.outcome == "referred" and "face.challenge_unanswered" in first.reasons
    clock.now += dt.timedelta(minutes=5)
    kiosk = []
    publish = gate.bus.publish
    gate.bus.publish = lambda m: (kiosk.append(m), publish(m))
    again = use(gate, "000123456")                  # now the video would have passed: it never gets the chance
    assert again.outcome == "referred" and again.reasons == ["document.repeat_attempt"]
    assert gate.devices.face.calls == 0 and not gate.devices.identity.called
    assert "face_capture" not in [s for s, _ in again.states]
    assert gate.devices.barrier.history == []
    [rec] = audit.search(transaction_id=again.id)
    assert (rec.event_type, rec.outcome, rec.reason_codes) == ("referral", "refer", ["document.repeat_attempt"])
    assert rec.document_ref == audit.keys.document_ref("000123456")
    assert rec.checks["earlier_referrals"] == [{"transaction_id": first.id, "gate_id": "gate-1",
                                                "occurred_at": NOW.isoformat(), "reasons": first.reasons}]
    assert "000123456" not in repr(rec.checks)
    # the kiosk names this reason (bilingual), and the referral waits for the officer like any other
    [shown] = [m for m in kiosk if m["state"] == State.REFERRED.value]
    assert shown["guidance"] == "document.repeat_attempt"
    assert shown["guidance_vi"].startswith("Giấy tờ này cần được cán bộ biên phòng kiểm tra")
    assert "border officer" in shown["guidance_en"]
    assert {r.record.id for r in gate.open_referrals()} == {first.id, again.id}
    # another document is unaffected
    other = use(gate, "000999999")
    assert other.outcome == "passed" and gate.devices.face.calls == 2


def test_other_referrals_name_no_reason_on_the_kiosk():
    from gate.transaction import TransactionEvent
    m = kiosk_message(TransactionEvent("t", State.REFERRED, reasons=("face.no_match",)))
    assert m["guidance"] is None and "no_match" not in repr(m)


def test_an_officer_allow_lets_the_document_try_again_a_deny_does_not(one):
    gate, audit, clock = one
    denied = use(gate, "000123456", REFUSED)
    gate.resolve(denied.id, "deny", "sent to the booth", "olga")
    clock.now += dt.timedelta(minutes=1)
    blocked = use(gate, "000123456")
    assert blocked.reasons == ["document.repeat_attempt"] and gate.devices.face.calls == 0
    # an allow of the latest referral settles the document's earlier ones (the officer saw the traveller)
    allow(gate, audit, blocked.id, "passport checked by hand")
    clock.now += dt.timedelta(minutes=1)
    retried = use(gate, "000123456", REFUSED)
    assert gate.devices.face.calls == 2 and retried.reasons != ["document.repeat_attempt"]
    allow(gate, audit, retried.id, "face compared by hand")
    assert use(gate, "000123456").outcome == "passed"


def test_after_the_window_the_document_may_try_again(one):
    gate, _, clock = one
    use(gate, "000123456", REFUSED)
    clock.now += dt.timedelta(seconds=1799)
    assert use(gate, "000123456").reasons == ["document.repeat_attempt"]
    # the window counts from each referral, the repeat attempt's own too
    clock.now += dt.timedelta(seconds=1801)
    assert use(gate, "000123456").outcome == "passed" and gate.devices.face.calls == 2


def test_the_limit_counts_unresolved_referrals(tmp_path):
    clock = Clock()
    audit = store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path)
    try:
        gate = lane(tmp_path, audit, clock, repeat_limit=2)
        use(gate, "000123456", REFUSED)
        second = use(gate, "000123456", REFUSED)          # one referral: under the limit of 2
        assert gate.devices.face.calls == 2 and second.reasons != ["document.repeat_attempt"]
        assert use(gate, "000123456").reasons == ["document.repeat_attempt"]
        off = lane(tmp_path, audit, clock, gate_id="rig", repeat_limit=0)   # integrator test rigs
        assert use(off, "000123456").outcome == "passed"
    finally:
        audit.close()


def test_the_fleet_shares_the_rule_through_its_audit_store(tmp_path, database_url):
    """Two gates, each with its own store connection to one database (SQLite file or PostgreSQL)."""
    clock = Clock()
    a_store, b_store = store(database_url, tmp_path), store(database_url, tmp_path)
    try:
        a = lane(tmp_path, a_store, clock, gate_id="gate-a")
        b = lane(tmp_path, b_store, clock, gate_id="gate-b")
        first = use(a, "000123456", REFUSED)
        clock.now += dt.timedelta(seconds=30)
        at_b = use(b, "000123456")
        assert at_b.reasons == ["document.repeat_attempt"] and b.devices.face.calls == 0
        assert [(x["gate_id"], x["transaction_id"]) for x in at_b.earlier_referrals] == [("gate-a", first.id)]
        assert use(b, "000999999").outcome == "passed"
        # the officer at gate B allows the repeat: the document may use either gate again
        allow(b, b_store, at_b.id, "passport checked by hand")
        assert use(a, "000123456").outcome == "passed"
        assert a_store.verify().ok
    finally:
        a_store.close()
        b_store.close()


class HangingStore:
    """An audit store whose search never answers; appends still work."""

    def __init__(self, inner):
        self.inner, self.release = inner, threading.Event()

    def append(self, event):
        return self.inner.append(event)

    def unresolved_referrals(self, *args):
        self.release.wait(5)
        return []


@pytest.mark.parametrize("fault", ["search hangs", "sink cannot search", "database removed"])
def test_an_unanswered_repeat_check_refers_before_the_face_and_the_lane_survives(tmp_path, fault):
    clock = Clock()
    real = store(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path)
    audit = {"search hangs": HangingStore(real), "sink cannot search": type("AppendOnly", (), {
        "append": lambda self, e: real.append(e)})(), "database removed": real}[fault]
    gate = lane(tmp_path, audit, clock, audit_s=0.3)
    try:
        if fault == "database removed":
            real.engine.dispose()
            (tmp_path / "audit.db").unlink()
        rec = use(gate, "000123456")
        assert rec.outcome == "referred" and rec.reasons == ["document.repeat_check_unavailable"]
        assert gate.devices.face.calls == 0 and gate.devices.barrier.history == []
        if fault == "database removed":          # nothing recorded: left to the journal, like audit.unavailable
            assert rec.audit_ok is False
            assert use(gate, "000999999").reasons == ["document.repeat_check_unavailable"]
            return
        # recorded like any referral while the store takes appends; the lane serves the next traveller
        assert real.search(transaction_id=rec.id)[0].reason_codes == ["document.repeat_check_unavailable"]
        gate.devices.audit = real
        assert use(gate, "000999999").outcome == "passed"
    finally:
        if isinstance(audit, HangingStore):
            audit.release.set()
        real.close()


def test_production_refuses_to_disable_the_rule(tmp_path):
    real = dict(profile="production", integrator_api=False, reader={"kind": "pcsc", "trust_store": tmp_path},
                camera={"kind": "webcam"}, identity={"url": "https://identity.example"}, data_dir=tmp_path)
    assert Settings(**real).transaction.repeat_limit == 1
    assert Settings(**real).transaction.repeat_window_s == 1800
    with pytest.raises(ValueError, match="transaction.repeat_limit must be at least 1"):
        Settings(**real, transaction={"repeat_limit": 0})
    assert Settings(transaction={"repeat_limit": 0}).transaction.repeat_limit == 0   # demo / test rigs


def test_the_demo_card_again_is_a_repeat_attempt_and_a_new_document_is_not(tmp_path, demo_dir):
    """The integrator's flows on the real simulated lane and audit store, through the lane loop: the
    demo card is referred; put back, it is referred at once; a card issued with another document
    number (the README's webcam and recorded-person flows) goes through the face capture and passes."""
    from cardreader.sim.persona import load_persona
    from gate.station import persona_from
    from test_transaction_e2e import simulated_gate, wait_for
    gate, demo_card, _ = simulated_gate(tmp_path, demo_dir, face_outcome="no_match")
    face = gate.devices.face
    gate.start()
    try:
        for n, want in ((1, "face.no_match"), (2, "document.repeat_attempt")):
            gate.lane.insert(demo_card)
            wait_for(lambda: len(gate.history) == n)
            assert want in gate.recent[-1]["reasons"]
            gate.lane.remove()
            wait_for(lambda: gate.bus.last["state"] == "waiting")    # the lane saw the card go
        assert gate.recent[-1]["reasons"] == ["document.repeat_attempt"]
        assert gate.recent[-1]["document"]["pa_verdict"] == "valid"     # read and verified first, then refused
        face.outcome = "match"
        own = gate.lane.issue(persona_from(load_persona("demo"), document_number="UD5550001"))
        gate.lane.insert(own)
        wait_for(lambda: len(gate.history) == 3)
        assert gate.recent[-1]["outcome"] == "passed"
        gate.lane.remove()
        assert gate._thread.is_alive()
    finally:
        gate.stop()
        gate.audit.close()


def test_the_console_shows_the_repeat_attempt_like_any_referral(one, tmp_path):
    from test_console import FAST, PW, client, login
    from gate.web.app import create_app
    from gate.web.auth import UserStore
    gate, audit, clock = one
    users = UserStore(audit, FAST)
    users.add("olga", PW, "officer")
    first = use(gate, "000123456", REFUSED)
    again = use(gate, "000123456")
    c = client(create_app(gate, users))
    login(c, "olga")
    queue = {r["id"]: r for r in c.get("/api/console/referrals").json()}
    assert set(queue) == {first.id, again.id}
    shown = queue[again.id]
    assert shown["reasons"] == ["document.repeat_attempt"]
    assert [(x["gate_id"], x["reasons"]) for x in shown["earlier_referrals"]] == [("gate-1", first.reasons)]
    assert shown["traveller"]["document_number"] == "000123456" and shown["has_chip_photo"]   # for the officer
    assert queue[first.id]["earlier_referrals"] == []
