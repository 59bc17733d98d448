"""Simulated presentation attacks from bona fide face images, for training and held-out testing.

`print_attack` imitates a printed photo held to the gate camera: ink gamut compression (chroma and
tone range in Lab), halftone screen, paper fibre texture and tint, defocus, specular glare blobs
and sheen of glossy paper, the sheet's edges in the scene, perspective. `replay_attack` a screen
replay: backlight and white-point cast, RGB sub-pixel grid, moiré beating with the sensor, refresh
banding (periodic horizontal bands), glass reflections, the bezel. `camera` is the gate camera's
own light degradation (resampling, sensor noise, JPEG). `webcam` is a live capture by a gate-class
webcam: white balance and exposure off, soft optics, resampling, shot and chroma noise, JPEG.

Web photos (LFW) are the bona fide faces we have in number, but a clean web photo shown to the
camera is exactly the attack a model must refuse. So bona fide web photos always go through
`webcam`, and attacks come both strong and `mild` (faint halftone or pixel grid, small gamut
loss, no frame) captured by `webcam` or only lightly by `camera`, and as `digital_copy`, the clean
photo itself barely moved (`pad_train._attack`): a clean, noiseless digital photo is an attack, a
face with a webcam's look and no artefact is live.
Every draw comes from the generator passed in, so a seed names an attack set exactly, and held-out
sets differ by seed.
"""
from __future__ import annotations

import cv2
import numpy as np


