"""Presentation-attack detection: per-frame model scores plus evidence gathered over frames.

Single-image models (MiniFASNet) pass edge-less prints and good screen replays, so the decision
never rests on them alone. `LivenessEvidence` collects, frame by frame:

* `model`   the single-image score of each frame (`PadModels.score`, below);
* `motion`  natural micro-motion: the non-rigid part of the landmark movement between frames (a
            photo moves rigidly or not at all; a face also moves its features);
* `blink`   an eye closing and reopening, from the eye-state model;
* `moire`   periodic high-frequency energy in the face crop (moiré of a screen or halftone print);
* `border`  straight edges of a phone, tablet or sheet framing the face (`screen_border_sides`);
* `planar`  a photo or screen moved in front of the camera: every landmark follows one homography
            of the first frame (`planar_residuals`), which a head with depth cannot do;
* `challenge` randomised requests (blink, turn left/right, look up/down; `Challenge`), each started
            from rest within a human reaction time of its prompt, in order, with rest between;
* `identity` the same person throughout: the embedded frames must not fall into two groups of
            different people (a live accomplice cannot lend liveness to a photo of the holder).

Single image (`PadModels.score`, used per frame above and by `score-pad`): our own small CNN
(`PadNet`, trained by `python -m biometrics train-pad`, shipped in the repo's models/), a linear
head on colour texture (`PadTexture`, trained with it), plus the artefact cues below (moiré, border,
specular glare, colour gamut, refresh banding), combined by a logistic fusion whose weights and
threshold `calibrate-pad` fits on dev data (`PadFusion`).

New cues are added as another field of `FrameCues` and another term in `LivenessEvidence.decide`.
"""
from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .align import similarity_transform
from .models import DEFAULT_CALIBRATION, ModelError, ModelRegistry

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


PADNET_ROLE = "pad_padnet"
PADNET_SIZE = 96      # input side of PadNet (pixels)
PADNET_SCALE = 1.2    # square crop side = 1.2 x the larger side of the detector box


def padnet_crop(image: np.ndarray, box, size: int = PADNET_SIZE, scale: float = PADNET_SCALE) -> np.ndarray:
    """The square around the face box that PadNet sees, size x size BGR uint8 (INTER_AREA).

    Parts outside the frame are mirrored in (tight portraits), never filled with a flat colour that
    would read as a sheet edge."""
    H, W = image.shape[:2]
    x, y, w, h = box
    s = max(2, int(round(scale * max(w, h, 1.0))))
    x0, y0 = int(round(x + w / 2 - s / 2)), int(round(y + h / 2 - s / 2))
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return np.zeros((size, size, 3), np.uint8)
    crop = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y0 + s - cy1, cx0 - x0, x0 + s - cx1)
    if any(pads):
        mode = cv2.BORDER_REFLECT_101 if max(pads) < min(crop.shape[:2]) else cv2.BORDER_REPLICATE
        crop = cv2.copyMakeBorder(crop, *pads, mode)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def padnet_input(crops: np.ndarray) -> np.ndarray:
    """N x size x size x 3 BGR uint8 (or one crop) -> N x 3 x size x size float32, (v/255 - 0.5) / 0.25."""
    c = crops[None] if crops.ndim == 3 else crops
    return np.ascontiguousarray(((c.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(0, 3, 1, 2))


class PadNet:
    """Our single-image PAD CNN (models/padnet.onnx): one logit, > 0 = live. Loaded from the repo's
    own models/ directory (first-party, sha256-pinned in the manifest like the others)."""

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def _input_of(self, crop: np.ndarray) -> np.ndarray:
        return padnet_input(crop)

    def logit_of(self, crop: np.ndarray) -> float:
        """The logit of a crop already cut by `padnet_crop` (training and calibration keep those)."""
        x = self._input_of(crop)
        return float(np.asarray(self.session.run(None, {self._input: x})[0]).reshape(-1)[0])

    def logit(self, image: np.ndarray, box) -> float:
        return self.logit_of(padnet_crop(image, box))


TEXTURE_ROLE = "pad_texture"
_LBP_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))   # 8 neighbours, in circle order


