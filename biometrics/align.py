"""Alignment to the 112x112 ArcFace template, and the 68-point landmark refinement.

The five points (YuNet's, or derived from the 68-point model, MODELS.md §3.3) are mapped onto the
ArcFace template by a least-squares similarity transform (Umeyama 1991): rotation, uniform scale
and shift only, so the face is never sheared.
"""
from __future__ import annotations

import cv2
import numpy as np

ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M minimising sum |M·src_i - dst_i|^2 over similarities (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = (sig * np.diag(e)).sum() / max(var_s, 1e-12)
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def align(image: np.ndarray, points5: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp the face to the ArcFace 112x112 crop (bilinear, black border)."""
    m = similarity_transform(points5, ARCFACE_112 * (size / 112.0))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def square_box(box: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """Square of side = box height around the box centre (the Faceplugin package's rule)."""
    x, y, w, h = box
    return x + w / 2 - h / 2, y, h


class Landmarks68:
    """faceplugin_fr_landmark: 64x64 grey crop of the squared box, v/256 -> 68 relative points."""

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def predict(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x1, y1, side = square_box(box)
        side = max(side, 2.0)
        # crop through an affine warp so boxes overhanging the frame are handled uniformly
        s = 64.0 / side
        m = np.array([[s, 0, -x1 * s], [0, s, -y1 * s]], np.float32)
        crop = cv2.warpAffine(image, m, (64, 64), flags=cv2.INTER_LINEAR, borderValue=0)
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32) / 256.0
        out = self.session.run(None, {self._input: grey[None, None]})[0].reshape(68, 2)
        return (out * side + np.array([x1, y1], np.float32)).astype(np.float32)


def five_from_68(p: np.ndarray) -> np.ndarray:
    """Eye centres from the four eyelid points, nose tip 30, mouth corners mean of outer/inner."""
    return np.stack([p[[37, 38, 40, 41]].mean(0), p[[43, 44, 46, 47]].mean(0), p[30],
                     (p[48] + p[60]) / 2, (p[54] + p[64]) / 2]).astype(np.float32)
