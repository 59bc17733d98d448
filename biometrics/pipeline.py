"""The face verifier the gate calls: chip photo -> reference; camera -> best frame -> decision.

`FaceVerifier.verify` runs the capture loop (`Capture`): every frame is detected, aligned,
quality-checked and adds temporal liveness evidence; the costly single-image PAD models and the
embedding run only on the frames that need them; kiosk guidance is emitted when a quality factor
fails or a challenge is due; the loop stops early once liveness is decided and the similarity is
clearly on one side of the threshold, and times out with an explicit failure-to-acquire. A match needs all three: quality met, liveness
'live', similarity >= threshold. Only a policy with liveness disabled (demos on still images)
matches without 'live'; the result then says liveness 'undetermined', reason 'liveness_disabled'.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .align import Landmarks68, align, five_from_68
from .camera import Camera, CameraError
from .detect import Face, YuNetDetector, competing_faces, dynamic_input, primary_face
from .image import ImageError, decode_image
from .liveness import (MINIFAS, Challenge, FrameCues, LivenessDecision, LivenessEvidence, LivenessPolicy,
                       PadFusion, PadModels)
from .models import DEFAULT_CALIBRATION, ModelError, ModelRegistry
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


class Lanes:
    """Runs a frame's independent stages side by side on the gate's cores: the calling thread and
    `workers - 1` persistent threads take calls from one queue in the order given (costliest first).

    Each onnxruntime session keeps one intra-op thread (`models.session_options`); the parallelism
    is between sessions, which release the GIL while they run, as OpenCV's calls do. With one
    worker everything runs in order in the caller, as before. If a call raises, the calls not yet
    started are dropped, the ones running are waited for, and the first exception is raised in the
    caller: a frame is never assembled from part of its results."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers if workers is not None else int(os.environ.get("EGATE_STAGE_WORKERS", "2")))
        self._pool = (ThreadPoolExecutor(self.workers - 1, thread_name_prefix="egate-stage")
                      if self.workers > 1 else None)

    def run(self, calls: dict[str, Callable[[], object]]) -> tuple[dict[str, object], dict[str, float]]:
        """{name: result} of every call and {name: seconds it took}."""
        queue = deque(calls.items())
        results: dict[str, object] = {}
        took: dict[str, float] = {}
        errors: list[BaseException] = []

        def drain() -> None:
            while not errors:
                try:
                    name, call = queue.popleft()
                except IndexError:
                    return
                t0 = time.perf_counter()
                try:
                    results[name] = call()
                except BaseException as e:  # re-raised in the caller below
                    errors.append(e)
                    queue.clear()
                    return
                took[name] = time.perf_counter() - t0

        helpers = ([self._pool.submit(drain) for _ in range(min(self.workers - 1, len(calls) - 1))]
                   if self._pool is not None else [])
        drain()
        for h in helpers:
            h.result()
        if errors:
            raise errors[0]
        return results, took


class FaceVerifier:
    def __init__(self, registry: ModelRegistry, threshold: float | None = None,
                 use_landmarks68: bool = True, liveness_policy: LivenessPolicy | None = None,
                 quality: QualityThresholds | None = None, calibration: dict | None = None,
                 workers: int | None = None, pad_fusion: bool = True):
        cal = load_calibration() if calibration is None else calibration
        self.registry = registry
        self.threshold = float(threshold if threshold is not None
                               else cal.get("face", {}).get("threshold", FALLBACK_THRESHOLD))
        pad = cal.get("liveness", {})
        # the sequence operating point (bench-pad-seq --write: its own threshold on the window's mean
        # single-image p(live)) over the single-image one, over the defaults
        seq = {k: v for k, v in cal.get("pad_sequence", {}).get("policy", {}).items()
               if k in LivenessPolicy.__dataclass_fields__}
        self.liveness_policy = liveness_policy or LivenessPolicy(
            **{"model_threshold": float(pad.get("model_threshold", LivenessPolicy.model_threshold)), **seq})
        self.quality_thresholds = quality or QualityThresholds()
        self.detector = YuNetDetector(registry.session("detector", dynamic_input))
        self.recognizer = Recognizer(registry.session("recognizer"))
        self.landmarks = Landmarks68(registry.session("landmarks68")) if registry.has("landmarks68") else None
        self.use_landmarks68 = use_landmarks68 and self.landmarks is not None
        self.eyes = EyeState(registry.session("eye_state")) if registry.has("eye_state") else None
        self.pose = HeadPose(registry.session("head_pose")) if registry.has("head_pose") else None
        fusion = (PadFusion.from_calibration(cal) or PadFusion.from_calibration()) if pad_fusion else None
        if pad_fusion and fusion is None:   # the third-party score alone is not what the threshold was fitted on
            raise ModelError("models/calibration.json has no liveness fusion record (liveness.fusion): "
                             "run `python -m biometrics calibrate-pad`")
        self.pad = PadModels([(registry.session(role), scale) for role, scale in MINIFAS],
                             registry.session("pad_faceplugin") if registry.has("pad_faceplugin") else None,
                             fusion=fusion)   # None only for train-pad / calibrate-pad, which fit it
        self.lanes = Lanes(workers)   # the capture loop's stages side by side (EGATE_STAGE_WORKERS, default 2)

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
        if not ref.ok:
            return FaceResult("failure_to_acquire", None, self.threshold, "undetermined", None, False,
                              reasons=[f"reference_{ref.reason}"])
        cap = Capture(self, ref, clock, on_guidance)
        deadline = cap.t_start + window_s
        frames = camera.frames()
        try:
            for frame in frames:
                if clock() > deadline:
                    break
                if cap.step(getattr(frame, "image", None)):
                    return cap.result(timed_out=False)
        except CameraError as e:
            cap.reasons += ["camera_error", str(e)[:80]]
        finally:
            close = getattr(frames, "close", None)
            if close:
                close()
        return cap.result(timed_out=True)


