"""The `Camera` seam: a source of timestamped BGR frames.

Real twin: `OpenCVCamera(0)` (a webcam through OpenCV). Simulated twins:
`OpenCVCamera("clip.mp4", loop=True)` (a bundled clip),
`ImageSequenceCamera` (still images, for tests and the demo) and
`RespondingCamera` (a recorded person who follows the kiosk's challenge prompts).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@dataclass(frozen=True, repr=False)
class Frame:
    """One camera frame. `image` is HxWx3 uint8 BGR; never printed (it is biometric data)."""

    image: np.ndarray
    timestamp: float
    index: int = 0

    def __repr__(self) -> str:
        h, w = self.image.shape[:2]
        return f"Frame(index={self.index}, t={self.timestamp:.3f}, {w}x{h})"


class CameraError(Exception):
    """The camera cannot deliver frames (unplugged, unreadable source)."""


@runtime_checkable
class Camera(Protocol):
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the consumer stops; raise `CameraError` if the device fails."""
        ...

    def close(self) -> None: ...


class ImageSequenceCamera:
    """Plays a list of images (arrays or file paths) as a feed at `fps`, looping if asked."""

    def __init__(self, images: Sequence[np.ndarray | str | Path], fps: float = 15.0,
                 loop: bool = True, clock=time.monotonic, realtime: bool = False):
        self._images = list(images)
        if not self._images:
            raise CameraError("image sequence is empty")
        self._fps = fps
        self._loop = loop
        self._clock = clock
        self._realtime = realtime
        self._decoded: dict[int, np.ndarray] = {}

    def _image(self, i: int) -> np.ndarray:
        if i not in self._decoded:
            src = self._images[i]
            if isinstance(src, np.ndarray):
                img = src
            else:
                img = cv2.imread(str(src), cv2.IMREAD_COLOR)
                if img is None:
                    raise CameraError(f"cannot read frame image {Path(src).name}")
            self._decoded[i] = img
        return self._decoded[i]

    def frames(self) -> Iterator[Frame]:
        n = 0
        t0 = self._clock()
        while True:
            for i in range(len(self._images)):
                if self._realtime:
                    time.sleep(max(0.0, t0 + n / self._fps - self._clock()))
                    ts = self._clock()
                else:
                    ts = t0 + n / self._fps
                yield Frame(self._image(i), ts, n)
                n += 1
            if not self._loop:
                return

    def close(self) -> None:
        self._decoded.clear()


class OpenCVCamera:
    """A webcam (integer index) or a video file/clip through OpenCV's VideoCapture."""

    def __init__(self, source: int | str, loop: bool = False, clock=time.monotonic):
        self._source = source
        self._loop = loop
        self._clock = clock
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._source)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera source {self._source!r}")
        return cap

    def frames(self) -> Iterator[Frame]:
        self._cap = self._open()
        n = 0
        while True:
            ok, img = self._cap.read()
            if not ok or img is None:
                if self._loop and isinstance(self._source, str):
                    self._cap.release()
                    self._cap = self._open()
                    ok, img = self._cap.read()
                if not ok or img is None:
                    if n == 0:
                        raise CameraError(f"camera source {self._source!r} delivered no frame")
                    return
            yield Frame(img, self._clock(), n)
            n += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None




# A person filmed live by a webcam (pad-dev BalveerSinghYT: tight face crops of his recording). The
# frames are chosen by the models' signals, not by the labels: his eyes are shut in 0022 (eye model
# p(open) 0.00, open >= 0.99 in the others), so that blink is recorded; he never turns his head
# (landmark yaw -1..+5 degrees, pitch -8.5..-2.8), so the turns and nods are made from frame 0007 by
# `head_turn`. A 24 degree nod render reads as 17 degrees of landmark pitch up, 30 down.
PAD_DEV_PERSON = "BalveerSinghYT"
PAD_DEV_CHIP = "0001"
PAD_DEV_NEUTRAL = ("0002", "0004", "0007", "0011", "0016", "0017", "0018", "0019", "0020", "0024")
PAD_DEV_BLINK = ("0022", "0022")     # one recorded frame, shown for two frame times (~130 ms)
PAD_DEV_TURN_FROM = "0007"
TURN_DEGREES = (12.0, 24.0, 24.0, 12.0)   # the rendered turn and back, frame by frame; nods alike


