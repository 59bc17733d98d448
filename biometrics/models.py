"""Model registry: every ONNX file is pinned by sha256 in `models/manifest.json`.

Third-party files live in the configurable model directory; our own (first-party) models carry
`"location": "repo"` and are loaded from this checkout's models/ directory, whatever the setting.

The bytes are read once, hashed, and the onnxruntime session is built from those same bytes, so
the file that was checked is the file that runs (no check-then-load race). Hashes are cached per
process, keyed by path, size and mtime, because the gate, the CLI and the tests reload often.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = CHECKOUT / "models" / "manifest.json"
DEFAULT_CALIBRATION = CHECKOUT / "models" / "calibration.json"


def default_models_dir() -> Path:
    """`EGATE_MODELS_DIR`, else `../shared/models` beside the checkout."""
    env = os.environ.get("EGATE_MODELS_DIR")
    if env:
        return Path(env)
    shared = Path(os.environ.get("EGATE_SHARED_DIR", CHECKOUT.parent / "shared"))
    return shared / "models"


class ModelError(Exception):
    """A model file is missing, altered, or not listed: the pipeline must not start."""


@dataclass(frozen=True)
class ModelEntry:
    file: str
    role: str
    sha256: str
    bytes: int
    location: str = "models_dir"   # 'models_dir' (configurable, third-party) | 'repo' (models/ here)


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _read_verified(path: Path, entry: ModelEntry) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        origin = ("first-party, shipped in the repository's models/: rebuild it with `python -m biometrics train-pad`"
                  if entry.location == "repo" else "third-party, from the model directory (EGATE_MODELS_DIR)")
        raise ModelError(f"model file {entry.file!r} (role {entry.role}, {origin}) not found: "
                         f"looked for {path}") from None
    except OSError as e:
        raise ModelError(f"model file {entry.file!r} cannot be read at {path}: {e.strerror}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        digest = hashlib.sha256(data).hexdigest()
        _HASH_CACHE[key] = digest
    if digest != entry.sha256.lower():
        raise ModelError(
            f"model file {entry.file!r} at {path} does not match the manifest: "
            f"sha256 {digest} != pinned {entry.sha256} (altered or wrong version)")
    return data


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU-tuned options: all graph optimisations, sequential execution, no thread spinning.

    One intra-op thread by default (`EGATE_ORT_THREADS` overrides): these models are small, and
    on the gate's 2-core CPU, shared with the web app and the card reader, a second spinning
    thread made YuNet 3x slower (37 ms against 12.7 ms measured under load), not faster."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or int(os.environ.get("EGATE_ORT_THREADS", "1"))
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class ModelRegistry:
    """Resolves roles (detector, recognizer, ...) to verified onnxruntime sessions."""

    def __init__(self, models_dir: Path | str | None = None, manifest: Path | str | None = None,
                 threads: int | None = None):
        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        self.manifest_path = Path(manifest) if manifest is not None else DEFAULT_MANIFEST
        self._threads = threads
        try:
            doc = json.loads(self.manifest_path.read_text())
            self.entries = {m["role"]: ModelEntry(m["file"], m["role"], m["sha256"], int(m["bytes"]),
                                                  m.get("location", "models_dir")) for m in doc["models"]}
            bad = [e.file for e in self.entries.values() if e.location not in ("models_dir", "repo")]
            if bad:
                raise ValueError(f"unknown location for {bad}")
        except FileNotFoundError:
            raise ModelError(f"model manifest not found: {self.manifest_path}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"model manifest {self.manifest_path} is malformed: {e!r}") from None
        self._sessions: dict[str, ort.InferenceSession] = {}

    def has(self, role: str) -> bool:
        return role in self.entries

    def entry(self, role: str) -> ModelEntry:
        try:
            return self.entries[role]
        except KeyError:
            raise ModelError(f"no model with role {role!r} in {self.manifest_path}") from None

    def path(self, role: str) -> Path:
        e = self.entry(role)
        return (CHECKOUT / "models" if e.location == "repo" else self.models_dir) / e.file

    def session(self, role: str, rewrite: Callable[[bytes], bytes] | None = None) -> ort.InferenceSession:
        """The role's session, built once. `rewrite` edits the verified bytes' declarations before
        the first build (e.g. `detect.dynamic_input`); the hash is always of the file as pinned."""
        if role not in self._sessions:
            e = self.entry(role)
            data = _read_verified(self.path(role), e)
            try:
                if rewrite is not None:
                    data = rewrite(data)
                self._sessions[role] = ort.InferenceSession(
                    data, sess_options=session_options(self._threads), providers=["CPUExecutionProvider"])
            except Exception as ex:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ModelError(f"model file {e.file!r} at {self.path(role)} cannot be loaded: {ex}") from None
        return self._sessions[role]

    def verify_all(self, roles: list[str] | None = None) -> None:
        """Check every listed file (or the given roles) up front so the gate fails at start-up."""
        for role in roles or list(self.entries):
            _read_verified(self.path(role), self.entry(role))
