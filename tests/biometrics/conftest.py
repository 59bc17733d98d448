"""Fixtures for the biometrics tests."""
from __future__ import annotations

import pytest

from bio_tiny_onnx import identity_model, write_manifest


@pytest.fixture
def tiny_identity(tmp_path):
    return tmp_path, write_manifest(tmp_path, {"toy": ("toy.onnx", identity_model())})
