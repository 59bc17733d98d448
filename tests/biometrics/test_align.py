"""Similarity alignment onto the ArcFace template."""
from __future__ import annotations

import numpy as np

from biometrics.align import ARCFACE_112, align, five_from_68, similarity_transform


def test_umeyama_recovers_a_known_similarity():
    ang, s, t = np.radians(17), 2.5, np.array([40.0, -12.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = ARCFACE_112.astype(np.float64)
    dst = (s * src @ r.T) + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-4) and np.allclose(m[:, 2], t, atol=1e-3)


def test_no_reflection_even_for_mirrored_points():
    src = ARCFACE_112[[1, 0, 2, 4, 3]]  # eyes swapped: the best similarity must not flip
    m = similarity_transform(src, ARCFACE_112)
    assert np.linalg.det(m[:, :2]) > 0


def test_align_brings_landmarks_to_the_template():
    img = np.zeros((400, 400, 3), np.uint8)
    pts = ARCFACE_112 * 2.0 + 100  # a face twice as large, shifted
    for i, (x, y) in enumerate(pts):
        img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 50 * (i + 1)
    out = align(img, pts)
    assert out.shape == (112, 112, 3)
    for i, (x, y) in enumerate(ARCFACE_112):
        assert out[int(round(y)), int(round(x)), 0] > 0


def test_five_from_68_takes_eye_centres_nose_and_mouth_corners():
    p = np.zeros((68, 2), np.float32)
    p[[37, 38, 40, 41]] = [10, 20]
    p[[43, 44, 46, 47]] = [30, 20]
    p[30] = [20, 30]
    p[48], p[60] = [12, 40], [14, 40]
    p[54], p[64] = [28, 40], [26, 40]
    assert np.allclose(five_from_68(p), [[10, 20], [30, 20], [20, 30], [13, 40], [27, 40]])
