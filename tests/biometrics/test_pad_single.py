"""Single-image PAD: the artefact cues on generated images, the attack generator, the fusion, the
PadNet crop and model (first-party, loaded from the repo's models/), the data splits, training."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from biometrics.liveness import (TEXTURE_DIM, PadFusion, PadModels, PadNet, PadTexture, artefact_cues, banding_score,
                                 colour_texture, gamut_spread, glare_score, padnet_crop)
from biometrics.models import CHECKOUT, DEFAULT_MANIFEST, ModelError, ModelRegistry
from biometrics.pad_synth import ATTACKS, _lab_gamut, camera, digital_copy, webcam


def skin(seed: int = 0, size: int = 160) -> np.ndarray:
    """A smooth, face-coloured image with some darker features: a stand-in for a face crop."""
    rng = np.random.default_rng(seed)
    base = np.array([120, 150, 200], np.float32)                     # BGR skin tone
    field = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)).astype(np.float32), (0, 0), 12)
    img = base + 400 * field
    for cx, cy in ((0.33, 0.4), (0.67, 0.4), (0.5, 0.75)):           # eyes and mouth
        cv2.ellipse(img, (int(cx * size), int(cy * size)), (size // 10, size // 25), 0, 0, 360, (60, 70, 110), -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_glare_sees_saturated_highlight_blobs_not_hot_pixels():
    face = skin()
    assert glare_score(face) == 0.0
    glossy = face.copy()
    cv2.circle(glossy, (50, 60), 6, (255, 255, 255), -1)
    cv2.ellipse(glossy, (110, 40), (9, 4), 30, 0, 360, (252, 253, 255), -1)
    assert glare_score(glossy) > 0.005
    hot = face.copy()
    rng = np.random.default_rng(1)
    hot[rng.integers(0, 160, 40), rng.integers(0, 160, 40)] = 255   # isolated hot pixels: not glare
    assert glare_score(hot) == 0.0
    assert glare_score(np.zeros((0, 0, 3), np.uint8)) == 0.0


def test_gamut_spread_falls_with_ink_gamut_and_ignores_a_colour_cast():
    rng = np.random.default_rng(2)
    face = skin(2)
    colourful = cv2.add(face, cv2.GaussianBlur(rng.integers(0, 60, face.shape).astype(np.uint8), (0, 0), 6))
    full = gamut_spread(colourful)
    printed = gamut_spread(_lab_gamut(colourful, rng, 0.5, 10, 90))
    assert printed < 0.65 * full
    cast = np.clip(colourful.astype(np.int16) + np.array([25, 0, -15]), 0, 255).astype(np.uint8)
    assert abs(gamut_spread(cast) - full) < 0.2 * full
    grey = cv2.cvtColor(cv2.cvtColor(colourful, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert gamut_spread(grey) < 0.05 * full


def test_banding_sees_periodic_horizontal_bands_only():
    face = skin(3, 200).astype(np.float32)
    rows = np.arange(200, dtype=np.float32)[:, None, None]
    plain = banding_score(face.astype(np.uint8))
    bands = banding_score(np.clip(face * (1 + 0.06 * np.sin(2 * np.pi * rows / 30)), 0, 255).astype(np.uint8))
    cols = np.arange(200, dtype=np.float32)[None, :, None]
    vertical = banding_score(np.clip(face * (1 + 0.06 * np.sin(2 * np.pi * cols / 30)), 0, 255).astype(np.uint8))
    assert bands > plain + 0.3
    assert vertical < plain + 0.1
    assert banding_score(np.zeros((10, 10, 3), np.uint8)) == 0.0


def test_artefact_cues_of_one_face_in_a_frame():
    frame = np.full((240, 320, 3), 90, np.uint8)
    frame[40:200, 80:240] = skin(4)
    cues = artefact_cues(frame, (90, 50, 140, 140))
    assert set(cues) == {"moire", "border", "glare", "gamut", "banding"}
    assert all(np.isfinite(v) for v in cues.values())


def test_camera_is_seeded_and_a_simulated_print_compresses_the_gamut():
    face = cv2.resize(skin(5), (250, 250))
    c = camera(face, np.random.default_rng(3))
    assert c.shape == face.shape and np.array_equal(c, camera(face, np.random.default_rng(3)))
    box = (60, 60, 130, 130)
    live = gamut_spread(face[60:190, 60:190])
    printed = np.median([artefact_cues(ATTACKS["print"](face, np.random.default_rng(s)), box)["gamut"]
                         for s in range(8)])
    assert printed < live


def test_fusion_fits_weighted_logistic_and_round_trips():
    rng = np.random.default_rng(0)
    live = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    X = np.c_[np.where(live, 1.0, -1.0) + rng.normal(0, 0.7, 600),   # informative, live high
              -np.where(live, 0.3, 0.9) + rng.normal(0, 0.3, 600),   # informative, live high (less negative)
              rng.normal(0, 1, 600)]                                 # noise
    f = PadFusion.fit(("a", "b", "c"), X, live, np.ones(600))
    assert f.weights[0] > 0 and f.weights[1] > 0 and abs(f.weights[2]) < 0.3 * f.weights[0]
    s = np.array([f.score(dict(zip("abc", x))) for x in X])
    assert s[live].mean() > 0.8 and s[~live].mean() < 0.2
    g = PadFusion.from_record(json.loads(json.dumps(f.as_record())))
    assert abs(g.score({"a": 0.5, "b": -0.5, "c": 0.0}) - f.score({"a": 0.5, "b": -0.5, "c": 0.0})) < 1e-5


def test_third_party_score_is_a_weighted_input_not_a_veto():
    """A third-party model that calls a live face an attack lowers the fused score by its weight;
    it cannot pull a face that every other input calls live below the threshold on its own."""
    f = PadFusion(("a", "thirdparty"), np.zeros(2), np.ones(2), np.array([2.0, 0.5]), 0.0)
    assert f.score({"a": 2.0, "thirdparty": 0.008}) > 0.95
    assert f.score({"a": 2.0, "thirdparty": 0.008}) < f.score({"a": 2.0, "thirdparty": 0.9})
    assert "veto" not in f.as_record()


def test_simulated_attacks_come_strong_and_mild_and_webcam_capture_is_seeded():
    face = cv2.resize(skin(7), (250, 250))
    for gen in ATTACKS.values():
        strong = gen(face, np.random.default_rng(4))
        mild = gen(face, np.random.default_rng(4), mild=True)
        assert strong.shape == mild.shape == face.shape
        # a mild re-presentation departs less from the clean photo than a strong one
        assert np.abs(mild.astype(int) - face).mean() < np.abs(strong.astype(int) - face).mean()
    w = webcam(face, np.random.default_rng(5))
    assert np.array_equal(w, webcam(face, np.random.default_rng(5))) and not np.array_equal(w, face)
    flat = np.full((200, 200, 3), 140, np.uint8)     # the clean copy adds no noise; the webcam does
    assert digital_copy(flat, np.random.default_rng(6))[60:140, 60:140].std() < 0.5
    assert webcam(flat, np.random.default_rng(6))[60:140, 60:140].std() > 1.0


def test_padnet_crop_mirrors_outside_the_frame():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :50] = 200
    c = padnet_crop(img, (0, 0, 100, 100))
    assert c.shape == (96, 96, 3) and c.dtype == np.uint8
    assert (c[:, :8] > 150).all() and (c[:, -8:] < 50).all()        # mirrored, no flat fill at the sides
    assert not padnet_crop(img, (500, 500, 10, 10)).any()


def test_padnet_is_first_party_and_pinned():
    reg = ModelRegistry(models_dir="/nonexistent")                   # not looked up in the model directory
    rec = json.loads((CHECKOUT / "models" / "padnet.json").read_text())
    for role, r in (("pad_padnet", rec), ("pad_texture", rec["texture"])):
        e = reg.entry(role)
        assert e.location == "repo" and reg.path(role) == CHECKOUT / "models" / e.file
        assert e.bytes < 2_000_000
        reg.verify_all([role])
        assert r["sha256"] == e.sha256 and r["date"]
    assert rec["seed"] is not None
    out = PadNet(reg.session("pad_padnet")).logit(skin(6), (20, 20, 120, 120))
    assert np.isfinite(out)
    assert np.isfinite(PadTexture(reg.session("pad_texture")).logit(skin(6), (20, 20, 120, 120)))


def test_colour_texture_is_a_uniform_lbp_histogram_per_channel():
    flat = np.full((96, 96, 3), 120, np.uint8)
    t = colour_texture(flat)
    assert t.shape == (TEXTURE_DIM,) and t.dtype == np.float32
    blocks = t.reshape(6, 59)
    assert np.allclose((blocks ** 2).sum(1), 1.0)                    # sqrt of histograms that sum to 1
    assert ((blocks == 1.0).sum(1) == 1).all()                       # flat: every pixel code 255, one bin
    dot = flat.copy()
    dot[40, 40] = 250                                                # one pixel above all its neighbours:
    d = colour_texture(dot).reshape(6, 59) ** 2 * 94 * 94            # code 0 there, 255 everywhere else
    v = d[2]                                                         # HSV value channel
    assert sorted(np.round(v[v > 0]).astype(int)) == [1, 94 * 94 - 1]
    rough = colour_texture(skin(3)).reshape(6, 59)
    assert (rough > 0).sum() > (blocks > 0).sum()                    # texture spreads over the bins


def test_altered_or_missing_first_party_model_is_named(tmp_path):
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    entry = next(m for m in doc["models"] if m["role"] == "pad_padnet")
    bad = dict(doc, models=[dict(entry, sha256="0" * 64)])
    (tmp_path / "m.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="padnet.onnx.*does not match the manifest"):
        ModelRegistry(tmp_path, tmp_path / "m.json").session("pad_padnet")
    gone = dict(doc, models=[dict(entry, file="padnet-missing.onnx")])
    (tmp_path / "g.json").write_text(json.dumps(gone))
    with pytest.raises(ModelError, match="padnet-missing.onnx.*first-party.*train-pad"):
        ModelRegistry(tmp_path, tmp_path / "g.json").verify_all()
    (tmp_path / "l.json").write_text(json.dumps(dict(doc, models=[dict(entry, location="cloud")])))
    with pytest.raises(ModelError, match="malformed"):
        ModelRegistry(tmp_path, tmp_path / "l.json")


def test_a_fusion_fitted_for_another_padnet_refuses_to_load():
    stale = PadFusion(("padnet",), np.zeros(1), np.ones(1), np.ones(1), 0.0, padnet_sha256="f" * 64)
    with pytest.raises(ModelError, match="pad_padnet.*calibrate-pad"):
        PadModels([], fusion=stale)
    pin = ModelRegistry().entry("pad_padnet").sha256
    stale = PadFusion(("padnet", "texture"), np.zeros(2), np.ones(2), np.ones(2), 0.0, padnet_sha256=pin,
                      texture_sha256="f" * 64)
    with pytest.raises(ModelError, match="pad_texture.*calibrate-pad"):
        PadModels([], fusion=stale)


def test_a_fusion_runs_only_the_models_it_was_fitted_with():
    """`calibrate-pad --features` may leave PadNet or the texture head out: neither is then loaded or run."""
    cues_only = PadFusion(("moire", "gamut"), np.zeros(2), np.ones(2), np.array([-1.0, 1.0]), 0.0)
    pad = PadModels([], fusion=cues_only)
    assert pad.padnet is None and pad.texture is None
    img = skin(2, 240)
    assert set(pad.parts(img, (60, 60, 120, 120))) == {"cues"}
    p, f = pad.assess(img, (60, 60, 120, 120))
    assert p == pytest.approx(cues_only.score(f)) and 0.0 < p < 1.0


def test_repository_calibration_matches_the_shipped_padnet():
    cal = json.loads((CHECKOUT / "models" / "calibration.json").read_text())["liveness"]
    fusion = PadFusion.from_record(cal["fusion"])
    assert 0.0 < cal["model_threshold"] < 1.0
    if "padnet" in fusion.features:
        PadModels([], fusion=fusion)          # raises if the pinned file is not the one it was fitted with
