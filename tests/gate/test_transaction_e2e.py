"""The first real end-to-end transaction (issue 3): a simulated card read through
the Transport seam (PACE, secure messaging, passive authentication against the
simulation's CSCA, chip authentication), the chip photo compared with camera
frames by the real face models, the identity service asked, the decision
committed to the SQLite audit store, and the barrier opened or the traveller
referred.

The gate runs with its default settings, so the kiosk asks for a random blink or
head turn during the capture. The matching traveller is a recorded live capture
(pad-dev, a person filmed by a webcam, `recorded_live_person`): the card's chip
photo is his first frame, the camera plays the others and answers the prompt
(his recorded blink, or a head turn rendered from one of his frames), so face
matching, liveness *and* the challenge pass for real. The same person's frames
without the answer, his photo held still, and the demo persona's NASA portrait
are referred.

Without the models (a scripted face step, the real simulated lane and audit store):
the traveller who lifts the card during the face capture or before the decision,
and what `audit.keep_face_images` keeps, or keeps nowhere."""
from __future__ import annotations

import datetime as dt
import time

import cv2
import pytest

from gate.barrier import BarrierState
from gate.config import Settings
from gate.station import Gate, MovingImageCamera, recorded_live_person


@pytest.fixture(scope="module")
def lane(models_dir, tmp_path_factory):
    from cardreader.sim.persona import load_persona
    # one card plays every traveller here, referred or not: no repeat-attempt rule (tests/gate/test_repeat_attempt.py)
    settings = Settings(data_dir=tmp_path_factory.mktemp("gate"), models_dir=models_dir,
                        transaction={"passage_s": 2.0, "repeat_limit": 0})
    gate = Gate(settings)
    deadline = time.monotonic() + 60
    while not gate.face.ready and gate.face.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.face.ready, gate.face.error
    gate.devices.barrier._auto = 0.05          # the simulated traveller walks through once it opens
    yield gate
    gate.stop()


