"""The face verifier the gate calls: chip photo -> reference; camera -> best frame -> decision.

`FaceVerifier.verify` runs the capture loop: every frame is detected, aligned, quality-checked
and scored for liveness; kiosk guidance is emitted when a quality factor fails; the loop stops
early once liveness is decided and the similarity is clearly on one side of the threshold, and
times out with an explicit failure-to-acquire. A match needs all three: quality met, liveness
'live', similarity >= threshold. Only a policy with liveness disabled (demos on still images)
matches without 'live'; the result then says liveness 'undetermined', reason 'liveness_disabled'.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .align import Landmarks68, align, five_from_68
from .camera import Camera, CameraError
from .detect import Face, YuNetDetector, competing_faces, primary_face
from .image import ImageError, decode_image
from .liveness import (MINIFAS, Challenge, FrameCues, LivenessEvidence, LivenessPolicy, PadModels, moire_score,
                       screen_border_sides)
from .models import DEFAULT_CALIBRATION, ModelRegistry
from .quality import (GUIDANCE, EyeState, Guidance, HeadPose, QualityReport, QualityThresholds, assess,
                      pose_from_landmarks)
from .recognize import Recognizer, cosine

__all__ = ["FaceVerifier", "FaceResult", "Guidance", "Reference", "Analysis", "GUIDANCE"]

FALLBACK_THRESHOLD = 0.546  # faces-dev-hard top impostor (data README); used only without calibration.json
EARLY_MARGIN = 0.06


def load_calibration(path: Path = DEFAULT_CALIBRATION) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


@dataclass(repr=False)
class Analysis:
    """One image through detect + align (+ embed). Holds biometric data: repr shows no content."""

    ok: bool
    reason: str | None = None
    face: Face | None = None
    n_faces: int = 0
    competing: int = 0
    points5: np.ndarray | None = None
    landmarks68: np.ndarray | None = None
    aligned: np.ndarray | None = None
    embedding: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Analysis(ok={self.ok}, reason={self.reason!r}, faces={self.n_faces})"


@dataclass(repr=False)
class Reference:
    """The chip photo's embedding. `ok` False means it is unusable, with `reason`."""

    ok: bool
    reason: str | None = None
    embedding: np.ndarray | None = None
    several_faces: bool = False

    def __repr__(self) -> str:
        return f"Reference(ok={self.ok}, reason={self.reason!r})"


@dataclass(repr=False)
class FaceResult:
    outcome: str                       # 'match' | 'no_match' | 'failure_to_acquire'
    score: float | None
    threshold: float
    liveness: str                      # 'live' | 'attack' | 'undetermined'
    liveness_score: float | None
    quality_ok: bool
    quality_failures: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    frames_seen: int = 0
    best_frame: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    liveness_cues: dict[str, float] = field(default_factory=dict)
    quality_measures: dict[str, float] = field(default_factory=dict)  # of the best frame

    def __repr__(self) -> str:
        s = "None" if self.score is None else f"{self.score:.3f}"
        return (f"FaceResult(outcome={self.outcome!r}, score={s}, threshold={self.threshold:.3f}, "
                f"liveness={self.liveness!r}, quality_ok={self.quality_ok}, reasons={self.reasons}, "
                f"frames_seen={self.frames_seen})")


