"""YuNet output decoding, NMS, letterbox mapping, primary-face choice (tiny graphs, no real model)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from biometrics.detect import Face, YuNetDetector, competing_faces, decode, letterbox, nms, primary_face

from bio_tiny_onnx import constant_model


def empty_outputs(score_logit: float = 0.0) -> dict[str, np.ndarray]:
    out = {}
    for s in (8, 16, 32):
        n = (640 // s) ** 2
        out[f"cls_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, n, 10), np.float32)
    return out


def put(out, stride, row, col, cls, obj, bbox, kps):
    i = row * (640 // stride) + col
    out[f"cls_{stride}"][0, i, 0] = cls
    out[f"obj_{stride}"][0, i, 0] = obj
    out[f"bbox_{stride}"][0, i] = bbox
    out[f"kps_{stride}"][0, i] = kps


def test_decode_one_cell_by_hand():
    out = empty_outputs()
    kps = [0.1, 0.2, 0.9, 0.2, 0.5, 0.5, 0.2, 0.8, 0.8, 0.8]
    put(out, 16, row=10, col=20, cls=0.81, obj=1.0, bbox=[0.5, 0.25, np.log(4.0), np.log(5.0)], kps=kps)
    boxes, scores, pts = decode(out, 0.6)
    assert scores.shape == (1,) and abs(scores[0] - 0.9) < 1e-6  # sqrt(0.81 * 1)
    cx, cy, w, h = (20 + 0.5) * 16, (10 + 0.25) * 16, 64.0, 80.0
    assert np.allclose(boxes[0], [cx - w / 2, cy - h / 2, w, h])
    assert np.allclose(pts[0, 0], [(20 + 0.1) * 16, (10 + 0.2) * 16])
    assert np.allclose(pts[0, 4], [(20 + 0.8) * 16, (10 + 0.8) * 16])


def test_decode_threshold_and_clipping():
    out = empty_outputs()
    put(out, 8, 0, 0, cls=0.3, obj=0.3, bbox=[0, 0, 0, 0], kps=[0] * 10)   # score 0.3: dropped
    put(out, 32, 1, 1, cls=1.5, obj=1.0, bbox=[0, 0, 0, 0], kps=[0] * 10)  # clipped to 1
    boxes, scores, _ = decode(out, 0.6)
    assert len(scores) == 1 and scores[0] == 1.0


def test_nms_keeps_best_of_overlapping_and_separate_faces():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 100, 100], [300, 300, 50, 50]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.3) == [1, 2]
    assert nms(boxes, scores, 0.99) == [1, 0, 2]


def test_letterbox_keeps_aspect_and_pads():
    img = np.full((480, 1280, 3), 200, np.uint8)
    canvas, scale = letterbox(img)
    assert canvas.shape == (640, 640, 3) and scale == 0.5
    assert canvas[:240].min() == 200 and canvas[241:].max() == 0


def test_detector_maps_back_to_frame_coordinates():
    out = empty_outputs()
    put(out, 16, 10, 20, 1.0, 1.0, [0.5, 0.5, np.log(4), np.log(4)], [0.25] * 10)
    put(out, 16, 10, 21, 0.95, 0.95, [0.5, 0.5, np.log(4), np.log(4)], [0.25] * 10)  # duplicate -> NMS
    sess = ort.InferenceSession(constant_model({"input": [1, 3, 640, 640]}, out),
                                providers=["CPUExecutionProvider"])
    det = YuNetDetector(sess)
    frame = np.zeros((960, 1280, 3), np.uint8)  # scale 0.5 onto the 640 square
    faces = det.detect(frame)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert np.allclose([x, y, w, h], [2 * (20.5 * 16 - 32), 2 * (10.5 * 16 - 32), 128, 128], atol=1e-3)
    assert np.allclose(faces[0].landmarks[0], [2 * 20.25 * 16, 2 * 10.25 * 16])


def test_primary_face_prefers_large_central_and_counts_competitors():
    lm = np.zeros((5, 2), np.float32)
    centre = Face((270, 190, 100, 100), lm, 0.7)
    edge = Face((0, 0, 110, 110), lm, 0.95)
    small = Face((500, 400, 30, 30), lm, 0.9)
    faces = [edge, small, centre]
    assert primary_face(faces, (480, 640, 3)) is centre
    assert competing_faces(faces, centre) == 1
    assert primary_face([], (480, 640, 3)) is None
