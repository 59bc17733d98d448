"""A frame's stages side by side (`Lanes`): the same results as in order, and a failing call fails
the whole frame, never a decision from part of it."""
from __future__ import annotations

import copy
import csv
import threading
import time

import cv2
import numpy as np
import pytest

from biometrics.pipeline import Capture, Lanes, Reference


def test_calls_run_side_by_side_and_return_every_result():
    both = threading.Barrier(2, timeout=5)   # passes only if two calls run at the same time

    def meet(x):
        both.wait()
        return x

    done, took = Lanes(2).run({"a": lambda: meet(1), "b": lambda: meet(2), "c": lambda: 3})
    assert done == {"a": 1, "b": 2, "c": 3} and set(took) == {"a", "b", "c"}


def test_one_lane_runs_everything_in_order_on_the_caller():
    seen = []
    done, _ = Lanes(1).run({k: (lambda k=k: seen.append((k, threading.get_ident())) or k) for k in "abc"})
    assert [k for k, _ in seen] == ["a", "b", "c"] and {t for _, t in seen} == {threading.get_ident()}
    assert done == {"a": "a", "b": "b", "c": "c"}


def test_a_failing_call_fails_the_run_after_the_running_ones_ended_and_drops_the_rest():
    ended, started = threading.Event(), []

    def slow():
        time.sleep(0.2)
        ended.set()

    def boom():
        time.sleep(0.02)
        raise RuntimeError("model failed")

    lanes = Lanes(2)
    with pytest.raises(RuntimeError, match="model failed"):
        lanes.run({"slow": slow, "boom": boom, "later": lambda: started.append(1)})
    assert ended.is_set() and not started   # nothing still running, nothing started after the failure
    assert lanes.run({"x": lambda: 1, "y": lambda: 2})[0] == {"x": 1, "y": 2}   # the lanes still serve


@pytest.fixture(scope="module")
def verifier(models_dir):
    from biometrics.pipeline import FaceVerifier
    v = FaceVerifier.load(models_dir, workers=2)
    v.liveness_policy.challenge = False
    return v


@pytest.fixture(scope="module")
def recordings(shared_dir):
    root = shared_dir / "data" / "pad-dev"
    if not (root / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    rows = list(csv.DictReader((root / "labels.csv").open()))
    person = sorted({r["path"].split("/")[1] for r in rows})[0]
    return {lab: [cv2.imread(str(root / r["path"])) for r in rows
                  if f"/{person}/" in r["path"] and r["label"] == lab][:10] for lab in ("live", "spoof")}


def _in_order(v):
    w = copy.copy(v)
    w.lanes = Lanes(1)
    return w


@pytest.mark.models
def test_the_capture_loop_decides_the_same_on_two_lanes_as_in_order(verifier, recordings):
    from biometrics.bench import run_sequence
    assert verifier.lanes.workers == 2
    ref = verifier.analyze(recordings["live"][0]).embedding
    for frames in recordings.values():
        a, b = run_sequence(_in_order(verifier), frames, ref), run_sequence(verifier, frames, ref)
        assert (a.outcome, a.liveness, a.reasons, a.frames_seen) == (b.outcome, b.liveness, b.reasons, b.frames_seen)
        assert a.score == pytest.approx(b.score, abs=1e-6) and a.liveness_score == pytest.approx(b.liveness_score, abs=1e-6)
        assert a.liveness_cues.keys() == b.liveness_cues.keys()
        assert all(a.liveness_cues[k] == pytest.approx(b.liveness_cues[k], abs=1e-6) for k in a.liveness_cues)
    img = recordings["spoof"][0]
    box = verifier.detector.detect(img)[0].box
    score, f = verifier.pad.assess(img, box)
    score2, f2 = verifier.pad.fuse(verifier.lanes.run(verifier.pad.parts(img, box))[0])
    assert score2 == pytest.approx(score, abs=1e-6) and f2 == pytest.approx(f, abs=1e-6)


@pytest.mark.models
def test_a_pad_model_failing_in_its_lane_fails_the_frame_not_the_barrier(verifier, recordings, monkeypatch):
    v = copy.copy(verifier)
    v.pad = copy.copy(verifier.pad)
    calls = []

    def fail_on_third(image, box):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("onnxruntime failure")
        return verifier.pad.faceplugin_live(image, box)

    monkeypatch.setattr(v.pad, "faceplugin_live", fail_on_third)
    ref = Reference(True, embedding=v.analyze(recordings["live"][0]).embedding)
    cap = Capture(v, ref, iter(np.arange(0, 100, 0.1)).__next__)
    frames = iter(recordings["live"] * 2)
    while len(calls) < 2:   # PAD runs on every 2nd face frame: the third call comes 4 frames in
        cap.step(next(frames))
    seen = len(cap.evidence.frames)
    with pytest.raises(RuntimeError, match="onnxruntime failure"):
        while True:
            cap.step(next(frames))
    assert len(cap.evidence.frames) == seen + 1   # the frame between the two PAD frames only
    # and through the verifier: no result at all, so the gate refers (transaction: fail secure)
    from biometrics.camera import ImageSequenceCamera
    calls.clear()
    with pytest.raises(RuntimeError):
        v.verify(ImageSequenceCamera(recordings["live"], loop=True), ref, window_s=5,
                 clock=iter(np.arange(0, 100, 0.1)).__next__)


@pytest.mark.models
def test_bench_speed_prints_both_schedules_side_by_side_and_the_peer(shared_dir, models_dir):
    """The command the lead re-runs on the idle machine: figures printed, never asserted."""
    import subprocess
    import sys
    from pathlib import Path
    if not (shared_dir / "data" / "faces-dev-hard").is_dir():
        pytest.skip("faces-dev-hard not found")
    r = subprocess.run([sys.executable, "-m", "biometrics", "--models-dir", str(models_dir), "bench-speed",
                        "--data", str(shared_dir / "data"), "--frames", "10"],
                       cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for line in ("every stage, every frame, in order", "every stage, every frame, 2 lanes",
                 "capture loop (Capture.step), in order", "capture loop (Capture.step), 2 lanes",
                 "two free cores, lanes", "(a) 2 lanes / in order: mean", "(b) 2 lanes / in order: mean"):
        assert line in r.stdout, r.stdout
    walls = [ln.split() for ln in r.stdout.splitlines() if ln.strip().startswith("whole frame (wall)")]
    assert len(walls) == 5 and all(len(w) >= 8 for w in walls)   # four pipelines and the peer: mean..p99, fps
