"""The document scanner: photograph the document on the reader, read its printed MRZ.

The gate needs the printed MRZ twice: before the chip read, for the BAC/PACE
key (document number, birth and expiry dates), and after it, to compare the
chip's DG1 with the print, which catches a genuine chip planted in a forged
document. `DocumentScanner` is the seam (a camera, a folder of scans, or a
rendered twin of the demo card); `read_mrz` turns one image into a
`ScanResult`; `compare_with_dg1` gives the mismatch reason codes. `read_can`
reads the 6-digit Card Access Number printed on chip ID cards (on the front of
German and Vietnamese cards): the PACE password when the MRZ cannot be read.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import cv2
import numpy as np

from cardreader.lds.mrz import MRZ
from cardreader.scanner.ocr import Correction, OCRUnavailable, find_and_read, find_cans

__all__ = ["DocumentScanner", "FolderScanner", "OpenCVDocumentScanner", "SimulatedDocumentScanner",
           "ScanResult", "CanResult", "Correction", "OCRUnavailable", "read_mrz", "read_can", "compare_with_dg1",
           "register"]

MIN_CONFIDENCE = 0.6
_MIN_SIDE = 200
MAX_PIXELS = 40_000_000  # a 600 dpi scan of a passport page is ~6 Mpx; beyond this, refuse before decoding
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True, repr=False)
class ScanResult:
    """What the scanner made of one image.

    `ok` means exactly one MRZ was found, every check digit holds and the OCR was
    confident; `reason` says why not otherwise ('corrupt_image', 'blank_image',
    'image_too_small', 'image_too_large', 'no_mrz_found', 'unreadable', 'check_digit_failed',
    'multiple_mrz', 'low_confidence', 'malformed_name', 'unconfirmed', 'inconsistent_reads'),
    and `detail` in words (field and position, never the characters). `mrz` is kept when it
    parsed, even if not ok, so an officer can see what was read; only an ok result may be
    used as a key. `preprocessing` names the reading kept and `attempts` lists every
    (preprocessing, problem) tried when the first reading was refused.
    """

    ok: bool
    mrz: MRZ | None = None
    confidence: float = 0.0
    corrections: tuple[Correction, ...] = ()
    reason: str | None = None
    orientation: int = 0
    seconds: float = 0.0
    detail: str | None = None
    preprocessing: str = "base"
    attempts: tuple[tuple[str, str | None], ...] = ()

    @property
    def checks(self) -> dict[str, bool]:
        return dict(self.mrz.checks) if self.mrz else {}

    def to_json(self, *, reveal: bool = False) -> dict:
        """JSON for the CLI and the audit; personal fields only when `reveal`."""
        out: dict = {"ok": self.ok, "reason": self.reason, "detail": self.detail,
                     "confidence": round(self.confidence, 4),
                     "orientation_deg": self.orientation, "seconds": round(self.seconds, 4),
                     "checks": self.checks, "corrections": [c.to_json() for c in self.corrections],
                     "preprocessing": self.preprocessing,
                     "attempts": [{"preprocessing": p, "problem": q} for p, q in self.attempts]}
        if self.mrz is not None:
            m = self.mrz
            out["format"] = m.format
            if reveal:
                out["mrz"] = {"lines": list(m.lines), "document_code": m.document_code,
                              "issuing_state": m.issuing_state, "document_number": m.document_number,
                              "date_of_birth": m.date_of_birth and m.date_of_birth.isoformat(),
                              "date_of_expiry": m.date_of_expiry and m.date_of_expiry.isoformat(),
                              "sex": m.sex, "nationality": m.nationality,
                              "primary_identifier": m.primary_identifier,
                              "secondary_identifier": m.secondary_identifier,
                              "optional_data": m.optional_data, "optional_data_2": m.optional_data_2,
                              "problems": list(m.problems)}
                for c in out["corrections"]:
                    src = next(x for x in self.corrections if x.line == c["line"] and x.column == c["column"])
                    c.update(read=src.read, corrected=src.corrected)
        return out

    def __repr__(self) -> str:
        fmt = self.mrz.format if self.mrz else None
        return (f"ScanResult(ok={self.ok}, reason={self.reason}, format={fmt}, "
                f"confidence={self.confidence:.2f}, corrections={len(self.corrections)})")


def _declared_pixels(data: bytes) -> int:
    """Width x height from the encoded image's header (PIL reads only the header), 0 if unknown."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] * im.size[1]
    except Image.DecompressionBombError:   # PIL's own limit (~180 Mpx) is above ours
        return MAX_PIXELS + 1
    except Exception:  # not a format PIL knows (or a broken header): OpenCV decides
        return 0