def _usable_frame(img) -> np.ndarray | None:
    """An HxWx3 uint8 BGR frame (greyscale and BGRA converted), or None for a broken one."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        return None
    if min(img.shape[:2]) < 16:
        return None
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, 2))
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    return img if img.shape[2] == 3 else None


class FaceVerifier:
    def __init__(self, registry: ModelRegistry, threshold: float | None = None,
                 use_landmarks68: bool = True, liveness_policy: LivenessPolicy | None = None,
                 quality: QualityThresholds | None = None, calibration: dict | None = None):
        cal = load_calibration() if calibration is None else calibration
        self.registry = registry
        self.threshold = float(threshold if threshold is not None
                               else cal.get("face", {}).get("threshold", FALLBACK_THRESHOLD))
        pad = cal.get("liveness", {})
        self.liveness_policy = liveness_policy or LivenessPolicy(
            model_threshold=float(pad.get("model_threshold", LivenessPolicy.model_threshold)))
        self.quality_thresholds = quality or QualityThresholds()
        self.detector = YuNetDetector(registry.session("detector"))
        self.recognizer = Recognizer(registry.session("recognizer"))
        self.landmarks = Landmarks68(registry.session("landmarks68")) if registry.has("landmarks68") else None
        self.use_landmarks68 = use_landmarks68 and self.landmarks is not None
        self.eyes = EyeState(registry.session("eye_state")) if registry.has("eye_state") else None
        self.pose = HeadPose(registry.session("head_pose")) if registry.has("head_pose") else None
        self.pad = PadModels([(registry.session(role), scale) for role, scale in MINIFAS],
                             registry.session("pad_faceplugin") if registry.has("pad_faceplugin") else None)

    @classmethod
    def load(cls, models_dir: Path | str | None = None, manifest: Path | str | None = None,
             threshold: float | None = None, **kw) -> "FaceVerifier":
        """Verify every pinned model file (sha256) and build the sessions; raises ModelError."""
        reg = ModelRegistry(models_dir, manifest)
        return cls(reg, threshold=threshold, **kw)

    # ---- single image -------------------------------------------------------------------------
    def analyze(self, image: np.ndarray, *, embed: bool = True, retry_padded: bool = False) -> Analysis:
        faces = self.detector.detect(image)
        if not faces and retry_padded:
            faces = self._detect_padded(image)
        if not faces:
            return Analysis(False, "no_face")
        face = primary_face(faces, image.shape)
        a = Analysis(True, face=face, n_faces=len(faces), competing=competing_faces(faces, face))
        pts = face.landmarks
        if self.landmarks is not None:
            a.landmarks68 = self.landmarks.predict(image, face.box)
            if self.use_landmarks68:
                pts = five_from_68(a.landmarks68)
        a.points5 = pts
        a.aligned = align(image, pts)
        if embed:
            a.embedding = self.recognizer.embed(a.aligned)
        return a

    def _detect_padded(self, image: np.ndarray) -> list[Face]:
        """Tight or tiny portraits (chip photos, web crops): surround with a neutral border so the
        face shrinks into YuNet's trained range, then map the boxes back."""
        h, w = image.shape[:2]
        fill = [int(v) for v in image.reshape(-1, 3).mean(0)]
        for frac in (0.5, 1.0):
            py, px = int(h * frac), int(w * frac)
            padded = np.full((h + 2 * py, w + 2 * px, 3), fill, np.uint8)
            padded[py:py + h, px:px + w] = image
            faces = self.detector.detect(padded)
            if faces:
                off = np.array([px, py], np.float32)
                return [Face((f.box[0] - px, f.box[1] - py, f.box[2], f.box[3]), f.landmarks - off, f.score)
                        for f in faces]
        return []

    def analyze_bytes(self, data: bytes) -> Analysis:
        try:
            img = decode_image(data)
        except ImageError as e:
            return Analysis(False, e.reason)
        return self.analyze(img, retry_padded=True)

    def reference(self, image: np.ndarray | bytes) -> Reference:
        """Chip photo (DG2 decoded array, or its JPEG / JPEG 2000 bytes) -> Reference."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            a = self.analyze_bytes(bytes(image))
        elif isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size:
            img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2)
            a = self.analyze(np.ascontiguousarray(img[:, :, :3].astype(np.uint8)), retry_padded=True)
        else:
            return Reference(False, "not_an_image")
        if not a.ok:
            return Reference(False, a.reason)
        return Reference(True, embedding=a.embedding, several_faces=a.n_faces > 1)

    def compare(self, a: np.ndarray, b: np.ndarray) -> float:
        return cosine(a, b)

    # ---- capture loop -------------------------------------------------------------------------
    def verify(self, camera: Camera, ref: Reference, window_s: float = 8.0,
               clock: Callable[[], float] = time.monotonic,
               on_guidance: Callable[[Guidance], None] | None = None) -> FaceResult:
        thr = self.threshold
        if not ref.ok:
            return FaceResult("failure_to_acquire", None, thr, "undetermined", None, False,
                              reasons=[f"reference_{ref.reason}"])
        t_start = clock()
        deadline = t_start + window_s
        policy = self.liveness_policy
        challenge = Challenge.random() if (policy.challenge and policy.enabled) else None
        evidence = LivenessEvidence(policy, challenge)
        stage: dict[str, float] = {k: 0.0 for k in ("detect", "align", "quality", "liveness", "embed", "compare")}
        n_stage = 0
        frames_seen = 0
        best: tuple[float, np.ndarray, QualityReport, Face] | None = None
        ok_scores: list[float] = []
        best_score: float | None = None
        last_quality: QualityReport | None = None
        last_guidance: str | None = None
        prev_img: np.ndarray | None = None
        reasons: list[str] = []
        bad_frames = 0
        timed_out = True
        frames = camera.frames()

        def guide(code: str) -> None:
            nonlocal last_guidance
            if on_guidance is not None and code != last_guidance:
                on_guidance(GUIDANCE[code])
            last_guidance = code

        try:
            for frame in frames:
                if clock() > deadline:
                    break
                frames_seen += 1
                img = _usable_frame(getattr(frame, "image", None))
                if img is None:
                    bad_frames += 1  # a broken frame is skipped, never fatal
                    continue
                t0 = time.perf_counter()
                faces = self.detector.detect(img)
                t1 = time.perf_counter()
                stage["detect"] += t1 - t0
                n_stage += 1
                if not faces:
                    guide("no_face")
                    prev_img = img
                    continue
                face = primary_face(faces, img.shape)
                lm68 = self.landmarks.predict(img, face.box) if self.landmarks is not None else None
                pts = five_from_68(lm68) if (self.use_landmarks68 and lm68 is not None) else face.landmarks
                aligned = align(img, pts)
                t2 = time.perf_counter()
                stage["align"] += t2 - t1
                eyes = self.eyes.p_open(img, lm68) if (self.eyes is not None and lm68 is not None) else None
                q = assess(img, face, aligned, competing_faces(faces, face), eyes, self.quality_thresholds)
                last_quality = q
                t3 = time.perf_counter()
                stage["quality"] += t3 - t2
                x, y, w, h = (int(max(0, v)) for v in face.box)
                crop = img[y:y + max(h, 1), x:x + max(w, 1)]
                identical = prev_img is not None and prev_img.shape == img.shape and np.array_equal(prev_img, img)
                evidence.add(FrameCues(self.pad.score(img, face.box),
                                       lm68 if lm68 is not None else face.landmarks, eyes,
                                       moire_score(crop), identical,
                                       screen_border_sides(img, face.box), clock() - t_start,
                                       pose_from_landmarks(pts)[0]))
                prev_img = img
                t4 = time.perf_counter()
                stage["liveness"] += t4 - t3
                if q.failures:
                    guide(q.failures[0])
                elif challenge is not None and not evidence.challenge_met and clock() - t_start >= challenge.issue_at:
                    guide(challenge.guidance_code)
                if best is None or q.score > best[0]:
                    best = (q.score, img, q, face)
                if not q.ok:
                    continue
                emb = self.recognizer.embed(aligned)
                t5 = time.perf_counter()
                stage["embed"] += t5 - t4
                s = cosine(ref.embedding, emb)
                stage["compare"] += time.perf_counter() - t5
                ok_scores.append(s)
                if best_score is None or s > best_score:
                    best_score = s
                    best = (q.score + 10.0, img, q, face)  # the best matching good frame is kept as evidence
                live = evidence.decide()
                settled = live.verdict == "live" or not self.liveness_policy.enabled
                if live.verdict == "attack" or (settled and (
                        best_score >= thr + EARLY_MARGIN
                        or (len(ok_scores) >= 8 and best_score < thr - EARLY_MARGIN))):
                    timed_out = False
                    break
        except CameraError as e:
            reasons.append("camera_error")
            reasons.append(str(e)[:80])
        finally:
            close = getattr(frames, "close", None)
            if close:
                close()
        live = evidence.decide(final=True)
        timings = {k: 1000.0 * v / max(n_stage, 1) for k, v in stage.items()}
        timings["total_s"] = clock() - t_start
        quality_ok = bool(ok_scores)
        qfails = [] if quality_ok else (best[2].failures if best else ["no_face"])
        if timed_out and not reasons and frames_seen and (not ok_scores or live.verdict == "undetermined"):
            reasons.append("timeout")
        if frames_seen == 0 and not reasons:
            reasons.append("no_frames")
        if bad_frames:
            reasons.append(f"unusable_frames:{bad_frames}")
        if live.verdict == "attack":
            outcome = "no_match"
            reasons = ["presentation_attack"] + live.reasons + reasons
        elif not quality_ok:
            outcome = "failure_to_acquire"
            reasons = (["no_face"] if best is None else ["quality_not_met"]) + reasons
        elif live.verdict != "live" and self.liveness_policy.enabled:
            outcome = "failure_to_acquire"
            reasons = ["liveness_undetermined"] + live.reasons + reasons
        elif best_score >= thr:
            outcome = "match"
            reasons = live.reasons + reasons  # 'liveness_disabled' stays visible to the gate
        else:
            outcome = "no_match"
            reasons = ["below_threshold"] + reasons
        measures = dict(best[2].measures) if best else {}
        if best is not None and self.pose is not None:
            measures.update(zip(("model_yaw", "model_pitch", "model_roll"), self.pose.predict(best[1], best[3].box)))
        return FaceResult(outcome, best_score, thr, live.verdict, live.score, quality_ok, list(qfails),
                          reasons, frames_seen, best[1] if best else None, timings, live.cues, measures)