def _perspective(img: np.ndarray, rng: np.random.Generator, amount: float, fill) -> np.ndarray:
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-amount, amount, (4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h),
                               borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _framed(img: np.ndarray, rng: np.random.Generator, colour, margin: float) -> np.ndarray:
    """The attack medium seen inside a larger scene: the sheet or device edge around the face."""
    h, w = img.shape[:2]
    m = int(margin * min(h, w))
    bg = tuple(int(v) for v in rng.integers(20, 200, 3))
    small = cv2.resize(img, (w - 2 * m, h - 2 * m), interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(small, m // 3, m // 3, m // 3, m // 3, cv2.BORDER_CONSTANT, value=colour)
    out = np.full_like(img, bg)
    o = m - m // 3
    out[o:o + small.shape[0], o:o + small.shape[1]] = small
    return out


def _glare(x: np.ndarray, rng: np.random.Generator, blobs: int, sheen: float) -> np.ndarray:
    """Specular reflections of a light source on gloss or glass: a broad low-saturation sheen plus
    small blobs driven to saturation (white, clipped), as a lamp mirrored in the surface looks."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    gx, gy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.15, 0.4) * w
    x = x + sheen * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * r * r))[..., None]
    for _ in range(blobs):
        bx, by = rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.85) * h
        rx, ry = rng.uniform(0.02, 0.07) * w, rng.uniform(0.015, 0.05) * h
        t = rng.uniform(0, np.pi)
        u, v = (xx - bx) * np.cos(t) + (yy - by) * np.sin(t), -(xx - bx) * np.sin(t) + (yy - by) * np.cos(t)
        x = x + rng.uniform(0.6, 1.2) * np.exp(-((u / rx) ** 2 + (v / ry) ** 2) ** 2)[..., None]
    return x


def _lab_gamut(img: np.ndarray, rng: np.random.Generator, chroma: float, l_lo: float, l_hi: float,
               tint=(0.0, 0.0)) -> np.ndarray:
    """Chroma scaled by `chroma` and lightness squeezed into [l_lo, l_hi] (0..100) in CIE Lab."""
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab[..., 0] = l_lo * 2.55 + lab[..., 0] * (l_hi - l_lo) / 100.0
    lab[..., 1] = 128 + (lab[..., 1] - 128) * chroma + tint[0]
    lab[..., 2] = 128 + (lab[..., 2] - 128) * chroma + tint[1]
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def print_attack(img: np.ndarray, rng: np.random.Generator, mild: bool = False) -> np.ndarray:
    """BGR uint8 -> the same face as a printed photo held to the camera (`mild`: a good print,
    faint halftone and paper, little gamut loss, no sheet edge in view)."""
    h, w = img.shape[:2]
    if mild:
        base = _lab_gamut(img, rng, rng.uniform(0.75, 0.95), rng.uniform(2, 10), rng.uniform(90, 99),
                          (rng.uniform(-1, 1), rng.uniform(0, 3)))
    else:
        base = _lab_gamut(img, rng, rng.uniform(0.45, 0.85), rng.uniform(6, 22), rng.uniform(82, 96),
                          (rng.uniform(-2, 2), rng.uniform(0, 8)))          # ink gamut, warm paper
    x = base.astype(np.float32) / 255.0
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period, a = rng.uniform(2.2, 4.5), rng.uniform(0, np.pi)             # halftone screen, rotated
    dots = np.cos(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period) * \
        np.cos(2 * np.pi * (-xx * np.sin(a) + yy * np.cos(a)) / period)
    ink = rng.uniform(0.0, 0.025) if mild else rng.choice([0.0, rng.uniform(0.02, 0.08)], p=[0.25, 0.75])
    x = x + ink * dots[..., None]
    fibre = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.5))
    paper = rng.uniform(0.003, 0.015) if mild else rng.uniform(0.01, 0.04)
    x = x + paper * fibre[..., None] / (fibre.std() + 1e-6)                    # paper texture
    x = x + rng.normal(0, rng.uniform(0.005, 0.02), (h, w))[..., None]
    x = _glare(x, rng, int(rng.integers(0, 2 if mild else 3)), rng.uniform(0.0, 0.2 if mild else 0.35))
    out = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    k = int(rng.choice([1, 3] if mild else [1, 3, 5]))
    if k > 1:
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < (0.15 if mild else 0.7):
        out = _framed(out, rng, tuple(int(v) for v in rng.integers(215, 250, 3)), rng.uniform(0.08, 0.18))
    return _perspective(out, rng, 0.03 if mild else 0.06, (128, 128, 128))


def replay_attack(img: np.ndarray, rng: np.random.Generator, mild: bool = False) -> np.ndarray:
    """BGR uint8 -> the same face shown on a phone/monitor and filmed by the camera (`mild`: a
    good screen, faint pixel grid and moiré, little backlight lift or banding, no bezel in view)."""
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    if mild:
        x = x * rng.uniform(0.9, 1.0) + rng.uniform(0.0, 0.06)
        x = x * (1 + rng.uniform(-0.04, 0.05, 3)).astype(np.float32)
    else:
        x = x * rng.uniform(0.75, 1.0) + rng.uniform(0.04, 0.2)                   # backlight lifts blacks
        x = x * (1 + rng.uniform(-0.08, 0.12, 3)).astype(np.float32)               # white-point cast
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    pitch = rng.uniform(2.0, 3.4)                                              # pixel grid: black matrix
    grid = np.cos(2 * np.pi * xx / pitch) * np.cos(2 * np.pi * yy / pitch)    # and RGB sub-pixel stripes
    sub = np.cos(2 * np.pi * xx[..., None] / pitch + np.float32([0, 2 * np.pi / 3, 4 * np.pi / 3]))
    beat = 1.0 / pitch - 1.0 / rng.uniform(2.2, 3.6)                           # beating with the sensor
    a = rng.uniform(-0.4, 0.4)
    moire = np.cos(2 * np.pi * beat * (xx * np.cos(a) + yy * np.sin(a)))
    f = 0.3 if mild else 1.0
    x = x * (1 + f * rng.uniform(0.03, 0.1) * grid[..., None] + f * rng.uniform(0.0, 0.06) * sub
             + f * rng.uniform(0.02, 0.08) * moire[..., None])
    band = np.sin(2 * np.pi * yy / rng.uniform(h / 14, h / 3) + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.4:
        band = np.tanh(3 * band)                                               # PWM: harder band edges
    x = x * (1 + f * rng.choice([0.0, rng.uniform(0.02, 0.1)], p=[0.2, 0.8]) * band[..., None])  # refresh banding
    x = _glare(x, rng, int(rng.integers(0, 2)), rng.uniform(0.0, 0.15 if mild else 0.25))   # glass reflection
    out = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng.random() < (0.15 if mild else 0.6):
        out = _framed(out, rng, (15, 15, 15), rng.uniform(0.08, 0.2))          # bezel
    return _perspective(out, rng, 0.03 if mild else 0.04, (40, 40, 40))


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """The image through a JPEG encoder at `quality` (unchanged if it cannot be encoded)."""
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else img


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The capturing camera: resampled (optics/scaler), sensor noise, JPEG at a random quality."""
    h, w = img.shape[:2]
    s = rng.uniform(0.4, 1.0)
    if s < 0.95:
        small = cv2.resize(img, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    noisy = img.astype(np.float32) + rng.normal(0, rng.uniform(0.5, 3.0), img.shape).astype(np.float32)
    img = np.clip(noisy, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        img = _jpeg(img, int(rng.integers(55, 96)))
    return img


def webcam(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A live face captured by a gate-class webcam: white balance and exposure off, soft optics,
    a small sensor resampled, shot and chroma noise, JPEG."""
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    x = x * (1 + rng.uniform(-0.12, 0.12, 3)).astype(np.float32)               # white balance
    x = np.clip(x * rng.uniform(0.7, 1.3), 0, 1) ** rng.uniform(0.8, 1.25)     # exposure, tone curve
    if rng.random() < 0.6:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.3))                # soft optics / focus
    s = rng.uniform(0.35, 0.9)
    x = cv2.resize(cv2.resize(x, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA),
                   (w, h), interpolation=cv2.INTER_LINEAR)
    shot = np.sqrt(np.clip(x, 1e-4, 1)) * rng.normal(0, rng.uniform(0.01, 0.03), (h, w, 1))
    chroma = cv2.GaussianBlur(rng.normal(0, rng.uniform(0.004, 0.015), (h, w, 3)).astype(np.float32), (0, 0), 1.0)
    x = (np.clip(x + shot + chroma, 0, 1) * 255).astype(np.uint8)
    return _jpeg(x, int(rng.integers(50, 91)))


def digital_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean photo presented with no trace of medium or capture (a flawless screen, an injected
    frame): slightly tilted, smaller or not, at most a fine JPEG. No noise is added."""
    h, w = img.shape[:2]
    s = rng.uniform(0.5, 1.0)
    if s < 0.95:
        img = cv2.resize(img, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
    img = _perspective(img, rng, 0.02, (128, 128, 128))
    if rng.random() < 0.5:
        img = _jpeg(img, int(rng.integers(85, 99)))
    return img


ATTACKS = {"print": print_attack, "replay": replay_attack}