def head_turn(crop: np.ndarray, degrees: float, axis: str = "yaw") -> np.ndarray:
    """A tight face crop re-rendered as if the head turned about its vertical axis by `degrees`
    (`axis` 'yaw'; positive: to the person's left, the nose moving to the image's right) or nodded
    about its horizontal axis ('pitch'; positive: looking up, the nose moving up the image).

    Depth proxy: an ellipsoid over the crop (centre 0.5w/0.45h, half-axes 0.42w and 0.5h, as deep as
    half wide) plus a nose ridge 0.35 of that depth high; each pixel moves along the axis of motion by
    its depth times sin(angle), inverted on the output grid by three fixed-point steps. Parts at
    different depths move differently (the nose more than the cheeks), so the landmarks the models
    find on the result do not follow one homography, as a real turn's or nod's do not, and a 24 degree
    turn reads as about 20 degrees of landmark yaw. It is a rendering, not a recording: the README
    says so."""
    h, w = crop.shape[:2]
    cx, cy, a, b = 0.5 * w, 0.45 * h, 0.42 * w, 0.5 * h
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    z = a * np.sqrt(np.clip(1 - ((xx - cx) / a) ** 2 - ((yy - cy) / b) ** 2, 0, 1))
    ridge = np.clip((yy - 0.33 * h) / (0.3 * h), 0, 1) * (yy <= 0.66 * h)
    z = (z + 0.35 * a * ridge * np.exp(-((xx - cx) ** 2) / (2 * (0.05 * w) ** 2))).astype(np.float32)
    s, c = np.sin(np.radians(degrees)), np.cos(np.radians(degrees))
    grid, centre, k = (xx, cx, 1.0) if axis == "yaw" else (yy, cy, -1.0)
    maps = (lambda m: (m, yy)) if axis == "yaw" else (lambda m: (xx, m))
    src = grid.copy()
    for _ in range(3):
        src = (centre + (grid - centre - k * cv2.remap(z, *maps(src), cv2.INTER_LINEAR) * s) / c).astype(np.float32)
    return cv2.remap(crop, *maps(src), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def pad_dev_turn(root: Path, sign: int, hold: int = 1, axis: str = "yaw") -> list[np.ndarray]:
    """The recorded person's head turn and back, rendered from frame PAD_DEV_TURN_FROM of pad-dev's
    folder `root`: to his left for sign +1, to his right for -1, each frame shown `hold` times
    (`axis` 'pitch': his nod, `pad_dev_nod`)."""
    img = cv2.imread(str(root / "images" / PAD_DEV_PERSON / f"{PAD_DEV_TURN_FROM}.png"), cv2.IMREAD_COLOR)
    if img is None:
        raise CameraError(f"cannot read frame image {PAD_DEV_TURN_FROM}.png")
    return [head_turn(img, sign * deg, axis) for deg in TURN_DEGREES for _ in range(hold)]


def pad_dev_nod(root: Path, sign: int, hold: int = 1) -> list[np.ndarray]:
    """The recorded person looking up (sign +1) or down (-1) and back, as `pad_dev_turn`."""
    return pad_dev_turn(root, sign, hold, "pitch")


class RespondingCamera:
    """Simulated traveller who follows the kiosk's challenge prompts.

    Plays a recorded person in a loop (`neutral`); when `respond(code)` hands it a prompt for which
    it holds an answer clip (`answers`: guidance code -> frames), it starts that clip a human reaction
    time after the prompt (drawn for each prompt, uniform over `reaction_s` = (low, high) seconds, from
    `seed`; one number: always that), then plays the loop again. The time is the camera's own: frame
    count / fps, or the clock when `realtime`. A prompt it has no clip for is ignored, so a recording
    without a blink cannot answer a blink. Frames are arrays or image paths. Without answers it is a
    replay deaf to the prompts."""

    def __init__(self, neutral: Sequence[np.ndarray | str | Path],
                 answers: dict[str, Sequence[np.ndarray | str | Path]] | None = None, fps: float = 15.0,
                 reaction_s: float | tuple[float, float] = (0.3, 1.0), seed: int | None = None,
                 clock=time.monotonic, realtime: bool = False):
        self._loop = ImageSequenceCamera(neutral, fps, loop=True, clock=clock)
        self._answers = {k: ImageSequenceCamera(v, fps, loop=False, clock=clock) for k, v in (answers or {}).items()}
        lo, hi = (reaction_s, reaction_s) if isinstance(reaction_s, (int, float)) else reaction_s
        if not 0 <= lo <= hi:
            raise ValueError(f"reaction time range {reaction_s!r}")
        self._fps, self._reaction, self._clock, self._realtime = fps, (lo, hi), clock, realtime
        self._rng = np.random.default_rng(seed)
        self._asked: str | None = None
        self.reactions: list[float] = []   # the reaction time drawn for each answered prompt
        self._lock = threading.Lock()

    @classmethod
    def pad_dev(cls, root: Path, drop: tuple[str, ...] = (), wrong_side: bool = False, hold: int = 1,
                **kw) -> tuple[Path, "RespondingCamera"]:
        """(chip photo path, camera) for the recorded person above; `root` is pad-dev's folder.
        `drop` leaves answer clips out (a person who does not do what is asked); `wrong_side`: he
        turns right when asked left and left when asked right, looks down when asked up and up when
        asked down; `hold`: each frame of a turn or nod shown this many times (2: a 0.53 s turn and
        back instead of 0.27 s, a slower person)."""
        d = root / "images" / PAD_DEV_PERSON

        def paths(names):
            return [d / f"{n}.png" for n in names]

        w = -1 if wrong_side else 1
        clips = {"challenge_blink": lambda: paths(PAD_DEV_BLINK),
                 "challenge_turn_left": lambda: pad_dev_turn(root, w, hold),
                 "challenge_turn_right": lambda: pad_dev_turn(root, -w, hold),
                 "challenge_look_up": lambda: pad_dev_nod(root, w, hold),
                 "challenge_look_down": lambda: pad_dev_nod(root, -w, hold)}
        return d / f"{PAD_DEV_CHIP}.png", cls(paths(PAD_DEV_NEUTRAL),
                                              {k: f() for k, f in clips.items() if k not in drop}, **kw)

    def respond(self, code: str) -> None:
        """A kiosk prompt reaches the person."""
        with self._lock:
            if code in self._answers:
                self._asked = code

    def _next_clip(self) -> Iterator[np.ndarray] | None:
        with self._lock:
            code, self._asked = self._asked, None
        if code is None:
            return None
        return (f.image for f in self._answers[code].frames())

    def frames(self) -> Iterator[Frame]:
        n, t0 = 0, self._clock()
        loop = self._loop.frames()
        pending: Iterator[np.ndarray] | None = None
        start = 0.0
        while True:
            if self._realtime:
                time.sleep(max(0.0, t0 + n / self._fps - self._clock()))
            ts = self._clock() if self._realtime else t0 + n / self._fps
            clip = self._next_clip()
            if clip is not None:   # the prompt reached the person just before this frame
                reaction = float(self._rng.uniform(*self._reaction))
                self.reactions.append(reaction)
                pending, start = clip, ts + reaction
            img = None
            if pending is not None and ts >= start - 0.5 / self._fps:   # the nearest frame to the onset
                img = next(pending, None)
                if img is None:
                    pending = None
            if img is None:
                img = next(loop).image
            yield Frame(img, ts, n)
            n += 1

    def close(self) -> None:
        self._loop.close()
