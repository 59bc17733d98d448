"""Face embedding (Faceplugin mfn512, the default recognizer) and cosine comparison."""
from __future__ import annotations

import numpy as np


class Recognizer:
    """112x112 aligned BGR crop -> L2-normalised 512-d embedding. Input (v - 127) / 128, MODELS.md §3.4."""

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        x = ((aligned.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        v = self.session.run(None, {self._input: np.ascontiguousarray(x)})[0].reshape(-1)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two L2-normalised embeddings; higher = more alike."""
    return float(np.dot(a, b))
