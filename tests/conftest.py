"""Fixtures every test package shares: where the real models and the dev data are."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EGATE_SHARED_DIR", CHECKOUT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory):
    """One private pcscd with the vpcd reader for the whole test process (pcsc-lite reads its
    socket name once per process, so a second daemon would never be seen); skips with the
    reason when pcscd/vpcd are not installed."""
    from cardreader.sim.vpcd import PrivatePcscd
    why = PrivatePcscd.unavailable()
    if why:
        pytest.skip(why)
    with PrivatePcscd(tmp_path_factory.mktemp("pcscd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = Path(os.environ.get("EGATE_MODELS_DIR", SHARED / "models"))
    if not (d / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip(f"real face models not found in {d} (set EGATE_MODELS_DIR)")
    return d


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    d = SHARED / "data" / "demo"
    if not d.is_dir():
        pytest.skip(f"demo traveller data not found in {d}")
    return d