def _decode(image) -> tuple[np.ndarray | None, str | None]:
    """Accept a BGR/gray array, encoded bytes or a path; return gray or a reason."""
    if isinstance(image, (str, Path)):
        try:
            image = Path(image).read_bytes()
        except OSError:
            return None, "corrupt_image"
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if _declared_pixels(data) > MAX_PIXELS:   # a few hundred KB of PNG can declare gigabytes
            return None, "image_too_large"
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        except cv2.error:
            image = None
        if image is None:
            return None, "corrupt_image"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        return None, "corrupt_image"
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        return None, "image_too_large"
    if min(image.shape[:2]) < _MIN_SIDE:
        return None, "image_too_small"
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if float(image.std()) < 4.0:
        return None, "blank_image"
    return image, None


def read_mrz(image, *, today=None, min_confidence: float = MIN_CONFIDENCE) -> ScanResult:
    """Find and read the one MRZ in `image` (BGR/gray array, encoded bytes or a path).

    Never raises for bad input; raises `OCRUnavailable` only when Tesseract itself is missing."""
    start = time.perf_counter()
    gray, reason = _decode(image)
    if gray is None:
        return ScanResult(ok=False, reason=reason, seconds=time.perf_counter() - start)
    readings = find_and_read(gray, today=today)
    elapsed = time.perf_counter() - start
    valid = {r.lines: r for r in readings if r.mrz is not None and r.mrz.valid and r.problem is None}
    if len(valid) > 1:
        return ScanResult(ok=False, reason="multiple_mrz", seconds=elapsed)
    if not readings:
        return ScanResult(ok=False, reason="no_mrz_found", seconds=elapsed)
    best = readings[0]
    result = dict(mrz=best.mrz, confidence=best.confidence, corrections=best.corrections,
                  orientation=best.orientation, seconds=elapsed, preprocessing=best.preprocessing,
                  attempts=best.attempts)
    if best.mrz is None or not best.mrz.valid or best.problem:
        return ScanResult(ok=False, reason=best.problem or "check_digit_failed", detail=best.detail, **result)
    if best.confidence < min_confidence:
        return ScanResult(ok=False, reason="low_confidence", detail=f"mean certainty {best.confidence:.2f}",
                          **result)
    return ScanResult(ok=True, **result)


@dataclass(frozen=True, repr=False)
class CanResult:
    """The Card Access Number read from one image. A CAN has no check digit, so `ok` needs
    every digit sure on the engine's and the OCR-B glyph's opinion and one number only;
    `unsure` gives the positions (0-5) that were not; `reason` says why not ok
    ('no_can_found', 'low_confidence', 'multiple_can', or the image's fault as for the MRZ)."""

    ok: bool
    can: str | None = None
    confidence: float = 0.0
    unsure: tuple[int, ...] = ()
    reason: str | None = None
    orientation: int = 0
    seconds: float = 0.0

    def to_json(self, *, reveal: bool = False) -> dict:
        out = {"ok": self.ok, "reason": self.reason, "confidence": round(self.confidence, 4),
               "unsure_positions": list(self.unsure), "orientation_deg": self.orientation,
               "seconds": round(self.seconds, 4)}
        if reveal and self.can is not None:
            out["can"] = self.can
        return out

    def __repr__(self) -> str:
        return f"CanResult(ok={self.ok}, reason={self.reason}, confidence={self.confidence:.2f}, unsure={self.unsure})"


def read_can(image) -> CanResult:
    """Find and read the one CAN in `image` (BGR/gray array, encoded bytes or a path).
    Never raises for bad input; raises `OCRUnavailable` only when Tesseract itself is missing."""
    start = time.perf_counter()
    gray, reason = _decode(image)
    if gray is None:
        return CanResult(ok=False, reason=reason, seconds=time.perf_counter() - start)
    readings = find_cans(gray)
    elapsed = time.perf_counter() - start
    sure = {r.digits: r for r in readings if not r.unsure}
    if len(sure) > 1:
        return CanResult(ok=False, reason="multiple_can", seconds=elapsed)
    if sure:
        (best,) = sure.values()
        return CanResult(ok=True, can=best.digits, confidence=min(best.confidences), orientation=best.orientation,
                         seconds=elapsed)
    if not readings:
        return CanResult(ok=False, reason="no_can_found", seconds=elapsed)
    best = min(readings, key=lambda r: (len(r.unsure), -sum(r.confidences)))
    return CanResult(ok=False, can=best.digits, confidence=min(best.confidences), unsure=best.unsure,
                     reason="low_confidence", orientation=best.orientation, seconds=elapsed)


