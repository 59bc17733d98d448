"""The first real end-to-end transaction (issue 3): a simulated card read through
the Transport seam (PACE, secure messaging, passive authentication against the
simulation's CSCA, chip authentication), the chip photo compared with camera
frames by the real face models, the identity service asked, the decision
committed to the SQLite audit store, and the barrier opened or the traveller
referred."""
from __future__ import annotations

import time

import pytest

from gate.barrier import BarrierState
from gate.config import Settings
from gate.station import Gate, MovingImageCamera

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def lane(models_dir, tmp_path_factory):
    from cardreader.sim.persona import load_persona
    settings = Settings(data_dir=tmp_path_factory.mktemp("gate"), models_dir=models_dir,
                        transaction={"passage_s": 2.0})
    gate = Gate(settings)
    deadline = time.monotonic() + 60
    while not gate.face.ready and gate.face.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.face.ready, gate.face.error
    gate.devices.barrier._auto = 0.05          # the simulated traveller walks through once it opens
    card = gate.lane.issue(load_persona("demo"))
    yield gate, card
    gate.stop()


def transact(gate, card, camera_image):
    gate.camera.set_source(MovingImageCamera([str(camera_image)]))
    gate.lane.insert(card)
    try:
        return gate.run_transaction()
    finally:
        gate.lane.remove()


def audited(gate, rec):
    return [(r.event_type, r.outcome, r.reason_codes) for r in gate.audit.search(transaction_id=rec.id)]


def test_matching_traveller_passes_and_the_barrier_opens(lane, demo_dir):
    gate, card = lane
    before = len(gate.devices.barrier.history)
    rec = transact(gate, card, demo_dir / "eileen_collins_nasa.png")
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


def test_impostor_is_referred_and_the_barrier_stays_closed(lane, shared_dir):
    gate, card = lane
    before = len(gate.devices.barrier.history)
    someone_else = sorted((shared_dir / "data" / "faces-dev" / "images").glob("*/*.jpg"))[0]
    rec = transact(gate, card, someone_else)
    assert rec.outcome == "referred"
    assert "face.no_match" in rec.reasons
    assert gate.devices.barrier.history[before:] == []
    assert audited(gate, rec)[0][:2] == ("decision", "refer")
    assert "face.no_match" in audited(gate, rec)[0][2]
    assert rec.personal.chip_face_jpeg is not None   # kept for the officer's referral view


def test_identity_answer_is_consulted(lane, demo_dir):
    gate, card = lane
    doc = gate.lane.issued[card].persona.document_number
    gate.devices.identity.answers[doc] = ("lost_stolen", ["reported 2026-01-02"])
    try:
        rec = transact(gate, card, demo_dir / "eileen_collins_nasa.png")
    finally:
        gate.devices.identity.answers.clear()
    assert rec.outcome == "referred" and rec.reasons == ["identity.lost_stolen"]
    assert rec.evidence.face.outcome == "match"


def test_photo_held_to_the_camera_is_an_attack(lane, demo_dir):
    from biometrics.camera import ImageSequenceCamera
    gate, card = lane
    gate.camera.set_source(ImageSequenceCamera([str(demo_dir / "eileen_collins_nasa.png")], realtime=True))
    gate.lane.insert(card)
    try:
        rec = gate.run_transaction()
    finally:
        gate.lane.remove()
    assert rec.outcome == "referred" and "face.liveness_attack" in rec.reasons
