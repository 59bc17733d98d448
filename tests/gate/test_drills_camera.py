"""The camera drill on the real face models (quick version of `python -m gate drill camera`):
no frames, a camera that fails or hangs, broken frames, a frozen feed and a feed that switches
to another person; each referred with the barrier closed and the face's reason in the audit record."""
from __future__ import annotations

import io

import pytest

from gate.drills import FROZEN_NOISY, camera_drill

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def drill(models_dir, shared_dir, tmp_path_factory):
    if not (shared_dir / "data" / "pad-dev" / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    out = io.StringIO()
    results = camera_drill(tmp_path_factory.mktemp("camera"), people=1, window_s=8.0, models_dir=models_dir, out=out)
    return {r["case"]: r for r in results}, out.getvalue()


def test_every_camera_fault_is_referred_with_its_reason(drill):
    by_case, log = drill
    faults = [r for name, r in by_case.items() if not name.startswith("control") and name != FROZEN_NOISY]
    assert len(faults) == 11 and all(r["ok"] for r in faults), log
    assert all(r["outcome"] == "referred" and not r["barrier_opened"] for r in faults)
    assert "audit chain verifies" not in by_case, log       # added only when the chain is broken


def test_the_live_control_passes_so_the_faults_are_what_refers(drill):
    by_case, log = drill
    control = by_case["control: the chip holder, live"]
    assert control["ok"] and control["outcome"] == "passed" and control["barrier_opened"], log


def test_frozen_and_switched_feeds_are_refused_by_liveness(drill):
    by_case, _ = drill
    frozen = by_case["frozen feed: one live frame repeated"]
    assert frozen["face_reasons"][:2] == ["presentation_attack", "no_natural_motion"]
    assert "face.liveness_attack" in frozen["audit"][0]
    switch = by_case["feed switches to another person mid-capture"]
    assert switch["face_reasons"][0] == "identity_switch" and "face.liveness_attack" in switch["audit"][0]
    assert by_case["no frames (camera yields nothing)"]["face_reasons"][-1] == "no_frames"
    assert by_case["camera never delivers a frame"]["reasons"] == ["face.timeout"]
    assert by_case["broken: None instead of frames"]["face_reasons"][-1] == "unusable_frames:30"


def test_a_frozen_frame_with_sensor_noise_is_refused(drill):
    """The landmark-motion cue reads the detector's jitter on fresh noise as motion; the challenge
    (on by default) is what refuses it: a still frame answers no prompt."""
    by_case, log = drill
    assert by_case[FROZEN_NOISY]["ok"], log
