"""Safe image decoding for untrusted bytes (chip photos, uploaded files, data sets).

The header is read first (Pillow parses only the header on open) so a decompression bomb is
refused before any pixel buffer is allocated; EXIF orientation is applied so a phone photo is
upright; greyscale and 16-bit inputs come out as 8-bit BGR.
"""
from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

MAX_PIXELS = 40_000_000  # ~ 7700x5200; a gate frame or chip photo is far smaller
MIN_SIDE = 16


class ImageError(ValueError):
    """The bytes are not a usable image; `reason` is a short code for results and CSV output."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes -> HxWx3 uint8 BGR, upright. Raises `ImageError` with a reason code."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise ImageError("empty_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(bytes(data)))
            w, h = im.size
    except Image.DecompressionBombError:
        raise ImageError("image_too_large", "header dimensions exceed the decoder limit") from None
    except Exception:
        raise ImageError("not_an_image", "unrecognised or corrupt header") from None
    if w * h > max_pixels:
        raise ImageError("image_too_large", f"{w}x{h} exceeds {max_pixels} pixels")
    if min(w, h) < MIN_SIDE:
        raise ImageError("image_too_small", f"{w}x{h}")
    orientation = 1
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:
        pass
    buf = np.frombuffer(bytes(data), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:  # formats OpenCV was built without: let Pillow decode
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
                img = cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)
        except Exception:
            raise ImageError("corrupt_image", "pixel data cannot be decoded") from None
    elif orientation != 1:
        img = _apply_orientation(img, orientation)
    if img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
        raise ImageError("image_too_small", f"{img.shape[1]}x{img.shape[0]}")
    return np.ascontiguousarray(img)


def _apply_orientation(img: np.ndarray, o: int) -> np.ndarray:
    """EXIF orientation tag 2..8 -> upright image (the mapping of PIL.ImageOps.exif_transpose)."""
    ops = {
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: cv2.transpose,
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.transpose(a), -1),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    return ops[o](img) if o in ops else img