_COMPARED = ("format", "document_code", "issuing_state", "document_number", "date_of_birth", "date_of_expiry",
             "sex", "nationality", "primary_identifier", "secondary_identifier", "optional_data",
             "optional_data_2")


def compare_with_dg1(scanned: MRZ, chip: MRZ) -> list[str]:
    """Reason codes ('mrz_mismatch_<field>') for every field where the printed MRZ and the
    chip's DG1 differ; empty when they agree character for character."""
    reasons = [f"mrz_mismatch_{name}" for name in _COMPARED if getattr(scanned, name) != getattr(chip, name)]
    if not reasons and tuple(scanned.lines) != tuple(chip.lines):
        reasons.append("mrz_mismatch_lines")
    return reasons


# --- the seam and its twins ---------------------------------------------------------------

@runtime_checkable
class DocumentScanner(Protocol):
    """Images of the document lying on the reader, MRZ side towards the camera."""

    def capture(self, timeout: float = 5.0) -> np.ndarray | None:
        """One BGR image, or None when none came within the timeout."""
        ...

    def close(self) -> None: ...


class FolderScanner:
    """Scans from a folder (or one file), in name order, one per capture: a flatbed or a
    kiosk that drops its pictures in a directory."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        files = [path] if path.is_file() else sorted(
            p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if path.is_dir() else []
        self._files: Iterator[Path] = iter(files)

    def capture(self, timeout: float = 5.0) -> np.ndarray | None:
        for p in self._files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return img
        return None

    def close(self) -> None:
        self._files = iter(())


class OpenCVDocumentScanner:
    """The reader's document camera through OpenCV (a UVC device index or a URL)."""

    def __init__(self, device: int | str = 0, *, width: int = 1920, height: int = 1080) -> None:
        self._cap = cv2.VideoCapture(device)
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def capture(self, timeout: float = 5.0) -> np.ndarray | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._cap.isOpened():
            ok, frame = self._cap.read()
            if ok and frame is not None:
                return frame
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._cap.release()


class SimulatedDocumentScanner:
    """Renders a side of a document (e.g. the demo persona's card) with the synthetic
    generator, photographed at a degradation level, a fresh shot per capture: the MRZ side
    (`side='mrz'`, with the CAN where the card has one) or a chip ID card's front
    (`side='front'`: the CAN, no MRZ), as a traveller may place it."""

    def __init__(self, mrz: str, *, level: str = "moderate", seed: int = 0, can: str | None = None,
                 side: str = "mrz") -> None:
        import random

        if side not in ("mrz", "front") or (side == "front" and not can):
            raise ValueError("side is 'mrz', or 'front' for a card with a CAN")
        self._mrz, self._level, self._can, self._side = mrz, level, can, side
        self._rng = random.Random(seed)
        self._present = True

    @classmethod
    def for_persona(cls, persona, **kw) -> "SimulatedDocumentScanner":
        return cls(persona.mrz, can=getattr(persona, "can", None), **kw)

    def remove(self) -> None:
        """The traveller took the document away: captures return None."""
        self._present = False

    def capture(self, timeout: float = 5.0) -> np.ndarray | None:
        from cardreader.scanner import synth

        if not self._present:
            return None
        px_per_mm = self._rng.uniform(10, 13)
        card = (synth.render_front(self._can, px_per_mm=px_per_mm, rng=self._rng) if self._side == "front" else
                synth.render_document(self._mrz, px_per_mm=px_per_mm, rng=self._rng, can=self._can))
        return synth.degrade(card, self._level, self._rng)[0]

    def close(self) -> None:
        self._present = False

    def __repr__(self) -> str:
        return f"SimulatedDocumentScanner(level={self._level}, side={self._side}, <personal data hidden>)"


def register(subparsers) -> None:
    """`python -m cardreader mrz | mrz-synth | bench-mrz` (see cardreader.scanner.cli)."""
    from cardreader.scanner.cli import register as _register

    _register(subparsers)
