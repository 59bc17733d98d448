"""The real models end to end: demo traveller, capture loop, bad input, CLI. Skips without models."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from biometrics.bench import moving
from biometrics.camera import CameraError, ImageSequenceCamera
from biometrics.liveness import LivenessPolicy
from biometrics.models import ModelError
from biometrics.pipeline import FaceVerifier, Guidance

pytestmark = pytest.mark.models
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(demo_dir):
    chip = (demo_dir / "eileen_collins_chip_derived.jpg").read_bytes()
    live = cv2.imread(str(demo_dir / "eileen_collins_nasa.png"))
    return chip, live


def other_person(shared_dir) -> np.ndarray:
    p = sorted((shared_dir / "data" / "faces-dev" / "images").glob("*/*.jpg"))[0]
    return cv2.imread(str(p))


class Ticks:
    """Injected clock: every call advances by `step` seconds."""

    def __init__(self, step=0.1):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_demo_chip_photo_matches_nasa_original_and_not_someone_else(verifier, demo, shared_dir):
    chip, live = demo
    ref = verifier.reference(chip)
    assert ref.ok and "embedding" not in repr(ref)
    same = verifier.compare(ref.embedding, verifier.analyze(live).embedding)
    other = verifier.compare(ref.embedding, verifier.reference(other_person(shared_dir)).embedding)
    assert same >= verifier.threshold > other


def pad_dev_frames(shared_dir, person: str, label: str) -> list[np.ndarray]:
    root = shared_dir / "data" / "pad-dev"
    if not (root / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    rows = [r for r in csv.DictReader((root / "labels.csv").open()) if f"/{person}/" in r["path"]]
    return [cv2.imread(str(root / r["path"])) for r in rows if r["label"] == label]


def test_recorded_live_frames_match_and_are_live(verifier, shared_dir):
    live = pad_dev_frames(shared_dir, "BalveerSinghYT", "live")
    seen: list[Guidance] = []
    res = verifier.verify(ImageSequenceCamera(live[1:], loop=False), verifier.reference(live[0]),
                          window_s=5, clock=Ticks(0.05), on_guidance=seen.append)
    assert res.outcome == "match" and res.liveness == "live" and res.quality_ok
    assert res.score >= res.threshold and res.best_frame is not None
    assert {"detect", "align", "quality", "liveness", "embed", "compare"} <= set(res.timings)
    assert "best_frame" not in repr(res) and "array" not in repr(res)
    m = res.quality_measures
    assert m["inter_eye"] > 20 and abs(m["yaw"]) < 25 and abs(m["model_yaw"]) < 30


def test_replayed_video_of_the_same_person_is_an_attack(verifier, shared_dir):
    live = pad_dev_frames(shared_dir, "BalveerSinghYT", "live")
    replay = pad_dev_frames(shared_dir, "BalveerSinghYT", "spoof")
    res = verifier.verify(ImageSequenceCamera(replay, loop=False), verifier.reference(live[0]),
                          window_s=5, clock=Ticks(0.05))
    assert res.liveness == "attack" and res.outcome == "no_match"
    assert "presentation_attack" in res.reasons


def test_a_still_photo_held_to_the_camera_is_rejected(verifier, demo):
    chip, live = demo
    res = verifier.verify(ImageSequenceCamera([live]), verifier.reference(chip), window_s=5, clock=Ticks(0.05))
    assert res.liveness == "attack" and res.outcome == "no_match"
    assert "presentation_attack" in res.reasons


def test_demo_with_liveness_disabled_matches_but_says_so(models_dir, demo):
    chip, live = demo
    v = FaceVerifier.load(models_dir, liveness_policy=LivenessPolicy(enabled=False))
    res = v.verify(ImageSequenceCamera(moving(live)), v.reference(chip), window_s=5, clock=Ticks(0.05))
    assert res.outcome == "match" and res.liveness == "undetermined"
    assert "liveness_disabled" in res.reasons
    assert res.frames_seen < 20  # stopped early once the score was clear


@pytest.mark.xfail(strict=True, reason="known gap: PadNet and the colour-texture head, trained with clean "
                   "web-photo copies as attacks, still score the sharper, larger demo portrait live (logits "
                   "~3 and ~2-3, fused ~0.95); the gate refuses it by the challenge and the still-frame cue "
                   "(tests/gate)")
def test_clean_demo_portrait_moved_before_the_camera_scores_as_an_attack_frame_by_frame(verifier, demo):
    """The single-image score itself (PadNet + cues + third-party, no veto) should call a clean
    digital photo re-presented an attack, not only the challenge or the still-frame cue."""
    _, live = demo
    thr = json.loads((CHECKOUT / "models" / "calibration.json").read_text())["liveness"]["model_threshold"]
    scores = []
    for frame in moving(live, 8):
        a = verifier.analyze(frame, embed=False)
        scores.append(verifier.pad.score(frame, a.face.box))
    assert max(scores) < thr, scores


def test_another_person_is_no_match(verifier, demo, shared_dir):
    _, live = demo
    ref = verifier.reference(other_person(shared_dir))
    res = verifier.verify(ImageSequenceCamera(moving(live)), ref, window_s=5, clock=Ticks(0.05))
    assert res.outcome == "no_match" and res.score < res.threshold


def test_empty_scene_times_out_with_failure_to_acquire_and_guidance(verifier, demo):
    chip, _ = demo
    seen: list[Guidance] = []
    blank = np.full((480, 640, 3), 90, np.uint8)
    res = verifier.verify(ImageSequenceCamera([blank]), verifier.reference(chip), window_s=1.0,
                          clock=Ticks(0.1), on_guidance=seen.append)
    assert res.outcome == "failure_to_acquire" and "timeout" in res.reasons
    assert seen and seen[0].code == "no_face" and seen[0].vi and seen[0].en
    assert len(seen) == 1  # the same instruction is not repeated every frame


def test_face_too_small_asks_to_move_closer(verifier, demo):
    chip, live = demo
    frame = np.full((1080, 1920, 3), 100, np.uint8)
    frame[348:732, 768:1152] = cv2.resize(live, (384, 384))  # inter-eye distance ~33 px
    seen: list[Guidance] = []
    res = verifier.verify(ImageSequenceCamera([frame]), verifier.reference(chip), window_s=0.5,
                          clock=Ticks(0.1), on_guidance=seen.append)
    assert res.outcome != "match"
    assert any(g.code == "move_closer" for g in seen)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty_image"), (b"GIF89a garbage", "not_an_image"), (b"\x89PNG\r\n\x1a\n", "not_an_image")])
def test_bad_reference_bytes_give_a_reason(verifier, data, reason):
    ref = verifier.reference(data)
    assert not ref.ok and ref.reason == reason
    res = verifier.verify(ImageSequenceCamera([np.zeros((64, 64, 3), np.uint8)]), ref, window_s=1)
    assert res.outcome == "failure_to_acquire" and res.reasons == [f"reference_{reason}"]


def test_reference_without_face_and_greyscale_chip(verifier, demo):
    assert verifier.reference(np.full((320, 240, 3), 128, np.uint8)).reason == "no_face"
    chip, _ = demo
    grey = cv2.cvtColor(cv2.imdecode(np.frombuffer(chip, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert verifier.reference(grey).ok


def test_altered_model_file_is_refused(models_dir, tmp_path):
    for f in models_dir.glob("*.onnx"):
        (tmp_path / f.name).symlink_to(f)
    det = tmp_path / "face_detection_yunet_2023mar.onnx"
    det.unlink()
    data = bytearray((models_dir / det.name).read_bytes())
    data[100] ^= 1
    det.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="face_detection_yunet_2023mar.onnx"):
        FaceVerifier.load(tmp_path)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "biometrics", *args], cwd=CHECKOUT,
                          capture_output=True, text=True, timeout=300)


def test_cli_score_pairs_and_pad_with_bad_items(tmp_path, demo_dir, shared_dir, models_dir):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(demo_dir / "eileen_collins_chip_derived.jpg", root / "chip.jpg")
    shutil.copy(demo_dir / "eileen_collins_nasa.png", root / "nasa.png")
    cv2.imwrite(str(root / "other.jpg"), other_person(shared_dir))
    (root / "trunc.jpg").write_bytes((root / "chip.jpg").read_bytes()[:300])
    (root / "text.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(root / "tiny.png"), np.zeros((10, 10, 3), np.uint8))
    cv2.imwrite(str(root / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    nasa = cv2.imread(str(root / "nasa.png"))
    cv2.imwrite(str(root / "two.jpg"), np.hstack([nasa, nasa]))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nchip.jpg,nasa.png,1\nchip.jpg,other.jpg,0\nchip.jpg,trunc.jpg,1\n"
                     "text.jpg,nasa.png,1\ntiny.png,nasa.png,1\nblank.png,nasa.png,1\nmissing.jpg,nasa.png,1\n"
                     "chip.jpg,two.jpg,1\n")
    out = tmp_path / "scores.csv"
    r = run_cli("--models-dir", str(models_dir), "score-pairs", "--pairs", str(pairs), "--root", str(root),
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [x["decision"] for x in rows[:2]] == ["match", "no_match"]
    assert float(rows[0]["score"]) > float(rows[1]["score"])
    assert all(x["decision"] == "failure_to_acquire" and x["reason"] for x in rows[2:-1])
    assert {x["reason"] for x in rows[3:-1]} >= {"not_an_image", "image_too_small", "no_face", "unreadable_file"}
    assert rows[-1]["decision"] == "match" and rows[-1]["reason"] == "several_faces:2"

    imgs = tmp_path / "imgs.csv"
    imgs.write_text("path\nnasa.png\ntext.jpg\n")
    out2 = tmp_path / "pad.csv"
    r = run_cli("--models-dir", str(models_dir), "score-pad", "--images", str(imgs), "--root", str(root), "--out", str(out2))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out2.open()))
    assert rows[0]["decision"] in ("live", "attack") and 0 <= float(rows[0]["live_score"]) <= 1
    assert rows[1]["decision"] == "failure_to_acquire"


def test_cli_help_works():
    r = run_cli("--help")
    assert r.returncode == 0 and "score-pairs" in r.stdout and "bench-speed" in r.stdout


class BrokenCamera:
    """Delivers garbage frames, then fails like an unplugged device."""

    def __init__(self, good: np.ndarray):
        self.good = good

    def frames(self):
        from biometrics.camera import Frame
        yield Frame(None, 0.0, 0)  # type: ignore[arg-type]
        yield Frame(np.zeros((4, 4, 3), np.uint8), 0.1, 1)
        yield Frame(np.zeros((100, 100, 3), np.float64), 0.2, 2)
        yield Frame(self.good, 0.3, 3)
        raise CameraError("device unplugged")

    def close(self):
        pass


def test_broken_frames_and_camera_failure_give_a_result(verifier, demo):
    chip, live = demo
    res = verifier.verify(BrokenCamera(live), verifier.reference(chip), window_s=5, clock=Ticks(0.05))
    assert res.outcome == "failure_to_acquire"
    assert "camera_error" in res.reasons and "unusable_frames:3" in res.reasons
    assert res.frames_seen == 4


@pytest.mark.parametrize("no_jp2", [False, True])
def test_jpeg2000_chip_photo_jp2_and_raw_codestream(verifier, demo, demo_dir, no_jp2):
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.open(demo_dir / "eileen_collins_chip_derived.jpg").convert("L").save(buf, "JPEG2000", no_jp2=no_jp2)
    ref = verifier.reference(buf.getvalue())
    assert ref.ok
    _, live = demo
    assert verifier.compare(ref.embedding, verifier.analyze(live).embedding) >= verifier.threshold


def test_cli_calibrate_writes_threshold_dataset_and_det(tmp_path, shared_dir, models_dir):
    root = shared_dir / "data" / "faces-dev"
    rows = (root / "pairs.csv").read_text().splitlines()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join([rows[0]] + rows[1:21] + rows[-20:]) + "\n")  # 20 genuine, 20 impostor
    cal = tmp_path / "calibration.json"
    r = run_cli("--models-dir", str(models_dir), "calibrate", "--pairs", str(pairs), "--root", str(root), "--far", "0.01", "--calibration", str(cal))
    assert r.returncode == 0, r.stderr
    doc = json.loads(cal.read_text())["face"]
    assert 0 < doc["threshold"] < 1 and doc["target_fmr"] == 0.01
    assert doc["dataset"]["genuine"] == 20 and len(doc["dataset"]["sha256"]) == 64 and doc["date"]
    assert (tmp_path / "det.png").is_file() and "TAR@FMR1%" in r.stdout
    v = FaceVerifier.load(models_dir, calibration=json.loads(cal.read_text()))
    assert v.threshold == doc["threshold"]


def test_no_liveness_fusion_record_stops_the_verifier_instead_of_scoring_the_third_party_alone(models_dir, monkeypatch):
    from biometrics.liveness import PadFusion
    monkeypatch.setattr(PadFusion, "from_calibration", classmethod(lambda cls, path=None: None))
    with pytest.raises(ModelError, match=r"liveness\.fusion"):
        FaceVerifier.load(models_dir)
    assert FaceVerifier.load(models_dir, pad_fusion=False).pad.fusion is None   # train-pad / calibrate-pad fit it