def _uniform_lbp_bins() -> np.ndarray:
    """LBP code -> histogram bin: the 58 uniform codes (at most two 0/1 changes around the circle)
    one bin each, all other codes bin 58."""
    bins = np.full(256, 58, np.int64)
    uniform = [c for c in range(256) if bin(c ^ ((c >> 1) | ((c & 1) << 7))).count("1") <= 2]
    bins[uniform] = np.arange(len(uniform))
    return bins


_LBP_BINS = _uniform_lbp_bins()
TEXTURE_DIM = 6 * 59


def colour_texture(crop: np.ndarray) -> np.ndarray:
    """Colour texture of the PadNet crop (Boulkenafet et al., "Face spoofing detection using colour
    texture analysis", 2016): a uniform LBP(8,1) histogram of each channel of HSV and YCrCb,
    6 x 59 bins, each histogram square-rooted (Hellinger) for the linear head. A re-captured print
    or screen changes the fine texture of chroma more than of luminance, which grey LBP misses."""
    hists = []
    for conversion in (cv2.COLOR_BGR2HSV, cv2.COLOR_BGR2YCrCb):
        for ch in cv2.split(cv2.cvtColor(crop, conversion)):
            h, w = ch.shape
            centre = ch[1:-1, 1:-1]
            code = np.zeros(centre.shape, np.uint8)
            for k, (dy, dx) in enumerate(_LBP_RING):
                code |= (ch[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= centre).astype(np.uint8) << k
            hist = np.bincount(_LBP_BINS[code].ravel(), minlength=59)
            hists.append(np.sqrt(hist / max(hist.sum(), 1)))
    return np.concatenate(hists).astype(np.float32)


class PadTexture(PadNet):
    """Linear head on `colour_texture` (models/padtexture.onnx, one Gemm, trained with PadNet on the
    train split by `train-pad`): one logit, > 0 = live, of the same crop. An input of the fusion like
    PadNet."""

    def _input_of(self, crop: np.ndarray) -> np.ndarray:
        return colour_texture(crop)[None]


@dataclass
class PadFusion:
    """Logistic fusion of single-image features into p(live), fitted by `calibrate-pad` on dev data
    (standardised features, L2-regularised, each species weighted equally), never set by hand."""

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    padnet_sha256: str | None = None   # the PadNet file the weights were fitted with
    texture_sha256: str | None = None  # the PadTexture file, likewise

    def z(self, values: dict[str, float]) -> float:
        v = (np.array([values[k] for k in self.features], np.float64) - self.mean) / self.std
        return float(self.bias + v @ self.weights)

    def score(self, values: dict[str, float]) -> float:
        """p(live). The third-party score is one input among the others, with the weight the fit
        gave it: no single model decides alone (MiniFASNet refuses some webcam people outright)."""
        return float(1.0 / (1.0 + np.exp(-np.clip(self.z(values), -40, 40))))

    @classmethod
    def fit(cls, features: tuple[str, ...], X: np.ndarray, live: np.ndarray, sample_weight: np.ndarray,
            l2: float = 1.0, iterations: int = 50) -> "PadFusion":
        """Newton-Raphson (IRLS) on the weighted logistic loss; the bias is not penalised."""
        X = np.asarray(X, np.float64)
        mean, std = X.mean(0), X.std(0) + 1e-9
        A = np.c_[np.ones(len(X)), (X - mean) / std]
        y, sw = live.astype(np.float64), sample_weight / sample_weight.sum() * len(X)
        beta = np.zeros(A.shape[1])
        reg = np.full(A.shape[1], l2)
        reg[0] = 0.0
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(A @ beta, -40, 40)))
            grad = A.T @ (sw * (p - y)) + reg * beta
            hess = (A * (sw * p * (1 - p))[:, None]).T @ A + np.diag(reg + 1e-9)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(tuple(features), mean, std, beta[1:], float(beta[0]))

    def as_record(self) -> dict:
        r = lambda a: [round(float(v), 6) for v in a]  # noqa: E731
        return {"features": list(self.features), "mean": r(self.mean), "std": r(self.std),
                "weights": r(self.weights), "bias": round(self.bias, 6), "padnet_sha256": self.padnet_sha256,
                "texture_sha256": self.texture_sha256}

    @classmethod
    def from_record(cls, rec: dict) -> "PadFusion":
        return cls(tuple(rec["features"]), np.array(rec["mean"], np.float64), np.array(rec["std"], np.float64),
                   np.array(rec["weights"], np.float64), float(rec["bias"]), rec.get("padnet_sha256"),
                   rec.get("texture_sha256"))

    @classmethod
    def from_calibration(cls, path: Path | dict = DEFAULT_CALIBRATION) -> "PadFusion | None":
        """The fusion of calibration.json (its path, or its contents already read); None without one."""
        try:
            doc = path if isinstance(path, dict) else json.loads(Path(path).read_text())
            rec = doc["liveness"]["fusion"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls.from_record(rec)


class PadModels:
    """Single-image PAD.

    `score` is the calibrated fusion (`PadFusion`) of our PadNet and colour-texture logits, the
    artefact cues and the third-party score (as the fusion record lists them); without a fusion (only
    while train-pad / calibrate-pad fit one: `FaceVerifier` refuses to start without it) it is the
    third-party score. `thirdparty` is the mean of
    two independent families:

    * MiniFASNet V2 (2.7x) + V1SE (4.0x), BGR 0..255, softmax averaged, class 1 = live (upstream).
    * Faceplugin fr_liveness (MiniFASNetV1SE layout, 128x128, squared box at 2.7x), fed R,G,B as
      the package's JS does. On pad-dev its class 0 rises on replays (per-source AUC 0.61-1.00,
      pooled 0.90 for 1 - p0) while BGR input separates nothing (0.42), so p(live) = 1 - p0 with
      RGB. The JS calls class 0 "liveness"; the measurement says otherwise (see calibration.json).
    Every crop follows the upstream rule on the image as given (no padding), so a tight face crop
    is scored with the context it has.
    """

    def __init__(self, minifas: list[tuple[object, float]], faceplugin=None, padnet: PadNet | None = None,
                 fusion: PadFusion | None = None, texture: PadTexture | None = None):
        self.minifas = [(s, s.get_inputs()[0].name, scale) for s, scale in minifas]
        self.faceplugin = faceplugin
        self._fp_input = faceplugin.get_inputs()[0].name if faceplugin is not None else None
        self.fusion = fusion
        self.padnet, self.texture = padnet, texture
        registry = None
        for name, role, model in (("padnet", PADNET_ROLE, PadNet), ("texture", TEXTURE_ROLE, PadTexture)):
            if getattr(self, name) is not None or self.fusion is None or name not in self.fusion.features:
                continue
            registry = registry or ModelRegistry()   # one read of the manifest: the models and their pins
            setattr(self, name, model(registry.session(role)))
            pinned, fitted = registry.entry(role).sha256, getattr(self.fusion, f"{name}_sha256")
            if fitted != pinned:   # fusion weights belong to one model file
                raise ModelError(f"the PAD fusion in calibration.json was fitted for {role} sha256 {fitted}, "
                                 f"but models/manifest.json pins {pinned}: run `python -m biometrics calibrate-pad`")

    def _minifas_probs(self, i: int, image: np.ndarray, box) -> np.ndarray:
        sess, name, scale = self.minifas[i]
        x = minifas_crop(image, box, scale).astype(np.float32).transpose(2, 0, 1)[None]
        return _softmax(sess.run(None, {name: np.ascontiguousarray(x)})[0].reshape(-1))

    def _thirdparty(self, probs: list[np.ndarray], faceplugin: float | None) -> float:
        s = float(np.mean(probs, axis=0)[1])
        return s if faceplugin is None else 0.5 * (s + faceplugin)

    def faceplugin_live(self, image: np.ndarray, box) -> float:
        x, y, w, h = box
        side = max(w, h)
        sq = (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)
        crop = minifas_crop(image, sq, 2.7, 128)[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
        p = _softmax(self.faceplugin.run(None, {self._fp_input: np.ascontiguousarray(crop)})[0].reshape(-1))
        return float(1.0 - p[0])

    def thirdparty(self, image: np.ndarray, box) -> float:
        probs = [self._minifas_probs(i, image, box) for i in range(len(self.minifas))]
        return self._thirdparty(probs, None if self.faceplugin is None else self.faceplugin_live(image, box))

    def score(self, image: np.ndarray, box) -> float:
        return self.assess(image, box)[0]

    def assess(self, image: np.ndarray, box) -> tuple[float, dict[str, float]]:
        """The per-frame score and the artefact cues measured for it, every part in order in
        this thread (`score`, `score-pad`); the capture loop runs the same `parts` in lanes."""
        return self.fuse({k: run() for k, run in self.parts(image, box).items()})

    def parts(self, image: np.ndarray, box) -> dict[str, Callable[[], object]]:
        """`assess` as independent calls, costliest first, that `pipeline.Lanes` runs side by side
        on the gate's two cores (onnxruntime and most of OpenCV release the GIL); `fuse` combines
        their results exactly as `assess` does."""
        tp = self._needs_thirdparty()
        parts: dict[str, Callable[[], object]] = {}
        if tp and self.faceplugin is not None:
            parts["faceplugin"] = lambda: self.faceplugin_live(image, box)   # ~11 ms on the gate's CPU
        parts["cues"] = lambda: artefact_cues(image, box)                      # ~11 ms
        for i in range(len(self.minifas) if tp else 0):                        # ~6 ms each
            parts[f"minifas{i}"] = lambda i=i: self._minifas_probs(i, image, box)
        for name in ("padnet", "texture"):                                    # ~2 ms each
            if self.fusion is not None and name in self.fusion.features:       # (loaded only then)
                parts[name] = lambda m=getattr(self, name): m.logit(image, box)
        return parts

    def _needs_thirdparty(self) -> bool:
        return self.fusion is None or "thirdparty" in self.fusion.features

    def fuse(self, r: dict[str, object]) -> tuple[float, dict[str, float]]:
        """(p(live), features) from the results of `parts`."""
        tp = (self._thirdparty([r[f"minifas{i}"] for i in range(len(self.minifas))], r.get("faceplugin"))
              if self._needs_thirdparty() else None)
        if self.fusion is None:
            return tp, r["cues"]
        f = dict(r["cues"])
        f.update((k, r[k]) for k in ("padnet", "texture") if k in r)
        if tp is not None:
            f["thirdparty"] = tp
        return self.fusion.score(f), f


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


def _box_crop(image: np.ndarray, box, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """The face box scaled about its centre by (sx, sy), clipped to the frame."""
    H, W = image.shape[:2]
    x, y, w, h = box
    cx, cy, w2, h2 = x + w / 2, y + h / 2, max(w, 1.0) * sx / 2, max(h, 1.0) * sy / 2
    return image[int(max(0, cy - h2)):int(min(H, cy + h2)), int(max(0, cx - w2)):int(min(W, cx + w2))]


def glare_score(face_crop: np.ndarray) -> float:
    """Share of the face covered by specular highlight blobs: near-white (V >= 245, S <= 60),
    compact and at least 0.05% of the area, as a lamp mirrored in a glossy print or a screen's glass
    looks. Skin in normal light rarely clips to white; single hot pixels are opened away."""
    if face_crop.size == 0 or min(face_crop.shape[:2]) < 8:
        return 0.0
    hsv = cv2.cvtColor(face_crop, cv2.COLOR_BGR2HSV)
    mask = ((hsv[..., 2] >= 245) & (hsv[..., 1] <= 60)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA] if n > 1 else np.zeros(0)
    min_area = max(3, int(0.0005 * mask.size))
    return float(area[area >= min_area].sum() / mask.size)


def gamut_spread(face_crop: np.ndarray) -> float:
    """Colour spread of the central face in CIE Lab: sqrt(var a* + var b*), in Lab units (0..255
    scale). A print's inks and a screen re-filmed through a cast compress chroma; the mean (a cast)
    is removed, so only the spread counts. Greyscale images score 0, so the fusion weighs this
    cue against the others rather than letting it decide alone."""
    c = _box_crop(face_crop, (0, 0, face_crop.shape[1], face_crop.shape[0]), 0.7, 0.7)
    if c.size == 0 or min(c.shape[:2]) < 4:
        return 0.0
    lab = cv2.cvtColor(c, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    return float(np.sqrt(lab[:, 1].var() + lab[:, 2].var()))


def banding_score(region: np.ndarray) -> float:
    """Periodic horizontal intensity bands (screen refresh against the camera's rolling shutter).

    The row profile of log intensity is taken in four vertical strips; only what they share (their
    mean) is kept, so bands that run across the whole width count and local structure does not.
    After removing the linear trend, the score is the highest peak of the profile's spectrum
    (3 cycles up to a period of 12 rows, with its Hann leakage) over the median spectrum beside it: a face's rows give a smooth,
    falling spectrum, banding gives a narrow peak."""
    if region.size == 0 or region.shape[0] < 24 or region.shape[1] < 8:
        return 0.0
    g = np.log1p(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float32))
    if g.shape[0] > 256:
        g = cv2.resize(g, (g.shape[1], 256), interpolation=cv2.INTER_AREA)
    n = g.shape[0]
    prof = np.mean([s.mean(1) for s in np.array_split(g, 4, axis=1)], axis=0)
    t = np.arange(n, dtype=np.float64)
    prof = prof - np.polyval(np.polyfit(t, prof, 1), t)
    spec = np.abs(np.fft.rfft(prof * np.hanning(n))) ** 2
    lo, hi = 3, max(4, n // 12)     # periods >= 12 rows: JPEG 8x8 blocks are not bands
    if hi <= lo + 2:
        return 0.0
    bins = np.arange(lo, hi + 1)
    peak = spec[bins - 1] + spec[bins] + spec[bins + 1]     # Hann leakage: 3 bins
    floor = 3 * _row_medians(spec, bins) + 1e-12
    return float(np.log10(max((peak / floor).max(), 1.0)))


def _row_medians(spec: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """For each bin i, the median of the spectrum beside it (bins max(1, i-9)..max(1, i-2)-1 and
    i+3..i+9, cut at the end), all bins at once: the windows differ in length, so each row is
    sorted with +inf padding and its middle taken from its own count (np.median's arithmetic)."""
    offsets = np.r_[-9:-2, 3:10]
    idx = bins[:, None] + offsets[None, :]
    valid = np.where(offsets < 0, (idx >= 1) & (idx < np.maximum(1, bins - 2)[:, None]), idx < len(spec))
    rows = np.sort(np.where(valid, spec[np.clip(idx, 0, len(spec) - 1)], np.inf), axis=1)
    count = valid.sum(1)
    r = np.arange(len(bins))
    hi_mid = rows[r, count // 2]
    lo_mid = rows[r, np.maximum(count // 2 - 1, 0)]
    return np.where(count % 2 == 1, hi_mid, (lo_mid + hi_mid) / 2)


ARTEFACT_CUES = ("moire", "border", "glare", "gamut", "banding")


def artefact_cues(image: np.ndarray, box) -> dict[str, float]:
    """Every single-image artefact cue of one face, as raw measures (see each function)."""
    face = _box_crop(image, box)
    return {"moire": moire_score(face), "border": float(screen_border_sides(image, box)),
            "glare": glare_score(face), "gamut": gamut_spread(face),
            "banding": banding_score(_box_crop(image, box, 1.2, 1.6))}


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


CHALLENGES = ("blink", "turn_left", "turn_right", "look_up", "look_down")
# kind -> (angle, its sign): turning left raises the landmark yaw, looking up lowers the landmark pitch
HEAD_ACTIONS = {"turn_left": ("yaw", 1), "turn_right": ("yaw", -1), "look_up": ("pitch", -1),
                "look_down": ("pitch", 1)}
HEAD_AXES = {"yaw": ("turn_deg", "turn_back_deg"), "pitch": ("nod_deg", "nod_back_deg")}   # the policy's angles
IDLE, SETTLE, READY, STARTED, RETURNING = "idle", "settle", "ready", "started", "returning"


@dataclass(frozen=True)
class Challenge:
    """The actions asked of the traveller, one prompt at a time: the first `issue_at` seconds into the
    capture window, each next one `gaps[i]` seconds after the previous was answered (the traveller
    rests meanwhile, looking straight at the camera).

    `random` draws each action from blink / turn left / turn right / look up / look down independently,
    at least one a head movement (5**n - 1 equally likely orders; a movement may be asked twice, so a
    replay swaying left and right does not match by alternating), and every time, all from the system
    CSPRNG. A replay acting on its own schedule must then start each asked action inside a human
    reaction window after a prompt it cannot foresee (`LivenessPolicy.challenge_settle_s` ..
    `challenge_onset_s`) and move its head at no other time. Turns are the traveller's own left/right:
    turning left moves the nose to the image's right, which `pose_from_landmarks` reports as a rising
    yaw; looking up moves the nose towards the eye line, a falling pitch. `Challenge("blink", 1.0)` is
    one action."""
    kinds: tuple[str, ...]
    issue_at: float
    gaps: tuple[float, ...] = ()   # rest after answer i before prompt i+1 (missing: the next frame)

    FIRST = (0.5, 1.5)   # the first prompt this far into the window, uniform
    GAP = (0.3, 1.0)     # rest between an answer and the next prompt, uniform

    def __post_init__(self):
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        if not kinds or any(k not in CHALLENGES for k in kinds):
            raise ValueError(f"unknown challenge {kinds!r}")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "gaps", tuple(float(g) for g in self.gaps))

    @classmethod
    def random(cls, n: int = 3) -> "Challenge":
        if n < 1:
            raise ValueError("a challenge has at least one action")
        rng = secrets.SystemRandom()
        kinds: list[str] = []
        while not set(kinds) & set(HEAD_ACTIONS):   # never blinks alone: a blink is the weakest answer
            kinds = [rng.choice(CHALLENGES) for _ in range(n)]
        return cls(tuple(kinds), rng.uniform(*cls.FIRST), tuple(rng.uniform(*cls.GAP) for _ in kinds[1:]))

    def gap(self, answered: int) -> float:
        """Rest after the `answered`-th answer (1-based) before the next prompt."""
        return self.gaps[answered - 1] if answered - 1 < len(self.gaps) else 0.0

    @staticmethod
    def fixed_pattern_chance(n: int) -> float:
        """The share of random `n`-action challenges whose order a replay on a fixed schedule can
        match at all, before timing. People blink by themselves, so a blink is never refused and a
        replay blinking every few tenths of a second meets any blink request: its head movements alone
        must fit, and a schedule of k of them fits the C(n, k) orders that ask those movements at some
        k of the n steps and blinks at the others, of 5**n - 1. Each of its movements must then also
        start within the onset window of a prompt it cannot foresee; `bench-pad-seq` measures how
        often it does."""
        return max(math.comb(n, k) for k in range(1, n + 1)) / Challenge.orders(n)

    @staticmethod
    def orders(n: int) -> int:
        """How many `n`-action challenges `random` draws from, equally likely (all but blinks alone)."""
        return len(CHALLENGES) ** n - 1

    @staticmethod
    def guidance_code(kind: str) -> str:
        return f"challenge_{kind}"


@dataclass
class FrameCues:
    model: float | None          # PadModels p(live) of the frame; None when not run on this frame
    landmarks: np.ndarray = field(repr=False)   # 68 points (or 5) of the frame, for motion
    eyes_open: float | None      # min p(open) of both eyes, None if not measured
    moire: float | None          # None when not run on this frame
    pixels_identical: bool = False  # the frame is a byte copy of the previous one
    border_sides: int | None = 0    # sides of a device/sheet edge around the face (None: not run)
    t: float | None = None          # seconds since the window started (for the challenge)
    yaw: float | None = None        # head yaw in degrees (for the turn challenge)
    pitch: float | None = None      # head pitch in degrees, positive looking down (for the nod challenge)
    identity: np.ndarray | None = field(default=None, repr=False)  # the frame's face embedding (personal
                                                                    # data: never in a repr), where computed


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
    challenge: bool = False          # ask random actions (blink, turns, nods) in the capture loop
    challenge_actions: int = 3       # how many (at least one a head movement)
    challenge_response_s: float = 3.0  # each action must be answered (back at rest) this soon after its prompt
    challenge_settle_s: float = 0.2  # rest (eyes open, head at its baseline) seen this long after a prompt first
    challenge_onset_s: float = 1.7   # ... and started by then (a reaction of 1.5 s plus display and frame latency)
    turn_deg: float = 12.0           # yaw change from the pre-challenge baseline that answers a turn
    turn_back_deg: float = 6.0       # ... and back within this of the baseline ends it
    nod_deg: float = 10.0            # pitch change that answers a look up/down (README: measured on the rendering)
    nod_back_deg: float = 6.0        # ... and back within this of the baseline ends it
    cross_axis_factor: float = 2.0   # during an asked turn (nod) a nod (turn) must reach this many times its angle to lose
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
        self._before: dict[str, list[float]] = {a: [] for a in HEAD_AXES}   # head angles before the first prompt
        self.steps_met = 0               # actions of the challenge answered so far
        self.prompted_at: float | None = None   # when the current action was shown
        self.answered_at: float | None = None   # when the last action was answered (the rest gap starts)
        self.challenge_wrong = False     # an action not asked (`_unasked`)
        self._why: str | None = None     # 'onset_early' / 'onset_late' when timing lost the challenge
        self._flat: str | None = None    # 'turn_not_3d' / 'nod_not_3d': an asked movement reached its angle
                                         # as a flat tilt
        self._last_t: float | None = None
        self._state = IDLE               # the current action's place in `_add_challenge`
        self._rest_since = 0.0           # the current prompt or the last frame not at rest since
        self._rest_landmarks: np.ndarray | None = None
        self._identity: list[np.ndarray] = []

    @property
    def challenge_met(self) -> bool:
        return self.challenge is not None and self.steps_met == len(self.challenge.kinds)

    @property
    def current_kind(self) -> str | None:
        """The action asked now (or next), None when there is none or all were answered."""
        c = self.challenge
        return None if c is None or self.challenge_met else c.kinds[self.steps_met]

    @property
    def challenge_failed(self) -> bool:
        """Lost for good: an action not asked, or the current action did not start within its onset
        window or was not over within its response window."""
        p, t = self.prompted_at, self._last_t
        late = p is not None and t is not None and t > self._deadline()
        return self.challenge is not None and not self.challenge_met and (self.challenge_wrong or late)

    def _deadline(self) -> float:
        c = self.policy
        onset = min(c.challenge_onset_s, c.challenge_response_s)
        return self.prompted_at + (onset if self._state in (SETTLE, READY) else c.challenge_response_s)

    def prompt(self, t: float) -> None:
        """The current action is shown with the frame of time `t` (the first at `issue_at` or later,
        each next one `Challenge.gap` after the previous answer): answers count from the next frame."""
        if self.prompted_at is None:
            self.prompted_at = self._rest_since = t
            self._state = SETTLE

    def _head(self, cues: FrameCues) -> dict[str, float | None]:
        """Each head angle's change from its baseline: the median before the first prompt (or the
        first frame that had one, if none did before). None where the frame has no measure."""
        out: dict[str, float | None] = {}
        for axis, before in self._before.items():
            v = getattr(cues, axis)
            v = v if v is None or math.isfinite(v) else None   # a NaN would poison the baseline's median
            if self.steps_met == 0 and v is not None and (self.prompted_at is None or cues.t <= self.prompted_at
                                                          or not before):
                before.append(v)
            out[axis] = None if v is None or not before else v - float(np.median(before))
        return out

    def _beyond(self, head: dict[str, float | None], moving: str | None = None) -> set[str]:
        """The head actions this frame shows at full angle (`HEAD_ACTIONS`' thresholds). While the
        head is on its way along the asked axis `moving` (past its back angle: `_signals`' start),
        the other axis needs `cross_axis_factor` times its angle: a real turn carries some pitch,
        and the five-point pitch reads about 6 degrees on a rendered 20 degree turn."""
        p = self.policy
        return {k for k, (axis, sign) in HEAD_ACTIONS.items()
                if head[axis] is not None and sign * head[axis] >= getattr(p, HEAD_AXES[axis][0]) * (
                    p.cross_axis_factor if moving not in (None, axis) else 1.0)}

    def _unasked(self, kind: str, beyond: set[str], resting: bool) -> str | None:
        """The one place that loses the challenge: a head action at full angle that nobody asked for
        ('' when it is, 'onset_early' when it is the asked one too soon; None when it is not). In
        the rest between actions any is; during a request any other than the asked one (the other
        side, a nod during a turn request or a turn during a nod request, or any while a blink is
        asked); the asked one while the traveller has not yet been seen at rest after its prompt
        is anticipation, not a reply. Before the first prompt, and after the window of the current
        action ran out, nothing is (blinks never are)."""
        if resting:
            return "" if self.steps_met and beyond else None
        if beyond - {kind}:
            return ""
        return "onset_early" if kind in beyond and self._state == SETTLE else None

    def _signals(self, kind: str, cues: FrameCues, head: dict[str, float | None]) -> tuple[bool, bool, bool]:
        """(at rest, started, done) for the asked action on this frame."""
        p = self.policy
        if kind == "blink":
            e = cues.eyes_open
            return e is not None and e > 0.5, e is not None and e <= 0.5, e is not None and e < p.eyes_closed_below
        axis, sign = HEAD_ACTIONS[kind]
        if head[axis] is None:
            return False, False, False
        full, back = (getattr(p, f) for f in HEAD_AXES[axis])
        d = sign * head[axis]
        return abs(d) < back, d >= back, d >= full

    def _add_challenge(self, cues: FrameCues) -> None:
        """One frame of the current action's answer, timed as a person reacting to the prompt.

        Each action goes IDLE (not shown yet: the rest before it) -> SETTLE -> READY -> STARTED ->
        RETURNING -> answered (the next action's IDLE). After its prompt the traveller must first be
        seen at rest for `challenge_settle_s` (SETTLE: eyes open; yaw or pitch, as asked, within its
        back angle of the baseline); then the action must start (leave rest towards it: STARTED)
        within `challenge_onset_s` of the prompt, reach a closed eye or the full angle (`turn_deg`,
        `nod_deg`) to the asked side in 3-D (not one homography of the last rest frame:
        `planar_residuals`; RETURNING), and come back to rest within `challenge_response_s`. A start
        that falls back to rest without reaching the action returns to READY. `_unasked` alone
        decides when a head movement loses the challenge. Blinks outside a blink request are
        ignored: people blink by themselves."""
        c, p, kind = self.challenge, self.policy, self.current_kind
        if kind is None or cues.t is None or self.challenge_wrong:
            return
        self._last_t = cues.t
        if self._state == IDLE:
            due = c.issue_at if self.steps_met == 0 else self.answered_at + c.gap(self.steps_met)
            if cues.t >= due:
                self.prompt(cues.t)
        head = self._head(cues)
        resting = self._state == IDLE or cues.t <= self.prompted_at   # a prompt counts from the next frame
        if not resting and cues.t > self._deadline():   # no onset in time, or not over in time
            self._why = "onset_late" if self._state in (SETTLE, READY) and not self._flat else None
            return
        rest, started, acted = self._signals(kind, cues, head)
        moving = HEAD_ACTIONS[kind][0] if kind in HEAD_ACTIONS and started and not resting else None
        why = self._unasked(kind, self._beyond(head, moving), resting)
        if why is not None:
            self.challenge_wrong, self._why = True, why or self._why
        if why is not None or resting:
            return
        if self._state == SETTLE:   # at rest for challenge_settle_s since the prompt or the last motion
            if rest:
                self._rest_landmarks = cues.landmarks
                if cues.t - self._rest_since >= p.challenge_settle_s:
                    self._state = READY
            else:
                self._rest_since = cues.t
            return
        if self._state == READY:
            if rest:
                self._rest_landmarks = cues.landmarks
            if rest or not started:
                return
            self._state = STARTED
        if acted and self._state == STARTED:
            if kind == "blink" or self._in_depth(cues.landmarks):
                self._state = RETURNING
            else:
                self._flat = "turn_not_3d" if HEAD_ACTIONS[kind][0] == "yaw" else "nod_not_3d"
        elif rest:
            if self._state == RETURNING:   # answered: rest before the next prompt
                self.steps_met += 1
                self.answered_at = cues.t
                self.prompted_at, self._state = None, IDLE
            else:   # a start that never became the action: wait on
                self._state = READY
            self._rest_landmarks = cues.landmarks

    def _in_depth(self, landmarks: np.ndarray) -> bool:
        """The moved face's landmarks show parallax against the last rest frame's (68 points needed)."""
        ref = self._rest_landmarks
        if ref is None or len(ref) < 8 or ref.shape != landmarks.shape:
            return False
        sim, hom = planar_residuals(ref, landmarks)
        return sim >= self.policy.planar_min_motion and hom / sim >= self.policy.planar_ratio

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
            cues["challenge_steps_met"] = float(self.steps_met)
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
            # not answered (yet): never 'live'; once lost or at the end of the window the gate refers
            code = ("challenge_wrong" if self.challenge_wrong else "challenge_timeout"
                    if final or self.challenge_failed else "challenge_pending")
            why = ([f"{code}:{self.current_kind}"] + ([self._flat] if self._flat else [])
                   + ([self._why] if self._why and code != "challenge_pending" else []))
            return LivenessDecision("undetermined", model, why, cues)
        broken = [k for k in ("model", "moire", "motion", "planar") if not math.isfinite(cues[k])]
        if broken:   # a NaN fails every threshold test above and would pass as 'live'
            return LivenessDecision("undetermined", model, [f"cue_not_finite:{k}" for k in broken], cues)
        return LivenessDecision("live", model, [], cues)
