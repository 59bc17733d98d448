"""Presentation-attack detection: per-frame model scores plus evidence gathered over frames.

Single-image models (MiniFASNet) pass edge-less prints and good screen replays, so the decision
never rests on them alone. `LivenessEvidence` collects, frame by frame:

* `model`   single-frame PAD models (`PadModels`: MiniFASNet pair + Faceplugin liveness);
* `motion`  natural micro-motion: the non-rigid part of the landmark movement between frames (a
            photo moves rigidly or not at all; a face also moves its features);
* `blink`   an eye closing and reopening, from the eye-state model;
* `moire`   periodic high-frequency energy in the face crop (moiré of a screen or halftone print);
* `border`  straight edges of a phone, tablet or sheet framing the face (`screen_border_sides`);
* `planar`  a photo or screen moved in front of the camera: every landmark follows one homography
            of the first frame (`planar_residuals`), which a head with depth cannot do;
* `challenge` a randomised blink or head-turn request (`Challenge`), verified within the window;
* `identity` the same person throughout: the embedded frames must not fall into two groups of
            different people (a live accomplice cannot lend liveness to a photo of the holder).

New cues are added as another field of `FrameCues` and another term in `LivenessEvidence.decide`.
"""
from __future__ import annotations

import secrets
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


class PadModels:
    """Single-frame PAD score: the mean of two independent model families.

    * MiniFASNet V2 (2.7x) + V1SE (4.0x), BGR 0..255, softmax averaged, class 1 = live (upstream).
    * Faceplugin fr_liveness (MiniFASNetV1SE layout, 128x128, squared box at 2.7x), fed R,G,B as
      the package's JS does. On pad-dev its class 0 rises on replays (per-source AUC 0.61-1.00,
      pooled 0.90 for 1 - p0) while BGR input separates nothing (0.42), so p(live) = 1 - p0 with
      RGB. The JS calls class 0 "liveness"; the measurement says otherwise (see calibration.json).
    Every crop follows the upstream rule on the image as given (no padding), so a tight face crop
    is scored with the context it has. The mean separated pad-dev better (AUC 0.93) than either
    family alone (0.79 / 0.90).
    """

    def __init__(self, minifas: list[tuple[object, float]], faceplugin=None):
        self.minifas = [(s, s.get_inputs()[0].name, scale) for s, scale in minifas]
        self.faceplugin = faceplugin
        self._fp_input = faceplugin.get_inputs()[0].name if faceplugin is not None else None

    def minifas_live(self, image: np.ndarray, box) -> float:
        probs = []
        for sess, name, scale in self.minifas:
            x = minifas_crop(image, box, scale).astype(np.float32).transpose(2, 0, 1)[None]
            probs.append(_softmax(sess.run(None, {name: np.ascontiguousarray(x)})[0].reshape(-1)))
        return float(np.mean(probs, axis=0)[1])

    def faceplugin_live(self, image: np.ndarray, box) -> float:
        x, y, w, h = box
        side = max(w, h)
        sq = (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)
        crop = minifas_crop(image, sq, 2.7, 128)[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
        p = _softmax(self.faceplugin.run(None, {self._fp_input: np.ascontiguousarray(crop)})[0].reshape(-1))
        return float(1.0 - p[0])

    def score(self, image: np.ndarray, box) -> float:
        s = self.minifas_live(image, box)
        if self.faceplugin is None:
            return s
        return 0.5 * (s + self.faceplugin_live(image, box))


def moire_score(face_crop: np.ndarray) -> float:
    """Share of spectral energy in narrow high-frequency peaks of the face, at native resolution.

    A screen or halftone print filmed by a camera adds periodic patterns at the pixel scale that
    stand out of the smooth spectrum of skin; downscaling first would average them away, so the
    central 128x128 patch is taken as it is (small faces are enlarged by pixel repetition). The
    value is the energy above twice a median-filtered background in the outer band, relative to
    the band's energy. On pad-dev it separates the visible-moire replays (median 0.029) from every
    bona fide frame (max 0.016); other replays stay below, so it is one cue among several."""
    if face_crop.size == 0 or min(face_crop.shape[:2]) < 4:
        return 0.0
    h, w = face_crop.shape[:2]
    n = min(h, w)
    sq = face_crop[(h - n) // 2:(h - n) // 2 + n, (w - n) // 2:(w - n) // 2 + n]
    if n < 128:
        sq = cv2.resize(sq, (128, 128), interpolation=cv2.INTER_NEAREST)
    else:
        o = (n - 128) // 2
        sq = sq[o:o + 128, o:o + 128]
    g = cv2.cvtColor(sq, cv2.COLOR_BGR2GRAY).astype(np.float32)
    g = (g - g.mean()) * np.outer(np.hanning(128), np.hanning(128)).astype(np.float32)
    mag = (np.abs(np.fft.fftshift(np.fft.fft2(g))) + 1e-6).astype(np.float32)
    yy, xx = np.mgrid[-64:64, -64:64]
    band = (np.hypot(xx, yy) > 20) & (np.hypot(xx, yy) < 62)
    excess = np.clip(mag - 2.0 * cv2.medianBlur(mag, 5), 0, None)
    return float(excess[band].sum() / mag[band].sum())


def screen_border_sides(image: np.ndarray, box) -> int:
    """How many sides (0-4) of a straight frame surround the face: a phone, tablet or printed
    sheet held to the camera shows its edges close around the face, a person standing at the gate
    does not. Long straight edges within 1.5 face widths left/right and 1.2 heights up/down that
    run past the face on the side they are on, each counted once per side."""
    H, W = image.shape[:2]
    x, y, w, h = box
    x0, x1 = int(max(0, x - 1.5 * w)), int(min(W, x + 2.5 * w))
    y0, y1 = int(max(0, y - 1.2 * h)), int(min(H, y + 2.2 * h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), 50, 150)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, 40, minLineLength=int(0.9 * min(w, h)), maxLineGap=6)
    sides = set()
    fx0, fx1, fy0, fy1 = x - x0, x + w - x0, y - y0, y + h - y0
    for ax, ay, bx, by in ([] if lines is None else lines.reshape(-1, 4)):
        dx, dy = abs(bx - ax), abs(by - ay)
        if dx < 0.18 * dy and max(ay, by) > fy0 and min(ay, by) < fy1 and dy >= 1.1 * h:   # vertical
            mx = (ax + bx) / 2
            if mx < fx0 - 0.1 * w:
                sides.add("left")
            elif mx > fx1 + 0.1 * w:
                sides.add("right")
        elif dy < 0.18 * dx and max(ax, bx) > fx0 and min(ax, bx) < fx1 and dx >= 1.1 * w:  # horizontal
            my = (ay + by) / 2
            if my < fy0 - 0.1 * h:
                sides.add("top")
            elif my > fy1 + 0.1 * h:
                sides.add("bottom")
    return len(sides)


def nonrigid_motion(prev: np.ndarray, cur: np.ndarray) -> float:
    """Landmark movement left after removing the best similarity transform, in units of the
    inter-eye distance. A flat photo moved in front of the camera gives ~0 (up to detector
    noise); a live face gives small but steady non-rigid changes."""
    m = similarity_transform(prev, cur)
    moved = prev @ m[:, :2].T + m[:, 2]
    ied = max(float(np.linalg.norm(cur[1] - cur[0])) if len(cur) == 5
              else float(np.linalg.norm(cur[42:48].mean(0) - cur[36:42].mean(0))), 1.0)
    return float(np.sqrt(((moved - cur) ** 2).sum(1).mean()) / ied)


def planar_residuals(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(similarity, homography) RMS residual of `cur` against `ref` landmarks, in inter-eye units.

    A flat photo or screen moved, tilted or bent slightly in front of the camera maps its landmarks
    by one homography: the similarity residual grows with the tilt, the homography one stays at
    detector noise. A live head turning shows parallax (nose against cheeks and jaw) that no
    homography explains. Needs the 68 points: with 5 points a homography fits almost anything."""
    sim = nonrigid_motion(ref, cur)
    h, _ = cv2.findHomography(ref.astype(np.float64), cur.astype(np.float64), 0)
    if h is None:
        return sim, sim
    proj = cv2.perspectiveTransform(ref.astype(np.float64).reshape(-1, 1, 2), h).reshape(-1, 2)
    ied = max(float(np.linalg.norm(cur[42:48].mean(0) - cur[36:42].mean(0))), 1.0)
    return sim, float(np.sqrt(((proj - cur) ** 2).sum(1).mean()) / ied)


CHALLENGES = ("blink", "turn_left", "turn_right")


@dataclass(frozen=True)
class Challenge:
    """One request to the traveller, `issue_at` seconds into the capture window.

    Kind and timing are drawn from the system CSPRNG so a replayed video cannot be cut to answer
    in time. Turns are the traveller's own left/right: turning left moves the nose to the image's
    right, which `pose_from_landmarks` reports as a rising yaw."""
    kind: str
    issue_at: float

    @classmethod
    def random(cls, earliest: float = 0.5, latest: float = 2.0) -> "Challenge":
        rng = secrets.SystemRandom()
        return cls(rng.choice(CHALLENGES), rng.uniform(earliest, latest))

    @property
    def guidance_code(self) -> str:
        return f"challenge_{self.kind}"


@dataclass
class FrameCues:
    model: float | None          # PadModels p(live) of the frame; None when not run on this frame
    landmarks: np.ndarray        # 68 points (or 5) of the frame, for motion
    eyes_open: float | None      # min p(open) of both eyes, None if not measured
    moire: float | None          # None when not run on this frame
    pixels_identical: bool = False  # the frame is a byte copy of the previous one
    border_sides: int | None = 0    # sides of a device/sheet edge around the face (None: not run)
    t: float | None = None          # seconds since the window started (for the challenge)
    yaw: float | None = None        # head yaw in degrees (for the turn challenge)
    identity: np.ndarray | None = None  # the frame's face embedding, where one was computed


@dataclass
class LivenessPolicy:
    model_threshold: float = 0.5     # mean p(live) over frames (calibrated on pad-dev, see calibration.json)
    enabled: bool = True             # False only for demos on still images: verdict stays 'undetermined'
    moire_threshold: float = 0.02        # median over frames; see moire_score
    border_sides: int = 3            # edges on this many sides of the face in most frames = a held device
    motion_min: float = 0.002        # median non-rigid motion / IED; catches still frames, not a moved print
    eyes_closed_below: float = 0.1
    min_frames: int = 5
    early_margin: float = 0.1        # before the window ends, decide only when this far from the threshold
    max_frames: int = 15             # ... or once this many frames were seen
    require_motion: bool = True
    planar_min_motion: float = 0.012 # similarity residual vs the first frame that counts as "moved"
    planar_ratio: float = 0.45       # homography/similarity residual below this = a moved flat surface
    planar_min_pairs: int = 3        # moved frames needed before the planar cue may speak
    challenge: bool = False          # issue a random blink/turn request in the capture loop
    challenge_response_s: float = 4.0  # the answer must come this soon after the request
    turn_deg: float = 12.0           # yaw change from the pre-challenge baseline that answers a turn
    identity_min: float = 0.45       # cosine below which two frames show different people


@dataclass
class LivenessDecision:
    verdict: str                  # 'live' | 'attack' | 'undetermined'
    score: float                  # mean model p(live), 0..1
    reasons: list[str] = field(default_factory=list)
    cues: dict[str, float] = field(default_factory=dict)


class LivenessEvidence:
    """Accumulates `FrameCues` of one traveller over the capture window."""

    def __init__(self, policy: LivenessPolicy | None = None, challenge: Challenge | None = None):
        self.policy = policy or LivenessPolicy()
        self.challenge = challenge
        self.frames: list[FrameCues] = []
        self._motion: list[float] = []
        self._planar: list[float] = []   # homography/similarity residual ratios of moved frames
        self._closed_seen = False
        self._blinks = 0
        self._answer_closed = False
        self._yaw_before: list[float] = []
        self.challenge_met = False
        self.prompted_at: float | None = None
        self._identity: list[np.ndarray] = []

    def prompt(self, t: float) -> None:
        """The request was shown at `t`: answers count from here (not from the planned time, since
        the kiosk may have been busy with other guidance), for `challenge_response_s`."""
        if self.prompted_at is None:
            self.prompted_at = t

    def _add_challenge(self, cues: FrameCues) -> None:
        c, p = self.challenge, self.policy
        if c is None or cues.t is None or self.challenge_met:
            return
        asked = c.issue_at if self.prompted_at is None else self.prompted_at
        if cues.t <= asked:
            if cues.yaw is not None:
                self._yaw_before.append(cues.yaw)
            return
        if cues.t > asked + p.challenge_response_s:   # too late: a reply must follow the request
            return
        if c.kind == "blink" and cues.eyes_open is not None:
            if cues.eyes_open < p.eyes_closed_below:
                self._answer_closed = True
            elif self._answer_closed and cues.eyes_open > 0.5:
                self.challenge_met = True
        elif c.kind in ("turn_left", "turn_right") and cues.yaw is not None:
            if not self._yaw_before:   # no frame before the request: the first answer frame is the baseline
                self._yaw_before.append(cues.yaw)
            delta = cues.yaw - float(np.median(self._yaw_before))
            self.challenge_met = (delta if c.kind == "turn_left" else -delta) >= p.turn_deg

    def add_identity(self, embedding: np.ndarray) -> None:
        """An identity check of the last frame made after it was added (the challenge's answer)."""
        self._identity.append(embedding)

    def people(self) -> int:
        """How many people the embedded frames show: groups of frames linked by cosine >= identity_min
        that hold at least two frames each. One odd frame (motion blur, a cut-off face) is a group of
        one and says nothing; a switch gives two groups as soon as the second person is checked
        twice, however alike the frames within each group are."""
        n = len(self._identity)
        if n < 2:
            return 1
        e = np.stack(self._identity)
        linked = (e @ e.T) >= self.policy.identity_min
        group = list(range(n))

        def root(i: int) -> int:
            while group[i] != i:
                i = group[i]
            return i

        for i, j in zip(*np.nonzero(np.triu(linked, 1))):
            group[root(int(i))] = root(int(j))
        sizes = np.bincount([root(i) for i in range(n)])
        return max(1, int((sizes >= 2).sum()))

    def add(self, cues: FrameCues) -> None:
        self._add_challenge(cues)
        if cues.identity is not None:
            self._identity.append(cues.identity)
        ref = self.frames[0].landmarks if self.frames else None
        if ref is not None and len(ref) >= 8 and ref.shape == cues.landmarks.shape:
            sim, hom = planar_residuals(ref, cues.landmarks)
            if sim >= self.policy.planar_min_motion:
                self._planar.append(hom / sim)
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
        if not p.enabled:
            return LivenessDecision("undetermined", 0.0, ["liveness_disabled"])
        if n == 0:
            return LivenessDecision("undetermined", 0.0, ["no_face_frames"])
        # the single-image cues run on some frames only (pipeline.APPEARANCE_EVERY)
        models = [c.model for c in self.frames if c.model is not None]
        model = float(np.mean(models)) if models else 0.0
        moires = [c.moire for c in self.frames if c.moire is not None]
        moire = float(np.median(moires)) if moires else 0.0
        motion = float(np.median(self._motion)) if self._motion else 0.0
        borders = [c.border_sides >= p.border_sides for c in self.frames if c.border_sides is not None]
        border = float(np.mean(borders)) if borders else 0.0
        planar = float(np.median(self._planar)) if self._planar else 1.0
        people = self.people()
        cues = {"model": model, "moire": moire, "motion": motion, "blinks": float(self._blinks),
                "border": border, "frames": float(n), "planar": planar,
                "planar_pairs": float(len(self._planar)), "people": float(people),
                "identity_checks": float(len(self._identity))}
        if self.challenge is not None:
            cues["challenge_met"] = float(self.challenge_met)
        reasons: list[str] = []
        if people > 1:
            reasons.append("identity_switch")
        if models and model < p.model_threshold:
            reasons.append("pad_model_attack")
        if moire > p.moire_threshold:
            reasons.append("screen_moire")
        if border > 0.5:
            reasons.append("screen_border")
        if n >= p.min_frames and p.require_motion and motion < p.motion_min and self._blinks == 0:
            reasons.append("no_natural_motion")
        if len(self._planar) >= p.planar_min_pairs and planar < p.planar_ratio:
            reasons.append("planar_motion")
        if "identity_switch" in reasons:   # another person in front of the camera: no need to wait
            return LivenessDecision("attack", model, reasons, cues)
        if not final and n < p.max_frames and abs(model - p.model_threshold) < p.early_margin:
            return LivenessDecision("undetermined", model, ["uncertain_so_far"], cues)
        if not models:   # never 'live' without a single-image score
            return LivenessDecision("undetermined", model, ["no_pad_score"] + reasons, cues)
        if n < p.min_frames:  # too little evidence either way; the gate refers 'undetermined'
            return LivenessDecision("undetermined", model, ["too_few_frames"] + reasons, cues)
        if reasons:
            return LivenessDecision("attack", model, reasons, cues)
        if self.challenge is not None and not self.challenge_met:
            # not answered (yet): never 'live'; at the end of the window the gate refers
            code = "challenge_timeout" if final else "challenge_pending"
            return LivenessDecision("undetermined", model, [f"{code}:{self.challenge.kind}"], cues)
        return LivenessDecision("live", model, [], cues)
