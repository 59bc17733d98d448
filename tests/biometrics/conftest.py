"""Fixtures for the biometrics tests."""
from __future__ import annotations

import pytest

from bio_tiny_onnx import identity_model, write_manifest


@pytest.fixture
def tiny_identity(tmp_path):
    return tmp_path, write_manifest(tmp_path, {"toy": ("toy.onnx", identity_model())})


@pytest.fixture(scope="module")
def verifier(models_dir):
    """The default FaceVerifier, one per test module (test_lanes.py overrides it with its own)."""
    from biometrics.pipeline import FaceVerifier
    return FaceVerifier.load(models_dir)