STAGES = ("detect", "align", "quality", "liveness", "embed", "compare")
APPEARANCE_EVERY = 2    # single-image PAD models, moire and border on every 2nd face frame
IDENTITY_EVERY = 5      # an embedding (identity check) at least every 5th face frame
EMBED_SPOILERS = {"center_face", "move_closer", "hold_still", "too_dark", "too_bright", "low_contrast"}
BEST_GAIN = 0.05        # a good frame is embedded for matching only if its quality beats the best so far


class Capture:
    """One traveller's capture window, frame by frame (`FaceVerifier.verify`'s loop; `bench-speed`
    times it on its own).

    Every frame: detect, 68 landmarks, align, eye state, quality, and the temporal liveness cues
    (motion, planar, blink, challenge). Only where they pay: the single-image PAD models with
    moire and border on every APPEARANCE_EVERY-th face frame (their evidence is a mean and a
    median over the window), and the embedding on the first good frame, on a good frame clearly
    better than the best embedded so far, and as an identity check every IDENTITY_EVERY-th face
    frame, after the face box jumped or the face was lost, and on the frame that answers the
    challenge. A check unlike the window's first face is repeated on the next frame, and frames of
    two different people refuse the window ('identity_switch', `LivenessEvidence.people`) whatever
    the chip photo says. Only frames fit for recognition are checked: the face whole, lit, sharp,
    big enough and within 35 degrees of frontal. After detection, the face's own stages (with its
    embedding) and the PAD parts run side by side on `FaceVerifier.lanes`; the frame's state is
    updated only once all of them have returned."""

    def __init__(self, v: FaceVerifier, ref: Reference, clock: Callable[[], float],
                 on_guidance: Callable[[Guidance], None] | None = None):
        self.v, self.ref, self.clock, self.on_guidance = v, ref, clock, on_guidance
        self.t_start = clock()
        policy = v.liveness_policy
        self.challenge = (Challenge.random(policy.challenge_actions) if (policy.challenge and policy.enabled)
                          else None)
        self.evidence = LivenessEvidence(policy, self.challenge)
        self.stage = dict.fromkeys(STAGES, 0.0)
        self.runs = dict.fromkeys(STAGES, 0)
        self.frames_seen = self.frames_used = self.face_frames = self.ok_frames = self.bad_frames = 0
        self.best: tuple[float, np.ndarray, QualityReport, Face] | None = None
        self.best_score: float | None = None
        self.best_embedded_q: float | None = None
        self.anchor: np.ndarray | None = None
        self.since_embed = 0
        self.doubt = False
        self.prev_img: np.ndarray | None = None
        self.prev_face: Face | None = None
        self.reasons: list[str] = []
        self.last_guidance: str | None = None

    def _guide(self, code: str) -> None:
        if self.on_guidance is not None and code != self.last_guidance:
            self.on_guidance(GUIDANCE[code])
        self.last_guidance = code

    def _timed(self, name: str, t0: float) -> float:
        t1 = time.perf_counter()
        self._add(name, t1 - t0)
        return t1

    def _add(self, name: str, seconds: float) -> None:
        self.stage[name] += seconds
        self.runs[name] += 1

    def _jumped(self, face: Face) -> bool:
        """The face box moved by more than half its width or changed size by a third since the last
        frame, or the face was missing there: the person may have changed, so check at once."""
        p = self.prev_face
        if p is None:
            return True
        (x, y, w, h), (px, py, pw, ph) = face.box, p.box
        moved = np.hypot(x + w / 2 - px - pw / 2, y + h / 2 - py - ph / 2) > 0.5 * max(pw, 1.0)
        return bool(moved or not 0.75 <= (w * h) / max(pw * ph, 1.0) <= 1.33)

    @staticmethod
    def _recognisable(q: QualityReport) -> bool:
        m = q.measures
        return (not set(q.failures) & EMBED_SPOILERS and abs(m.get("yaw", 0.0)) <= 35
                and abs(m.get("pitch", 0.0)) <= 25)

    def step(self, image) -> bool:
        """Process one frame; True once the decision is settled (stop early)."""
        v, ev = self.v, self.evidence
        self.frames_seen += 1
        img = _usable_frame(image)
        if img is None:
            self.bad_frames += 1  # a broken frame is skipped, never fatal
            return False
        self.frames_used += 1
        t0 = time.perf_counter()
        faces = v.detector.detect(img)
        t = self._timed("detect", t0)
        if not faces:
            self._guide("no_face")
            self.prev_img, self.prev_face = img, None
            return False
        self.face_frames += 1
        now = self.clock() - self.t_start
        face = primary_face(faces, img.shape)
        # the face's own stages (one call) beside the single-image PAD models and cues, on both cores
        calls: dict[str, Callable[[], object]] = {"face": lambda: self._face(img, faces, face)}
        appearance = (self.face_frames - 1) % APPEARANCE_EVERY == 0
        if appearance:
            calls.update(v.pad.parts(img, face.box))
        done, took = v.lanes.run(calls)
        t = time.perf_counter()
        lm68, pts, aligned, eyes, q, for_match, emb, spent = done.pop("face")
        for name, seconds in spent.items():
            self._add(name, seconds)
        model = moire = border = None
        if appearance:
            model, measured = v.pad.fuse(done)
            moire, border = measured["moire"], int(measured["border"])
        identical = (self.prev_img is not None and self.prev_img.shape == img.shape
                     and np.array_equal(self.prev_img, img))
        met_before = ev.steps_met
        yaw, pitch, _ = pose_from_landmarks(pts)   # the 5 points from the 68: as steady as any 68-point estimate
        cues = FrameCues(model, lm68 if lm68 is not None else face.landmarks, eyes, moire, identical, border,
                         now, yaw, pitch)
        t = self._timed("liveness", t)
        self.stage["liveness"] += sum(took[k] for k in done)
        # the embedding: for matching (good frames that beat the best so far) and identity checks
        self.since_embed += 1
        if emb is not None:
            self._embedded(emb)
            cues.identity = emb
        ev.add(cues)   # prompts the challenge's current action when due (shown with this frame)
        if ev.steps_met > met_before and emb is None:   # each answering face must be the same one
            emb, t = self._embed(aligned, t)
            ev.add_identity(emb)
        self.prev_img, self.prev_face = img, face
        self._prompt(q, now)
        if self.best is None or q.score > self.best[0]:
            self.best = (q.score, img, q, face)
        if q.ok:
            self.ok_frames += 1
            if for_match:
                self.best_embedded_q = q.score
        if q.ok and emb is not None:
            s = cosine(self.ref.embedding, emb)
            self._timed("compare", t)
            if self.best_score is None or s > self.best_score:
                self.best_score = s
                self.best = (q.score + 10.0, img, q, face)  # the best matching good frame is kept as evidence
        live = ev.decide()
        if live.verdict == "attack" or ev.challenge_failed:   # the gate refers either way: stop
            return True
        thr = v.threshold
        # a clear match needs liveness settled; a clear non-match refers whatever liveness would say
        settled = self.best_score is not None and (
            (self.best_score >= thr + EARLY_MARGIN and (live.verdict == "live" or not v.liveness_policy.enabled))
            or (self.ok_frames >= 8 and self.best_score < thr - EARLY_MARGIN))
        if settled and emb is None and self._recognisable(q):   # the last face before deciding is checked too
            emb, t = self._embed(aligned, t)
            ev.add_identity(emb)
            return ev.decide().verdict == "attack" or not self.doubt
        return settled and not self.doubt

    def _face(self, img: np.ndarray, faces: list[Face], face: Face) -> tuple:
        """The stages of the face itself (68 landmarks, alignment, eye state, quality) and, where the
        frame needs one, its embedding: for matching (a good frame that beats the best embedded so
        far) or as an identity check. Runs in a lane beside the PAD models, so it only reads the
        capture's state; `step` applies the results. Returns the values and the seconds per stage."""
        v, spent = self.v, {}
        t0 = time.perf_counter()
        lm68 = v.landmarks.predict(img, face.box) if v.landmarks is not None else None
        pts = five_from_68(lm68) if (v.use_landmarks68 and lm68 is not None) else face.landmarks
        aligned = align(img, pts)
        t1 = time.perf_counter()
        eyes = v.eyes.p_open(img, lm68) if (v.eyes is not None and lm68 is not None) else None
        q = assess(img, face, aligned, competing_faces(faces, face), eyes, v.quality_thresholds)
        t2 = time.perf_counter()
        spent["align"], spent["quality"] = t1 - t0, t2 - t1
        for_match = q.ok and (self.best_embedded_q is None or q.score > self.best_embedded_q + BEST_GAIN)
        for_identity = self._recognisable(q) and (self.since_embed + 1 >= IDENTITY_EVERY or self._jumped(face))
        emb = None
        if for_match or for_identity:
            emb = v.recognizer.embed(aligned)
            spent["embed"] = time.perf_counter() - t2
        return lm68, pts, aligned, eyes, q, for_match, emb, spent

    def _embed(self, aligned: np.ndarray, t: float) -> tuple[np.ndarray, float]:
        """Embed on this thread (the challenge's answer, the last face before deciding)."""
        emb = self.v.recognizer.embed(aligned)
        t = self._timed("embed", t)
        self._embedded(emb)
        return emb, t

    def _embedded(self, emb: np.ndarray) -> None:
        """Compare a new embedding with the window's first face: one unlike it is confirmed (or
        dismissed) on the next frame, and nothing is decided before."""
        self.since_embed = 0
        if self.anchor is None:
            self.anchor = emb
        self.doubt = cosine(self.anchor, emb) < self.v.liveness_policy.identity_min
        if self.doubt:
            self.since_embed = IDENTITY_EVERY

    def _prompt(self, q: QualityReport, now: float) -> None:
        """Kiosk guidance: the challenge's current action first (one instruction at a time: its answer
        may itself fail quality, a blink the eyes-open check, a turn the pose check), then quality."""
        c, ev = self.challenge, self.evidence
        if c is not None and not ev.challenge_met and ev.prompted_at is not None:
            self._guide(Challenge.guidance_code(ev.current_kind))   # answers count from the next frame
        elif c is not None and not ev.challenge_met and ev.steps_met:
            self._guide("challenge_next")   # the rest between two actions: look straight, no quality hint
        elif c is not None and ev.challenge_met and (self.last_guidance or "").startswith("challenge_"):
            self._guide("challenge_done")
        elif q.failures:
            self._guide(q.failures[0])

    def result(self, timed_out: bool) -> FaceResult:
        v, thr, best, reasons = self.v, self.v.threshold, self.best, list(self.reasons)
        live = self.evidence.decide(final=True)
        if live.verdict == "live" and self.doubt:   # the last check saw someone else, never confirmed either way
            live = LivenessDecision("undetermined", live.score, ["identity_unconfirmed"], live.cues)
        timings = {k: 1000.0 * self.stage[k] / max(self.frames_used, 1) for k in STAGES}  # ms per frame
        timings["total_s"] = self.clock() - self.t_start
        best_score = self.best_score
        quality_ok = best_score is not None
        qfails = [] if quality_ok else (best[2].failures if best else ["no_face"])
        if timed_out and not reasons and self.frames_seen and (not quality_ok or live.verdict == "undetermined"):
            reasons.append("timeout")
        if self.frames_seen == 0 and not reasons:
            reasons.append("no_frames")
        if self.bad_frames:
            reasons.append(f"unusable_frames:{self.bad_frames}")
        if live.verdict == "attack":
            outcome = "no_match"
            first = ["identity_switch"] if "identity_switch" in live.reasons else ["presentation_attack"]
            reasons = first + [r for r in live.reasons if r not in first] + reasons
        elif not quality_ok:
            outcome = "failure_to_acquire"
            reasons = (["no_face"] if best is None else ["quality_not_met"]) + reasons
        elif best_score < thr:
            outcome = "no_match"
            reasons = ["below_threshold"] + reasons
        elif live.verdict != "live" and v.liveness_policy.enabled:
            outcome = "failure_to_acquire"
            reasons = ["liveness_undetermined"] + live.reasons + reasons
        else:
            outcome = "match"
            reasons = live.reasons + reasons  # 'liveness_disabled' stays visible to the gate
        measures = dict(best[2].measures) if best else {}
        if best is not None and v.pose is not None:
            measures.update(zip(("model_yaw", "model_pitch", "model_roll"), v.pose.predict(best[1], best[3].box)))
        return FaceResult(outcome, best_score, thr, live.verdict, live.score, quality_ok, list(qfails),
                          reasons, self.frames_seen, best[1] if best else None, timings, live.cues, measures)
