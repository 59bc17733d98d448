"""Presentation-attack detection: per-frame model scores plus evidence gathered over frames.

Single-image models (MiniFASNet) pass edge-less prints and good screen replays, so the decision
never rests on them alone. `LivenessEvidence` collects, frame by frame:

* `model`   the two MiniFASNet models on their upstream crops (scale 2.7 and 4.0, BGR 0..255),
            softmax averaged, p(live) = class 1 (MODELS.md §2);
* `motion`  natural micro-motion: the non-rigid part of the landmark movement between frames (a
            photo moves rigidly or not at all; a face also moves its features);
* `blink`   an eye closing and reopening, from the eye-state model;
* `screen`  periodic high-frequency energy in the face crop (moiré of a screen or halftone print).

New cues (challenge-response, a self-trained model) are added as another field of `FrameCues`
and another term in `LivenessEvidence.decide`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .align import similarity_transform

MINIFAS = (("pad_minifasnet_v2", 2.7), ("pad_minifasnet_v1se", 4.0))


def minifas_crop(image: np.ndarray, box: tuple[float, float, float, float], scale: float,
                 out: int = 80) -> np.ndarray:
    """Upstream Silent-Face crop: box scaled about its centre (clipped to the frame), shifted inside,
    cropped inclusive, resized straight to out x out (aspect not kept)."""
    H, W = image.shape[:2]
    x, y, w, h = box
    w, h = max(w, 1.0), max(h, 1.0)
    scale = min(scale, (H - 1) / h, (W - 1) / w)
    cx, cy = x + w / 2, y + h / 2
    nw, nh = w * scale, h * scale
    x1, y1 = cx - nw / 2, cy - nh / 2
    x2, y2 = cx + nw / 2, cy + nh / 2
    if x1 < 0:
        x2 -= x1
        x1 = 0
    if y1 < 0:
        y2 -= y1
        y1 = 0
    if x2 > W - 1:
        x1 -= x2 - W + 1
        x2 = W - 1
    if y2 > H - 1:
        y1 -= y2 - H + 1
        y2 = H - 1
    x1, y1, x2, y2 = int(max(0, x1)), int(max(0, y1)), int(x2), int(y2)
    crop = image[y1:y2 + 1, x1:x2 + 1]
    return cv2.resize(crop, (out, out), interpolation=cv2.INTER_LINEAR)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class MiniFASNet:
    """The two MiniFASNet models used together; returns the mean p(live)."""

    def __init__(self, sessions: list[tuple[object, float]]):
        self.models = [(s, s.get_inputs()[0].name, scale) for s, scale in sessions]

    def score(self, image: np.ndarray, box) -> float:
        probs = []
        for sess, name, scale in self.models:
            x = minifas_crop(image, box, scale).astype(np.float32).transpose(2, 0, 1)[None]
            probs.append(_softmax(sess.run(None, {name: np.ascontiguousarray(x)})[0].reshape(-1)))
        return float(np.mean(probs, axis=0)[1])

    def score_single(self, image: np.ndarray, box) -> float:
        """A still face image rather than a camera frame: when the face fills the image the
        2.7x / 4x crops have no context, so the image is padded by edge replication first."""
        H, W = image.shape[:2]
        x, y, w, h = box
        if w * 2.7 > W or h * 2.7 > H:
            p = int(2 * max(w, h))
            image = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE)
            box = (x + p, y + p, w, h)
        return self.score(image, box)


def moire_score(face_crop: np.ndarray) -> float:
    """Share of spectral energy in isolated high-frequency peaks of the grey face crop.

    Screens and halftone prints add narrow periodic peaks far from the spectrum's centre; skin
    gives a smooth fall-off. The value is the energy of the strongest peaks above a smoothed
    background in the outer band, relative to the band's total energy."""
    g = cv2.cvtColor(cv2.resize(face_crop, (128, 128), interpolation=cv2.INTER_AREA),
                     cv2.COLOR_BGR2GRAY).astype(np.float32)
    g = (g - g.mean()) * np.outer(np.hanning(128), np.hanning(128))
    mag = np.abs(np.fft.fftshift(np.fft.fft2(g)))
    yy, xx = np.mgrid[-64:64, -64:64]
    r = np.hypot(xx, yy)
    band = (r > 20) & (r < 62)
    bg = cv2.blur(mag, (9, 9))
    excess = np.clip(mag - 3.0 * bg, 0, None)
    return float(excess[band].sum() / max(mag[band].sum(), 1e-6))


