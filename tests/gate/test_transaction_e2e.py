"""The first real end-to-end transaction (issue 3): a simulated card read through
the Transport seam (PACE, secure messaging, passive authentication against the
simulation's CSCA, chip authentication), the chip photo compared with camera
frames by the real face models, the identity service asked, the decision
committed to the SQLite audit store, and the barrier opened or the traveller
referred.

The matching traveller is a recorded live capture (pad-dev, a person filmed by a
webcam): the card's chip photo is the first frame, the camera plays the rest as
recorded, so face matching *and* liveness pass for real. The demo persona with
its NASA portrait on the camera is a photo of a photo, which liveness rejects."""
from __future__ import annotations

import csv
import time

import cv2
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
    yield gate
    gate.stop()


@pytest.fixture(scope="module")
def live_person(shared_dir, tmp_path_factory):
    """(chip photo JPEG path, camera frame paths) of one recorded live person."""
    root = shared_dir / "data" / "pad-dev"
    if not (root / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    rows = [r for r in csv.DictReader((root / "labels.csv").open())
            if "/BalveerSinghYT/" in r["path"] and r["label"] == "live"]
    chip = tmp_path_factory.mktemp("chip") / "chip.jpg"
    cv2.imwrite(str(chip), cv2.imread(str(root / rows[0]["path"])), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return chip, [str(root / r["path"]) for r in rows[1:]]


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


def test_matching_traveller_passes_and_the_barrier_opens(lane, card, live_person):
    gate = lane
    before = len(gate.devices.barrier.history)
    rec = transact(gate, card, recorded(live_person[1]))
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


def test_identity_answer_is_consulted(lane, card, live_person):
    gate = lane
    doc = gate.lane.issued[card].persona.document_number
    gate.devices.identity.answers[doc] = ("lost_stolen", ["reported 2026-01-02"])
    try:
        rec = transact(gate, card, recorded(live_person[1]))
    finally:
        gate.devices.identity.answers.clear()
    assert rec.outcome == "referred" and rec.reasons == ["identity.lost_stolen"]
    assert rec.evidence.face.outcome == "match"


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
    assert rec.outcome == "referred" and "face.liveness_attack" in rec.reasons
    assert rec.evidence.face.score >= rec.evidence.face.threshold   # it is her face, but not her
