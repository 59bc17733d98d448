"""Simulated presentation attacks from bona fide face images, for training and held-out testing.

`print_attack` imitates a printed photo filmed by the gate camera (halftone, reduced gamut, paper
texture, blur, glare, perspective, visible sheet edges); `replay_attack` a screen replay (pixel
grid and moiré, refresh banding, backlight cast, bezel). Every draw comes from the generator
passed in, so a seed names an attack set exactly and held-out sets differ by seed.
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


def print_attack(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BGR uint8 -> the same face as a printed photo re-captured by a webcam."""
    x = img.astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = mean + (x - mean) * rng.uniform(0.55, 0.85)                  # ink gamut: less saturation
    x = 0.08 + x * rng.uniform(0.75, 0.9)                            # paper white, ink black
    period = rng.uniform(2.5, 4.5)                                    # halftone screen, rotated
    yy, xx = np.mgrid[:x.shape[0], :x.shape[1]].astype(np.float32)
    a = rng.uniform(0, np.pi)
    dots = np.cos(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period) * \
        np.cos(2 * np.pi * (-xx * np.sin(a) + yy * np.cos(a)) / period)
    x = x + rng.uniform(0.03, 0.08) * dots[..., None]
    x = x + rng.normal(0, rng.uniform(0.01, 0.03), x.shape[:2])[..., None]   # paper grain
    gx, gy = rng.uniform(0, x.shape[1]), rng.uniform(0, x.shape[0])         # glossy glare spot
    r = rng.uniform(0.15, 0.4) * x.shape[1]
    x = x + rng.uniform(0.0, 0.35) * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * r * r))[..., None]
    out = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    k = int(rng.choice([1, 3, 5]))
    if k > 1:
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < 0.7:
        out = _framed(out, rng, (235, 235, 235), rng.uniform(0.08, 0.18))
    return _perspective(out, rng, 0.06, (128, 128, 128))


def replay_attack(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BGR uint8 -> the same face shown on a phone/monitor and re-captured by a webcam."""
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    x = x * rng.uniform(0.8, 1.0) + rng.uniform(0.05, 0.2)                   # backlight lifts blacks
    x[..., 0] += rng.uniform(0.0, 0.12)                                        # blue cast (BGR)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    pitch = rng.uniform(2.0, 3.2)                                              # pixel grid beating
    beat = 1.0 / pitch - 1.0 / rng.uniform(2.2, 3.5)                           # with the sensor = moiré
    a = rng.uniform(-0.3, 0.3)
    grid = np.cos(2 * np.pi * xx / pitch) * np.cos(2 * np.pi * yy / pitch)
    moire = np.cos(2 * np.pi * beat * (xx * np.cos(a) + yy * np.sin(a)))
    x = x * (1 + rng.uniform(0.04, 0.1) * grid[..., None] + rng.uniform(0.02, 0.08) * moire[..., None])
    band = np.sin(2 * np.pi * yy / rng.uniform(h / 6, h / 2) + rng.uniform(0, 2 * np.pi))
    x = x * (1 + rng.uniform(0.02, 0.08) * band[..., None])                   # refresh banding
    out = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.6:
        out = _framed(out, rng, (15, 15, 15), rng.uniform(0.08, 0.2))          # bezel
    return _perspective(out, rng, 0.04, (40, 40, 40))


ATTACKS = {"print": print_attack, "replay": replay_attack}
