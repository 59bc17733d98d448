"""The `Camera` seam: a source of timestamped BGR frames.

Real twin: `OpenCVCamera(0)` (a webcam through OpenCV). Simulated twins:
`OpenCVCamera("clip.mp4", loop=True)` (a bundled clip) and
`ImageSequenceCamera` (still images, for tests and the demo).
"""
from __future__ import annotations

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


