"""Capture quality in the spirit of ISO/IEC 29794-5, and the kiosk guidance each failure maps to.

Measured per frame on the primary face: face size / inter-eye distance, head pose (from the five
landmarks; the pose model is unvalidated, MODELS.md §4, so it is only recorded for the best
frame), eyes
open (Faceplugin eye model, calibrated loosely because it is unvalidated), sharpness (variance of
the Laplacian of the aligned crop), exposure and contrast of the face, face inside the frame, and
one face only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import Face


@dataclass(frozen=True)
class Guidance:
    """A bilingual instruction for the kiosk screen."""

    code: str
    vi: str
    en: str


GUIDANCE: dict[str, Guidance] = {g.code: g for g in [
    Guidance("no_face", "Vui lòng đứng trước camera", "Please stand in front of the camera"),
    Guidance("move_closer", "Vui lòng lại gần hơn", "Please move closer"),
    Guidance("move_back", "Vui lòng lùi lại một chút", "Please step back a little"),
    Guidance("center_face", "Vui lòng đưa khuôn mặt vào giữa khung hình", "Please center your face in the frame"),
    Guidance("look_straight", "Vui lòng nhìn thẳng vào camera", "Please look straight at the camera"),
    Guidance("keep_head_level", "Vui lòng giữ đầu thẳng", "Please keep your head level"),
    Guidance("open_eyes", "Vui lòng mở mắt", "Please open your eyes"),
    Guidance("hold_still", "Vui lòng giữ yên", "Please hold still"),
    Guidance("too_dark", "Ánh sáng quá tối, vui lòng đứng vào vùng sáng", "It is too dark, please step into the light"),
    Guidance("too_bright", "Ánh sáng quá chói, vui lòng tránh nguồn sáng mạnh", "Too much light, please avoid bright light behind or on you"),
    Guidance("low_contrast", "Vui lòng bỏ kính râm, khẩu trang hoặc vật che mặt", "Please remove sunglasses, masks or anything covering your face"),
    Guidance("one_person", "Chỉ một người trước camera", "Only one person in front of the camera, please"),
    Guidance("challenge_blink", "Vui lòng chớp mắt", "Please blink"),
    Guidance("challenge_turn_left", "Vui lòng quay đầu nhẹ sang trái", "Please turn your head slightly to your left"),
    Guidance("challenge_turn_right", "Vui lòng quay đầu nhẹ sang phải", "Please turn your head slightly to your right"),
    Guidance("challenge_look_up", "Vui lòng ngẩng đầu nhẹ lên", "Please tilt your head slightly up"),
    Guidance("challenge_look_down", "Vui lòng cúi đầu nhẹ xuống", "Please tilt your head slightly down"),
    Guidance("challenge_next", "Tốt, vui lòng nhìn thẳng vào camera", "Good, now look straight at the camera"),
    Guidance("challenge_done", "Cảm ơn, vui lòng nhìn thẳng vào camera", "Thank you, please look straight at the camera"),
    Guidance("remove_photo", "Vui lòng không đưa ảnh hoặc màn hình vào camera", "Please do not hold a photo or screen to the camera"),
]}


# Shown to the traveller but not blocking: the eye model is unvalidated (MODELS.md §4) and flags
# some open eyes behind glasses as closed, which would otherwise lock such travellers out.
ADVISORY = frozenset({"open_eyes"})


@dataclass
class QualityThresholds:
    min_inter_eye: float = 40.0      # px in the frame; ISO 19794-5 asks 90 for enrolment, 40 is a usable probe
    max_face_frac: float = 0.85      # face box height / frame height
    max_yaw: float = 25.0            # degrees, from landmarks
    max_pitch: float = 25.0
    max_roll: float = 20.0
    min_sharpness: float = 40.0      # variance of Laplacian on the 112x112 grey crop
    min_brightness: float = 50.0
    max_brightness: float = 215.0
    min_contrast: float = 18.0       # std of grey face pixels
    eyes_closed_below: float = 0.1   # eye model p(open); the model is unvalidated, so only clear closures
    edge_margin: float = 0.02        # fraction of the frame


@dataclass
class QualityReport:
    ok: bool
    failures: list[str] = field(default_factory=list)   # guidance codes, most important first
    measures: dict[str, float] = field(default_factory=dict)
    score: float = 0.0  # for picking the best frame: higher is better


def pose_from_landmarks(p5: np.ndarray) -> tuple[float, float, float]:
    """Rough yaw, pitch, roll in degrees from the five points (no 3-D model).

    roll  = angle of the eye line; yaw = nose offset from the eye/mouth mid-line relative to the
    inter-eye distance; pitch = nose height between eye line and mouth line versus its frontal
    ratio (~0.45 on the ArcFace template)."""
    re, le, nose, rm, lm = p5.astype(np.float64)
    d = le - re
    roll = float(np.degrees(np.arctan2(d[1], d[0])))
    ied = max(float(np.hypot(*d)), 1e-6)
    c, s = np.cos(np.radians(-roll)), np.sin(np.radians(-roll))
    rot = np.array([[c, -s], [s, c]])
    eyes_mid = (re + le) / 2
    mouth_mid = (rm + lm) / 2
    n = rot @ (nose - eyes_mid)
    m = rot @ (mouth_mid - eyes_mid)
    yaw = float(np.degrees(np.arcsin(np.clip(2.0 * (n[0] - m[0] / 2) / ied, -1, 1))))
    ratio = n[1] / max(m[1], 1e-6)
    pitch = float(np.degrees(np.arcsin(np.clip((ratio - 0.49) / 0.5, -1, 1))))
    return yaw, pitch, roll


class EyeState:
    """faceplugin_fr_eye: 24x24 grey eye patch, v/255 -> p(open) (index 1)."""

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def p_open(self, image: np.ndarray, lm68: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        ps = []
        for lids, (c0, c1) in (([37, 38, 40, 41], (36, 39)), ([43, 44, 46, 47], (42, 45))):
            centre = lm68[lids].mean(0)
            side = max(1.6 * float(np.linalg.norm(lm68[c1] - lm68[c0])), 4.0)
            s = 24.0 / side
            m = np.array([[s, 0, 12 - centre[0] * s], [0, s, 12 - centre[1] * s]], np.float32)
            patch = cv2.warpAffine(grey, m, (24, 24), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
            z = self.session.run(None, {self._input: patch[None, None]})[0].reshape(-1)
            e = np.exp(z - z.max())
            ps.append(float(e[1] / e.sum()))
        return min(ps)


class HeadPose:
    """faceplugin_fr_pose: yaw, pitch, roll in degrees from 66-bin classifiers (MODELS.md §4).

    Unvalidated, so it is recorded with the best frame and never gates; R,G,B input, which agreed
    better with the landmark yaw (r = -0.77) than the JS's B,G,R."""

    MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    STD = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def predict(self, image: np.ndarray, box) -> tuple[float, float, float]:
        H, W = image.shape[:2]
        x, y, w, h = box
        x0, y0 = int(max(0, x - w / 4)), int(max(0, y - h / 4))
        x1, y1 = int(min(W, x + w * 1.25)), int(min(H, y + h * 1.25))
        crop = cv2.resize(image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], (224, 224))[:, :, ::-1]
        t = ((crop.astype(np.float32) / 255.0 - self.MEAN) / self.STD).transpose(2, 0, 1)[None]
        outs = self.session.run(None, {self._input: np.ascontiguousarray(t)})
        idx = np.arange(66, dtype=np.float32)
        angles = []
        for z in outs[:3]:
            z = z.reshape(-1)
            e = np.exp(z - z.max())
            angles.append(float((e / e.sum() * idx).sum() * 3 - 99))
        return angles[0], angles[1], angles[2]


