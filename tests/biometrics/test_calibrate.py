"""Error-rate arithmetic, DET drawing and the calibration file."""
from __future__ import annotations

import json

import cv2
import numpy as np

from biometrics.calibrate import (draw_det, eer, pad_rates, rates, threshold_at_fmr, verification_report,
                                  write_calibration)


def test_threshold_at_fmr_allows_floor_fmr_times_n_impostors():
    imp = np.linspace(0.0, 0.99, 1000)  # top scores 0.99, 0.98901, ...
    t = threshold_at_fmr(imp, 0.001)     # 1 impostor may pass
    assert np.sum(imp >= t) == 1
    t = threshold_at_fmr(imp, 0.01)
    assert np.sum(imp >= t) == 10
    small = np.array([0.1, 0.5, 0.3])
    assert np.sum(small >= threshold_at_fmr(small, 0.001)) == 0  # 0.1% of 3 impostors: none


def test_failures_to_acquire_count_as_rejections():
    g = np.array([0.9, 0.8, -np.inf])
    i = np.array([0.1, -np.inf, 0.2])
    fmr, fnmr = rates(g, i, 0.5)
    assert fmr == 0 and abs(fnmr - 1 / 3) < 1e-9
    r = verification_report("x", g, i, fta=2)
    assert abs(r.tar_01 - 2 / 3) < 1e-9 and r.fta == 2


def test_eer_of_separable_and_overlapping_scores():
    assert eer(np.array([0.8, 0.9]), np.array([0.1, 0.2]))[0] == 0
    rng = np.random.default_rng(1)
    g, i = rng.normal(1, 1, 4000), rng.normal(-1, 1, 4000)
    e, t = eer(g, i)
    assert 0.13 < e < 0.19 and abs(t) < 0.15  # Phi(-1) = 0.159


def test_pad_rates_iso_30107_names():
    live, attack = np.array([0.9, 0.7, 0.2]), np.array([0.1, 0.6])
    apcer, bpcer = pad_rates(live, attack, 0.5)
    assert apcer == 0.5 and abs(bpcer - 1 / 3) < 1e-9


def test_det_png_is_written(tmp_path):
    rng = np.random.default_rng(2)
    draw_det({"a": (rng.normal(1, 1, 300), rng.normal(-1, 1, 300))}, tmp_path / "det.png")
    img = cv2.imread(str(tmp_path / "det.png"))
    assert img is not None and img.shape[0] > 400 and (img != 255).any()


def test_calibration_sections_are_merged(tmp_path):
    p = tmp_path / "calibration.json"
    write_calibration(p, "face", {"threshold": 0.5})
    write_calibration(p, "liveness", {"model_threshold": 0.3})
    write_calibration(p, "face", {"threshold": 0.55})
    doc = json.loads(p.read_text())
    assert doc["face"]["threshold"] == 0.55 and doc["liveness"]["model_threshold"] == 0.3
    assert doc["face"]["date"].endswith("Z")
