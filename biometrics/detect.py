"""YuNet face detection under onnxruntime, with our own output decoding.

The file declares its input fixed at 1x3x640x640 (BGR, raw 0..255), but every reshape inside is
shape-agnostic, so `dynamic_input` re-declares the input and outputs with free sizes: a frame is
then run at its own aspect (longer side at 640 as before, padded only to a multiple of 32), not letterboxed
onto the square. On a 640x480 camera frame that is a quarter fewer pixels plus the padding copy,
with boxes identical to the square's (the same network at the same scale). A session whose input
stays fixed is letterboxed as before. Decoding follows MODELS.md §1: per stride s in (8, 16, 32),
score = sqrt(cls * obj), centre = (cell + d) * s, size = exp(d) * s, five points = (cell + k) * s;
then score threshold and NMS.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 640
STRIDES = (8, 16, 32)


def dynamic_input(model: bytes) -> bytes:
    """The YuNet graph with free input height/width and free output lengths (see the module doc)."""
    import onnx
    m = onnx.load_from_string(model)
    for v in m.graph.input:
        for i, d in enumerate(v.type.tensor_type.shape.dim[2:]):
            d.dim_param = ("height", "width")[i]
    for v in m.graph.output:
        v.type.tensor_type.shape.dim[1].dim_param = f"{v.name}_n"
    return m.SerializeToString()


@dataclass(frozen=True)
class Face:
    """One detection in frame pixels. `landmarks` rows: right eye, left eye, nose, right mouth,
    left mouth (the subject's right, i.e. the image's left)."""

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # (5, 2) float32
    score: float

    @property
    def inter_eye(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """Scale the longer side to `size`, pad to a square; returns (canvas, scale)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, scale


def fit(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """Scale the longer side to `size` as `letterbox` does (the same network scale, so the same
    boxes), pad right/bottom only to a multiple of 32 (the coarsest stride); returns (canvas, scale)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
    if (ph, pw) == (nh, nw):
        return resized, scale
    return cv2.copyMakeBorder(resized, 0, ph - nh, 0, pw - nw, cv2.BORDER_CONSTANT, value=0), scale


def decode(outputs: dict[str, np.ndarray], score_threshold: float,
           size: int | tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's 12 output tensors -> (boxes Nx4 xywh, scores N, landmarks Nx5x2) above threshold.
    `size` is the network input's side, or its (height, width)."""
    height, width = (size, size) if isinstance(size, int) else size
    boxes, scores, kps = [], [], []
    for s in STRIDES:
        cols = width // s
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        idx = np.nonzero(score >= score_threshold)[0]
        if idx.size == 0:
            continue
        bb = outputs[f"bbox_{s}"].reshape(-1, 4)[idx]
        kp = outputs[f"kps_{s}"].reshape(-1, 10)[idx]
        col = (idx % cols).astype(np.float32)
        row = (idx // cols).astype(np.float32)
        cx, cy = (col + bb[:, 0]) * s, (row + bb[:, 1]) * s
        w, h = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], 1))
        pts = kp.reshape(-1, 5, 2)
        pts = np.stack([(col[:, None] + pts[:, :, 0]) * s, (row[:, None] + pts[:, :, 1]) * s], 2)
        kps.append(pts)
        scores.append(score[idx])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return (np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
            np.concatenate(kps).astype(np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = 5000) -> list[int]:
    """Greedy non-maximum suppression on xywh boxes; indexes kept, best first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = np.maximum(0, boxes[:, 2]) * np.maximum(0, boxes[:, 3])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class YuNetDetector:
    def __init__(self, session, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 5000):
        self.session = session
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        inp = session.get_inputs()[0]
        self._input = inp.name
        self._free = not all(isinstance(d, int) for d in inp.shape[2:])   # see dynamic_input
        self._outputs = [o.name for o in session.get_outputs()]

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in a BGR frame of any size, best score first, in frame coordinates."""
        canvas, scale = fit(image) if self._free else letterbox(image)
        blob = cv2.dnn.blobFromImage(canvas)  # NCHW float32, BGR kept, no scaling
        outs = dict(zip(self._outputs, self.session.run(self._outputs, {self._input: blob})))
        boxes, scores, kps = decode(outs, self.score_threshold, canvas.shape[:2])
        keep = nms(boxes, scores, self.nms_threshold, self.top_k)
        return [Face(tuple(float(v) for v in boxes[i] / scale), (kps[i] / scale).astype(np.float32),
                     float(scores[i])) for i in keep]


def primary_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """The traveller: the largest face, discounted by its distance from the frame centre, so a
    bystander at the edge does not win over the person standing at the camera."""
    if not faces:
        return None
    h, w = shape[:2]
    diag = float(np.hypot(w, h))

    def weight(f: Face) -> float:
        x, y, bw, bh = f.box
        d = np.hypot(x + bw / 2 - w / 2, y + bh / 2 - h / 2) / diag
        return bw * bh * (1.0 - d)

    return max(faces, key=weight)


def competing_faces(faces: list[Face], primary: Face, min_ratio: float = 0.35) -> int:
    """Other faces at least `min_ratio` of the primary's area: someone else close to the camera."""
    pa = primary.box[2] * primary.box[3]
    return sum(1 for f in faces if f is not primary and f.box[2] * f.box[3] >= min_ratio * pa)