def nonrigid_motion(prev: np.ndarray, cur: np.ndarray) -> float:
    """Landmark movement left after removing the best similarity transform, in units of the
    inter-eye distance. A flat photo moved in front of the camera gives ~0 (up to detector
    noise); a live face gives small but steady non-rigid changes."""
    m = similarity_transform(prev, cur)
    moved = prev @ m[:, :2].T + m[:, 2]
    ied = max(float(np.linalg.norm(cur[1] - cur[0])) if len(cur) == 5
              else float(np.linalg.norm(cur[42:48].mean(0) - cur[36:42].mean(0))), 1.0)
    return float(np.sqrt(((moved - cur) ** 2).sum(1).mean()) / ied)


@dataclass
class FrameCues:
    model: float                 # mean MiniFASNet p(live)
    landmarks: np.ndarray        # 68 points (or 5) of the frame, for motion
    eyes_open: float | None      # min p(open) of both eyes, None if not measured
    moire: float
    pixels_identical: bool = False  # the frame is a byte copy of the previous one


@dataclass
class LivenessPolicy:
    model_threshold: float = 0.5     # mean p(live) over frames (calibrated on pad-dev, see calibration.json)
    moire_threshold: float = 0.08
    motion_min: float = 0.002        # median non-rigid motion / IED; catches still frames, not a moved print
    eyes_closed_below: float = 0.1
    min_frames: int = 5
    require_motion: bool = True


@dataclass
class LivenessDecision:
    verdict: str                  # 'live' | 'attack' | 'undetermined'
    score: float                  # mean model p(live), 0..1
    reasons: list[str] = field(default_factory=list)
    cues: dict[str, float] = field(default_factory=dict)


class LivenessEvidence:
    """Accumulates `FrameCues` of one traveller over the capture window."""

    def __init__(self, policy: LivenessPolicy | None = None):
        self.policy = policy or LivenessPolicy()
        self.frames: list[FrameCues] = []
        self._motion: list[float] = []
        self._closed_seen = False
        self._blinks = 0

    def add(self, cues: FrameCues) -> None:
        if self.frames and not cues.pixels_identical:
            prev = self.frames[-1].landmarks
            if prev.shape == cues.landmarks.shape:
                self._motion.append(nonrigid_motion(prev, cues.landmarks))
        elif self.frames:
            self._motion.append(0.0)
        if cues.eyes_open is not None:
            if cues.eyes_open < self.policy.eyes_closed_below:
                self._closed_seen = True
            elif self._closed_seen and cues.eyes_open > 0.5:
                self._blinks += 1
                self._closed_seen = False
        self.frames.append(cues)

    @property
    def blinks(self) -> int:
        return self._blinks

    def decide(self, final: bool = False) -> LivenessDecision:
        p = self.policy
        n = len(self.frames)
        if n == 0:
            return LivenessDecision("undetermined", 0.0, ["no_face_frames"])
        model = float(np.mean([c.model for c in self.frames]))
        moire = float(np.median([c.moire for c in self.frames]))
        motion = float(np.median(self._motion)) if self._motion else 0.0
        cues = {"model": model, "moire": moire, "motion": motion, "blinks": float(self._blinks),
                "frames": float(n)}
        reasons: list[str] = []
        if model < p.model_threshold:
            reasons.append("pad_model_attack")
        if moire > p.moire_threshold:
            reasons.append("screen_moire")
        if n >= p.min_frames and p.require_motion and motion < p.motion_min and self._blinks == 0:
            reasons.append("no_natural_motion")
        if reasons and (n >= p.min_frames or final):
            return LivenessDecision("attack", model, reasons, cues)
        if n < p.min_frames:
            return LivenessDecision("undetermined", model, ["too_few_frames"], cues)
        return LivenessDecision("live", model, [], cues)
