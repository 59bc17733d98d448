"""Untrusted image bytes: every bad input is an ImageError with a reason, never a crash."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from biometrics.image import ImageError, decode_image


def png_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h (the decompression-bomb shape) with one tiny IDAT."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def jpeg(img: np.ndarray, exif_orientation: int | None = None) -> bytes:
    pil = Image.fromarray(img[:, :, ::-1] if img.ndim == 3 else img)
    buf = io.BytesIO()
    kw = {}
    if exif_orientation:
        ex = Image.Exif()
        ex[0x0112] = exif_orientation
        kw["exif"] = ex.tobytes()
    pil.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def test_good_jpeg_and_greyscale_become_bgr():
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :40] = (255, 0, 0)  # blue on the left
    out = decode_image(jpeg(img))
    assert out.shape == (60, 80, 3) and out[30, 10, 0] > 200 and out[30, 10, 2] < 60
    grey = decode_image(jpeg(np.full((50, 40), 128, np.uint8)))
    assert grey.shape == (50, 40, 3)


def test_exif_orientation_is_applied():
    img = np.zeros((40, 100, 3), np.uint8)  # landscape
    img[:, :10] = 255                          # bright stripe on the left
    out = decode_image(jpeg(img, exif_orientation=6))  # "rotate 90 CW to display"
    assert out.shape[:2] == (100, 40)
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # left stripe is now on top


@pytest.mark.parametrize("data,reason", [
    (b"", "empty_image"),
    (b"hello, not an image at all", "not_an_image"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 10, "not_an_image"),
])
def test_garbage_bytes(data, reason):
    with pytest.raises(ImageError) as e:
        decode_image(data)
    assert e.value.reason == reason


def test_truncated_jpeg_is_a_reason_not_a_crash():
    data = jpeg(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    for cut in (len(data) // 2, 200):
        try:
            out = decode_image(data[:cut])
        except ImageError as e:
            assert e.reason in ("corrupt_image", "not_an_image")
        else:  # libjpeg may pad a truncated scan with grey: still a well-formed image
            assert out.shape == (200, 200, 3)


def test_decompression_bomb_refused_from_header():
    with pytest.raises(ImageError) as e:
        decode_image(png_header(100_000, 100_000))
    assert e.value.reason == "image_too_large"
    with pytest.raises(ImageError) as e:
        decode_image(png_header(5000, 5000), max_pixels=1_000_000)
    assert e.value.reason == "image_too_large"


def test_tiny_image_refused():
    ok, enc = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError) as e:
        decode_image(enc.tobytes())
    assert e.value.reason == "image_too_small"