def assess(image: np.ndarray, face: Face, aligned: np.ndarray, n_faces_competing: int,
           eyes_open: float | None, t: QualityThresholds | None = None) -> QualityReport:
    t = t or QualityThresholds()
    H, W = image.shape[:2]
    x, y, w, h = face.box
    yaw, pitch, roll = pose_from_landmarks(face.landmarks)
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    inner = grey[20:100, 24:88]
    sharp = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    bright = float(inner.mean())
    contrast = float(inner.std())
    m = {"inter_eye": face.inter_eye, "face_frac": h / H, "yaw": yaw, "pitch": pitch, "roll": roll,
         "sharpness": sharp, "brightness": bright, "contrast": contrast, "det_score": face.score}
    if eyes_open is not None:
        m["eyes_open"] = eyes_open
    fails: list[str] = []
    if n_faces_competing:
        fails.append("one_person")
    mx, my = t.edge_margin * W, t.edge_margin * H
    if x < -mx or y < -my or x + w > W + mx or y + h > H + my:
        fails.append("move_back" if h / H > 0.6 else "center_face")
    if face.inter_eye < t.min_inter_eye:
        fails.append("move_closer")
    elif h / H > t.max_face_frac:
        fails.append("move_back")
    if abs(yaw) > t.max_yaw or abs(pitch) > t.max_pitch:
        fails.append("look_straight")
    if abs(roll) > t.max_roll:
        fails.append("keep_head_level")
    if bright < t.min_brightness:
        fails.append("too_dark")
    elif bright > t.max_brightness:
        fails.append("too_bright")
    elif contrast < t.min_contrast:
        fails.append("low_contrast")
    if eyes_open is not None and eyes_open < t.eyes_closed_below:
        fails.append("open_eyes")
    if sharp < t.min_sharpness:
        fails.append("hold_still")
    # best-frame score: frontal, sharp, large enough, well exposed
    score = (face.score
             - (abs(yaw) + abs(pitch) + abs(roll)) / 90.0
             + min(sharp / 400.0, 1.0) * 0.5
             + min(face.inter_eye / 80.0, 1.0) * 0.5
             - len(fails))
    return QualityReport(not [f for f in fails if f not in ADVISORY], fails, m, float(score))
