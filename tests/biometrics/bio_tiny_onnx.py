"""Tiny ONNX graphs built in the tests, so decoding and manifest code runs without the real model files."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the test extra's `onnx` package builds the tiny graphs")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def constant_model(inputs: dict[str, list[int]], outputs: dict[str, np.ndarray]) -> bytes:
    """A graph whose outputs are fixed tensors (the input is accepted and ignored)."""
    nodes, outs = [], []
    for name, arr in outputs.items():
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(arr.astype(np.float32), name + "_v")))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    g = helper.make_graph(nodes, "tiny", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def identity_model() -> bytes:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return m.SerializeToString()


def write_manifest(d: Path, files: dict[str, tuple[str, bytes]]) -> Path:
    """files: role -> (file name, bytes); writes the files and a manifest pinning them."""
    models = []
    for role, (name, data) in files.items():
        (d / name).write_bytes(data)
        models.append({"file": name, "role": role, "sha256": hashlib.sha256(data).hexdigest(),
                       "bytes": len(data)})
    p = d / "manifest.json"
    p.write_text(json.dumps({"models": models}))
    return p
