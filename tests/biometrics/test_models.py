"""Model registry: sha256 pinning, clear errors naming the file and the place looked in."""
from __future__ import annotations

import json

import numpy as np
import pytest

from biometrics import models
from biometrics.models import ModelError, ModelRegistry


def test_verified_model_loads_and_runs(tiny_identity):
    d, manifest = tiny_identity
    reg = ModelRegistry(d, manifest)
    sess = reg.session("toy")
    x = np.arange(4, dtype=np.float32)[None]
    assert np.array_equal(sess.run(None, {"input": x})[0], x)
    assert reg.session("toy") is sess  # one session per role


def test_missing_file_names_file_and_directory(tiny_identity, tmp_path):
    d, manifest = tiny_identity
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(ModelError) as e:
        ModelRegistry(other, manifest).session("toy")
    assert "toy.onnx" in str(e.value) and str(other) in str(e.value)


def test_altered_file_is_refused(tiny_identity):
    d, manifest = tiny_identity
    data = bytearray((d / "toy.onnx").read_bytes())
    data[-1] ^= 0xFF
    (d / "toy.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="toy.onnx.*does not match the manifest"):
        ModelRegistry(d, manifest).session("toy")
    with pytest.raises(ModelError, match="does not match"):
        ModelRegistry(d, manifest).verify_all()


def test_unknown_role_and_bad_manifest(tiny_identity, tmp_path):
    d, manifest = tiny_identity
    with pytest.raises(ModelError, match="no model with role 'recognizer'"):
        ModelRegistry(d, manifest).session("recognizer")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="malformed"):
        ModelRegistry(d, bad)
    with pytest.raises(ModelError, match="manifest not found"):
        ModelRegistry(d, tmp_path / "none.json")


def test_each_file_hashed_once_per_process(tiny_identity, monkeypatch):
    d, manifest = tiny_identity
    calls = []
    real = models.hashlib.sha256

    def counting(data):
        calls.append(len(data))
        return real(data)

    models._HASH_CACHE.clear()
    monkeypatch.setattr(models.hashlib, "sha256", counting)
    ModelRegistry(d, manifest).verify_all()
    ModelRegistry(d, manifest).session("toy")
    assert len(calls) == 1


def test_repository_manifest_pins_every_role_the_pipeline_uses():
    doc = json.loads(models.DEFAULT_MANIFEST.read_text())
    roles = {m["role"] for m in doc["models"]}
    assert {"detector", "recognizer", "pad_minifasnet_v2", "pad_minifasnet_v1se", "landmarks68", "eye_state"} <= roles
    assert all(len(m["sha256"]) == 64 for m in doc["models"])