@pytest.fixture(scope="module")
def live_person(shared_dir, tmp_path_factory):
    """(chip photo JPEG path, a fresh camera of the recorded person who answers the challenge)."""
    if not (shared_dir / "data" / "pad-dev" / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    tmp = tmp_path_factory.mktemp("chip")
    return recorded_live_person(tmp)[0], lambda: recorded_live_person(tmp)[1]


@pytest.fixture(scope="module")
def card(lane, live_person):
    from cardreader.sim.persona import load_persona
    from gate.station import persona_from
    return lane.lane.issue(persona_from(load_persona("demo"), face_image_path=live_person[0]))


def transact(gate, card, camera):
    gate.camera.set_source(camera)
    gate.lane.insert(card)
    try:
        return gate.run_transaction()
    finally:
        gate.lane.remove()


def audited(gate, rec):
    return [(r.event_type, r.outcome, r.reason_codes) for r in gate.audit.search(transaction_id=rec.id)]


def recorded(frames):
    from biometrics.camera import ImageSequenceCamera
    return ImageSequenceCamera(frames, realtime=True)


@pytest.mark.models
def test_matching_traveller_passes_and_the_barrier_opens(lane, card, live_person):
    gate = lane
    assert gate.settings.face.challenge and gate.face.verifier.liveness_policy.challenge   # on by default
    before = len(gate.devices.barrier.history)
    rec = transact(gate, card, live_person[1]())
    assert rec.outcome == "passed", rec.reasons
    doc, face = rec.evidence.document, rec.evidence.face
    assert doc.pa_verdict == "valid" and doc.clone_result == "passed" and doc.access_control.startswith("PACE")
    assert doc.mrz_mismatch_fields == ()
    assert face.outcome == "match" and face.score >= face.threshold and face.liveness == "live"
    assert rec.evidence.identity.outcome == "clear"
    assert [e for _, e in gate.devices.barrier.history[before:]] == ["open", "close"]
    assert gate.devices.barrier.state() is BarrierState.CLOSED
    assert audited(gate, rec) == [("decision", "open", []), ("passage", "passed", [])]
    assert gate.audit.verify().ok
    assert rec.personal.chip_face_jpeg is None      # dropped at the end


@pytest.mark.models
def test_impostor_is_referred_and_the_barrier_stays_closed(lane, card, shared_dir):
    gate = lane
    before = len(gate.devices.barrier.history)
    someone_else = sorted((shared_dir / "data" / "faces-dev" / "images").glob("*/*.jpg"))[0]
    rec = transact(gate, card, MovingImageCamera([str(someone_else)]))
    assert rec.outcome == "referred"
    assert "face.no_match" in rec.reasons
    assert gate.devices.barrier.history[before:] == []
    assert audited(gate, rec)[0][:2] == ("decision", "refer")
    assert "face.no_match" in audited(gate, rec)[0][2]
    assert rec.personal.chip_face_jpeg is not None   # kept for the officer's referral view


@pytest.mark.models
def test_identity_answer_is_consulted(lane, card, live_person):
    gate = lane
    doc = gate.lane.issued[card].persona.document_number
    gate.devices.identity.answers[doc] = ("lost_stolen", ["reported 2026-01-02"])
    try:
        rec = transact(gate, card, live_person[1]())
    finally:
        gate.devices.identity.answers.clear()
    assert rec.outcome == "referred" and rec.reasons == ["identity.lost_stolen"]
    assert rec.evidence.face.outcome == "match"


@pytest.mark.models
@pytest.mark.parametrize("motion", [False, True], ids=["still", "moved"])
def test_demo_portrait_held_to_the_camera_is_an_attack(lane, demo_dir, motion):
    """The demo persona's card with its NASA portrait in front of the camera (held
    still, or waved about): the face matches, the presentation is an attack."""
    from cardreader.sim.persona import load_persona
    gate = lane
    demo_card = gate.lane.issue(load_persona("demo"))
    photo = str(demo_dir / "eileen_collins_nasa.png")
    camera = MovingImageCamera([photo]) if motion else recorded([photo])
    rec = transact(gate, demo_card, camera)
    # held still, the passive cues refuse it; waved about, PadNet and the cues may not, but it answers no prompt
    refused_by = {"face.liveness_attack"} if not motion else {"face.liveness_attack", "face.challenge_unanswered"}
    assert rec.outcome == "referred" and refused_by & set(rec.reasons), rec.reasons
    assert rec.evidence.face.score >= rec.evidence.face.threshold   # it is her face, but not her


# --- the real simulated lane with a scripted face step (no models) -----------------------------------

class ScriptedFace:
    """Answers `outcome` (a live match by default) with `frame` as the best frame, after
    `during()`: what the traveller does while the camera looks at them."""

    def __init__(self, frame, during=None, outcome="match"):
        self.frame, self.during, self.outcome = frame, during, outcome

    def reference(self, image):
        return "reference"

    def verify(self, reference, window_s, on_guidance):
        from test_transaction import FakeFace
        if self.during:
            self.during()
        return FakeFace(outcome=self.outcome, score=0.8 if self.outcome == "match" else 0.2, best_frame=self.frame)


class ScriptedIdentity:
    def __init__(self, during=None):
        self.during = during

    def check(self, person, document):
        from gate.identity import IdentityAnswer
        if self.during:
            self.during()
        return IdentityAnswer(outcome="clear")


def simulated_gate(tmp_path, demo_dir, *, face_during=None, identity_during=None, face_outcome="match",
                   **settings):
    """A Gate on the real simulated lane (PACE, secure messaging, passive authentication
    through SimulatedTransport), the SQLite audit store in `tmp_path`, a simulated barrier;
    the camera's best frame is the demo portrait. Returns (gate, card id, kiosk states)."""
    from cardreader.sim.persona import load_persona
    from gate.audit import AuditStore
    from gate.barrier import SimulatedBarrier
    from gate.station import SimulatedLane
    from gate.transaction import Devices
    s = Settings(data_dir=tmp_path, integrator_api=False, models_dir=tmp_path / "no-models",
                 transaction={"passage_s": 1.0, "card_wait_s": 0.05}, kiosk={"speech": False}, **settings)
    lane = SimulatedLane(s)
    card = lane.issue(load_persona("demo"))
    frame = cv2.imread(str(demo_dir / "eileen_collins_nasa.png"))
    devices = Devices(scanner=lane, reader=lane, face=ScriptedFace(frame, face_during, face_outcome),
                      identity=ScriptedIdentity(identity_during), audit=AuditStore.from_settings(s),
                      barrier=SimulatedBarrier(auto_pass_after=0.05), card_present=lane.card_present,
                      same_card=lane.same_card)
    gate = Gate(s, devices=devices, lane=lane)
    states = []
    publish = gate.bus.publish
    gate.bus.publish = lambda m: (states.append(m["state"]), publish(m))
    return gate, card, states


def wait_for(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("when", ["face_capture", "identity_check"])
def test_card_lifted_before_the_decision_refers_and_the_kiosk_waits_again(tmp_path, demo_dir, when):
    """The traveller lifts the card during the face capture, or while the identity service
    is asked (after the capture, before the decision): the barrier never opens, the record
    says card.removed, and the kiosk goes back to waiting for the next card."""
    lift = {"face_during" if when == "face_capture" else "identity_during": lambda: gate.lane.remove()}
    gate, card, states = simulated_gate(tmp_path, demo_dir, **lift)
    gate.start()
    try:
        gate.lane.insert(card)
        wait_for(lambda: len(gate.history) == 1 and states[-1:] == ["waiting"])
        rec = gate.recent[-1]
        assert rec["outcome"] == "referred" and rec["reasons"] == ["card.removed"]
        assert rec["document"]["pa_verdict"] == "valid"      # the chip was really read first
        assert gate.devices.barrier.history == []
        assert gate.devices.barrier.state() is BarrierState.CLOSED
        audited = gate.audit.search(transaction_id=rec["id"])
        assert [(r.event_type, r.outcome, r.reason_codes) for r in audited] == [
            ("referral", "refer", ["card.removed"])]
        assert states.index("face_capture") < states.index("referred") < len(states) - 1
        assert ("identity_checked" in states) == (when == "identity_check")
        assert gate.bus.last["state"] == "waiting"
        assert gate.audit.verify().ok
    finally:
        gate.stop()


def _pieces(jpeg: bytes) -> list[bytes]:
    """Three 48-byte pieces from inside the entropy-coded data of a JPEG."""
    n = len(jpeg)
    return [jpeg[i:i + 48] for i in (n // 4, n // 2, 3 * n // 4)]


def _persisted(root, pieces) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and any(x in p.read_bytes() for x in pieces)]


@pytest.mark.parametrize("keep", [False, True], ids=["not_kept", "kept"])
def test_face_images_are_persisted_only_as_configured(tmp_path, demo_dir, keep):
    """keep_face_images off: no face image lands in the database or anywhere in the data
    directory. On: the record keeps the live capture and the chip photo, encrypted (never
    found in the files in clear), and the officer console shows both for a past referral."""
    from fastapi.testclient import TestClient
    from test_console import FAST, PW, login

    from gate.web.app import create_app
    from gate.web.auth import UserStore
    gate, card, _ = simulated_gate(tmp_path, demo_dir, face_outcome="no_match", audit={"keep_face_images": keep})
    gate.lane.insert(card)
    rec = gate.run_transaction()
    gate.lane.remove()
    assert rec.outcome == "referred" and "face.no_match" in rec.reasons
    chip, live = rec.personal.chip_face_jpeg, rec.personal.live_face_jpeg
    assert chip[:2] == live[:2] == b"\xff\xd8" and len(chip) > 2000 and len(live) > 2000
    users = UserStore(gate.audit, FAST)
    users.add("olga", PW, "officer")
    c = TestClient(create_app(gate, users), base_url="http://testserver")
    login(c, "olga")
    csrf = c.get("/api/console/session").json()["csrf"]
    assert c.post(f"/api/console/referrals/{rec.id}/override", json={"action": "deny", "reason": "escorted"},
                  headers={"X-CSRF-Token": csrf}).status_code == 200
    assert rec.personal.chip_face_jpeg is None                   # resolved: gone from memory
    [past] = c.get("/api/console/history").json()
    assert past["transaction_id"] == rec.id and past["resolved"] == "deny" and past["resolved_by"] == "olga"
    stored = _persisted(tmp_path, _pieces(chip) + _pieces(live))   # database, its WAL, journal, everything
    assert stored == []                                          # in clear nowhere, kept or not
    with gate.audit.engine.connect() as db:
        blobs = [b for (b,) in db.exec_driver_sql("SELECT face_image FROM audit_records") if b is not None]
    photo = f"/api/console/records/{past['record_id']}/photo"
    if not keep:
        assert blobs == [] and past["has_face_image"] is False
        assert c.get(f"{photo}/chip").status_code == 404
        return
    assert len(blobs) == 1 and past["has_face_image"] is True
    assert c.get(f"{photo}/chip").content == chip and c.get(f"{photo}/live").content == live
    views = gate.audit.search(event_type="face_view")
    assert [(v.actor, v.outcome, v.transaction_id) for v in views] == [("olga", "chip", rec.id),
                                                                       ("olga", "live", rec.id)]
    gate.audit.clock = lambda: rec.started_at + dt.timedelta(days=2)
    assert gate.audit.purge().faces == 1                         # the retention job drops both
    assert c.get(f"{photo}/chip").status_code == 404 and c.get(f"{photo}/live").status_code == 404


@pytest.mark.models
def test_the_challenge_is_prompted_on_the_kiosk_and_answered(lane, card, live_person):
    """The prompt reaches the kiosk's event stream (bilingual) before the outcome."""
    gate = lane
    events = []
    real = gate.bus.publish
    gate.bus.publish = lambda m: (events.append(m), real(m))
    try:
        rec = transact(gate, card, live_person[1]())
    finally:
        gate.bus.publish = real
    prompts = [e for e in events if (e.get("guidance") or "").startswith("challenge_")]
    assert rec.outcome == "passed", rec.reasons
    assert prompts and prompts[0]["guidance_vi"] and prompts[0]["guidance_en"]
    assert prompts[-1]["guidance"] == "challenge_done"


@pytest.mark.models
def test_the_travellers_own_photo_held_still_is_referred(lane, card, live_person):
    """His chip photo unchanged on the camera: it matches, but it never answers and never moves."""
    rec = transact(lane, card, recorded([str(live_person[0])]))
    assert rec.outcome == "referred"
    assert "face.liveness_attack" in rec.reasons or "face.challenge_unanswered" in rec.reasons, rec.reasons
    assert lane.devices.barrier.state() is BarrierState.CLOSED


@pytest.mark.models
def test_the_same_person_who_does_not_answer_is_referred_with_the_reason(lane, card, shared_dir):
    """His recorded frames with every answer clip left out: live and matching, but no answer."""
    from biometrics.camera import RespondingCamera
    from biometrics.liveness import CHALLENGES, Challenge
    _, mute = RespondingCamera.pad_dev(shared_dir / "data" / "pad-dev", realtime=True,
                                       drop=tuple(Challenge.guidance_code(k) for k in CHALLENGES))
    rec = transact(lane, card, mute)
    assert rec.outcome == "referred"
    assert "face.challenge_unanswered" in rec.reasons and "face.liveness_undetermined" in rec.reasons, rec.reasons
    assert any(r.startswith("challenge_timeout:") for r in rec.evidence.face.reasons)
