"""PadNet data splits (by person and by generator seed), a short training run (needs torch, the
`train` extra; skipped without it) and the colour-texture head (numpy + onnx only)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from biometrics.liveness import PADNET_SIZE
from biometrics.pad_train import (PAD_PEOPLE, PAD_PERSONS, SPLITS, PadSet, _auc, _sources, cv_folds,
                                  identity_split, padnet_logits)


def test_splits_share_no_person_and_no_generator_seed(shared_dir):
    data = shared_dir / "data"
    if not (data / "pad-dev" / "labels.csv").is_file():
        pytest.skip(f"dev data not found in {data}")
    groups, seeds = {}, {}
    for split in SPLITS:
        rows = [r for piece in [f"lfw:{split}"] + [f"pad:{p}" for p in PAD_PERSONS[split]]
                for r in _sources(data, piece, 40)]
        groups[split] = {r[2] for r in rows}
        seeds[split] = {r[3] for r in rows if r[3] is not None}
        assert {r[0] for r in rows} == {"bona_fide", "replay_real", "print_sim", "replay_sim"}
        assert all(identity_split(g[4:]) == split for g in groups[split] if g.startswith("lfw:"))
        assert {g[4:] for g in groups[split] if g.startswith("pad:")} == set(PAD_PERSONS[split])
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not groups[a] & groups[b] and not seeds[a] & seeds[b]
    per_person = [{r[3] for r in _sources(data, f"pad:{p}", 0) if r[3] is not None} for p in PAD_PEOPLE]
    assert all(not a & b for i, a in enumerate(per_person) for b in per_person[i + 1:])


def test_cross_validation_folds_hold_each_person_out_of_training_and_calibration():
    folds = cv_folds()
    assert sorted(f[0] for f in folds) == sorted(PAD_PEOPLE)
    for held, cal, trainers in folds:
        assert held != cal and held not in trainers and cal not in trainers
        assert len(trainers) == len(PAD_PEOPLE) - 2


def test_identity_split_is_stable_and_roughly_70_15_15():
    names = [f"Person_{i}" for i in range(4000)]
    share = {s: np.mean([identity_split(n) == s for n in names]) for s in SPLITS}
    assert abs(share["train"] - 0.7) < 0.03 and abs(share["test"] - 0.15) < 0.03
    assert identity_split("Person_7") == identity_split("Person_7")


def test_auc_counts_ties_half():
    assert _auc(np.array([1.0, 2.0]), np.array([0.0])) == 1.0
    assert _auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_training_exports_an_onnx_that_matches_torch(tmp_path):
    pytest.importorskip("torch")
    import onnxruntime as ort

    from biometrics.pad_train import train
    rng = np.random.default_rng(0)
    n = 24
    crops = rng.integers(60, 200, (n, PADNET_SIZE, PADNET_SIZE, 3)).astype(np.uint8)
    species = np.array(["bona_fide", "print_sim", "replay_sim"] * (n // 3))
    crops[species != "bona_fide", ::3] = 255          # attacks carry stripes: learnable
    s = PadSet(crops, {}, np.full(n, np.nan), species, np.full(n, "faces-dev"), np.full(n, "lfw:x"), {}, np.zeros(n, int))
    out = tmp_path / "p.onnx"
    info = train(s, s, out, epochs=1, seed=0, threads=1)   # raises if ONNX and torch disagree
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, PADNET_SIZE, PADNET_SIZE]
    assert np.isfinite(padnet_logits(sess, crops[:4])).all()
    assert info["epochs"] == 1 and len(info["log"]) == 1 and info["parameters"] > 1000


def test_texture_head_exports_one_gemm_that_matches_the_fit(tmp_path):
    import onnxruntime as ort

    from biometrics.liveness import PadTexture, colour_texture
    from biometrics.pad_train import texture_logits, train_texture
    rng = np.random.default_rng(1)
    n = 60
    smooth = np.array([cv2.GaussianBlur(rng.integers(80, 180, (PADNET_SIZE, PADNET_SIZE, 3)).astype(np.uint8), (0, 0), 3)
                       for _ in range(n)])
    species = np.array(["bona_fide", "print_sim", "replay_sim"] * (n // 3))
    crops = smooth.copy()
    att = species != "bona_fide"                                # attacks carry a fine pixel grid: learnable
    crops[att, ::2, ::2] = np.clip(crops[att, ::2, ::2].astype(int) + 40, 0, 255).astype(np.uint8)
    s = PadSet(crops, {}, np.full(n, np.nan), species, np.full(n, "faces-dev"), np.full(n, "lfw:x"), {}, np.zeros(n, int))
    out = tmp_path / "t.onnx"
    info = train_texture(s, out)                                # raises if ONNX and the fit disagree
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, len(colour_texture(crops[0]))]
    z = texture_logits(sess, crops)
    assert z[~att].min() > 0 > z[att].max()
    assert PadTexture(sess).logit_of(crops[0]) == pytest.approx(z[0], abs=1e-6)
    assert info["sha256"] and info["bytes"] < 10_000
