"""Read the printed MRZ from a photograph of a document.

Three steps, each of which can say no:

1. *Locate.* The MRZ is two or three long, parallel, equally long lines of
   equal-pitch characters at the bottom of the document. Dark-on-light strokes
   are smeared horizontally into line blobs, in the image as given and turned a
   quarter, and groups of 2-3 blobs that look like an MRZ become candidates.
2. *Recognise.* Each line is cut out along its own rotated rectangle (so skew
   and mild perspective are undone per line) and read by Tesseract's LSTM
   engine, restricted to ``A-Z 0-9 <`` and a single text line. Because OCR-B is
   monospaced, every recognised symbol is put in its character cell by its x
   position, which repairs the usual dropped or doubled ``<`` in filler runs.
   Upside-down candidates are read the other way round when the first reading
   does not parse.
3. *Correct, conservatively.* Characters are first forced to their field's
   alphabet (digits in dates and check digits, letters in state codes and
   names). Then, only for a field whose check digit fails, single OCR-confusion
   substitutions are tried, and one is kept only when exactly one candidate
   satisfies both the field's and the composite check digit. Nothing is ever
   guessed across several positions; a field that still fails is reported.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cardreader.lds.mrz import MRZ, MRZError, check_digit, parse_mrz

WIDTHS = {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "T": "1", "Z": "2", "B": "8",
             "S": "5", "G": "6", "A": "4", "<": "<"}
_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "8": "B", "5": "S", "6": "G", "4": "A", "7": "T"}
# Single-character confusions tried under check-digit guidance (both directions).
_CONFUSIONS = {"O": "0DQ", "0": "OD", "D": "0O", "Q": "0O", "I": "1L", "1": "I7", "L": "1",
               "B": "8", "8": "B", "S": "5", "5": "S", "Z": "2", "2": "Z", "G": "6", "6": "G",
               "K": "<", "<": "K", "A": "4", "4": "A", "7": "1", "U": "0"}
_TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                  "/usr/share/tessdata")


class OCRUnavailable(RuntimeError):
    """Tesseract or its English model is not installed (a broken device, not bad input)."""


@dataclass(frozen=True)
class Correction:
    """One character the reader changed, and why (`alphabet` or `check_digit`)."""

    line: int
    column: int
    field: str
    read: str
    corrected: str
    rule: str

    def to_json(self) -> dict:
        return {"line": self.line, "column": self.column, "field": self.field, "rule": self.rule}


@dataclass(frozen=True)
class LineReading:
    text: str
    confidences: tuple[float, ...]


@dataclass(frozen=True, repr=False)
class Reading:
    """What came out of one located band: the corrected lines and how sure we are."""

    lines: tuple[str, ...]
    confidence: float
    corrections: tuple[Correction, ...] = ()
    mrz: MRZ | None = None
    problem: str | None = None
    box: tuple[float, float, float, float] = (0, 0, 0, 0)  # x, y, w, h in the searched image
    orientation: int = 0

    def __repr__(self) -> str:
        return f"Reading(valid={self.mrz is not None and self.mrz.valid}, problem={self.problem})"


# --- engine ---------------------------------------------------------------------------------

class _Tesseract:
    """One in-process Tesseract API set up for single MRZ lines; calls are serialised."""

    def __init__(self) -> None:
        try:
            import tesserocr
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise OCRUnavailable("tesserocr is not installed") from exc
        path = os.environ.get("TESSDATA_PREFIX") or next(
            (d for d in _TESSDATA_DIRS if Path(d, "eng.traineddata").is_file()), None)
        if path is None:
            raise OCRUnavailable("no eng.traineddata found (install tesseract-ocr-eng)")
        self._tesserocr = tesserocr
        self._api = tesserocr.PyTessBaseAPI(path=path.rstrip("/") + "/", lang="eng",
                                            psm=tesserocr.PSM.SINGLE_LINE, oem=tesserocr.OEM.LSTM_ONLY)
        self._api.SetVariable("tessedit_char_whitelist", _ALPHABET)
        self._api.SetVariable("load_system_dawg", "0")
        self._api.SetVariable("load_freq_dawg", "0")
        self._lock = threading.Lock()

    def read_line(self, gray: np.ndarray) -> list[tuple[str, float, float, float]]:
        """Symbols of one line image: (char, confidence 0-1, x-left, x-right)."""
        from PIL import Image

        with self._lock:
            self._api.SetImage(Image.fromarray(gray))
            self._api.Recognize()
            it = self._api.GetIterator()
            out = []
            level = self._tesserocr.RIL.SYMBOL
            for sym in self._tesserocr.iterate_level(it, level) if it is not None else ():
                try:
                    text, box = sym.GetUTF8Text(level), sym.BoundingBox(level)
                except RuntimeError:  # tesserocr's word for "no symbol here"
                    continue
                if text and box:
                    for ch in text.upper():
                        if ch in _ALPHABET:
                            ch = _chevron_or_k(gray, box) if ch in "K<" else ch
                            out.append((ch, sym.Confidence(level) / 100.0, float(box[0]), float(box[2])))
            return out


def _chevron_or_k(gray: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """'<' and 'K' are the LSTM's commonest confusion in filler runs, and the glyphs settle
    it: K has a full-height stem on its left, the filler's left end is a single point."""
    x0, y0, x1, y1 = box
    cell = gray[max(0, y0 - 2):y1 + 2, max(0, x0 - 1):x1 + 1]
    if cell.size == 0 or x1 - x0 < 4 or x1 - x0 > 1.1 * (y1 - y0):  # a box over several chevrons
        return "<"
    _, ink = cv2.threshold(cell, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if len(rows) < 3 or len(cols) < 3:
        return "<"
    left = ink[:, cols[0]:cols[0] + max(1, (cols[-1] - cols[0]) // 5)]
    stem = np.flatnonzero(left.any(axis=1))
    return "K" if len(stem) > 0.7 * (rows[-1] - rows[0] + 1) else "<"


_engine: _Tesseract | None = None
_engine_lock = threading.Lock()


def engine() -> _Tesseract:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Tesseract()
        return _engine


# --- locating -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Line:
    rect: tuple  # cv2 RotatedRect ((cx, cy), (w, h), angle) with w the long side
    length: float
    height: float
    angle: float  # degrees, in (-45, 45]


def _norm_rect(rect) -> _Line:
    (cx, cy), (w, h), a = rect
    if h > w:
        w, h, a = h, w, a - 90
    while a > 45:
        a -= 180 if a > 135 else 90
    while a <= -45:
        a += 90
    return _Line(((cx, cy), (w, h), a), w, h, a)


def _text_lines(gray: np.ndarray) -> list[_Line]:
    """Horizontal-ish blobs of dark strokes that could be lines of MRZ text (found on a
    copy scaled to 1000 px, returned in the coordinates of `gray`)."""
    scale = 1000.0 / max(gray.shape)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape
    rect = lambda kw, kh: cv2.getStructuringElement(cv2.MORPH_RECT, (kw, kh))  # noqa: E731
    blackhat = cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, rect(21, 11))
    _, bw = cv2.threshold(blackhat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bw = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, rect(27, 3))
    bw = cv2.morphologyEx(bw, cv2.MORPH_OPEN, rect(11, 5))
    contours, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    lines = []
    for c in contours:
        if len(c) < 5:
            continue
        ln = _norm_rect(cv2.minAreaRect(c))
        if ln.length > 0.2 * max(h, w) and ln.length > 8 * ln.height and ln.height > 5:
            (cx, cy), (lw, lh), a = ln.rect
            lines.append(_Line(((cx / scale, cy / scale), (lw / scale, lh / scale), a),
                               lw / scale, lh / scale, a))
    return lines


def _groups(lines: list[_Line]) -> list[list[_Line]]:
    """Runs of 2-3 parallel lines of similar length, stacked at MRZ line spacing."""
    out = []
    lines = sorted(lines, key=lambda ln: ln.rect[0][1])
    for i, first in enumerate(lines):
        group = [first]
        for other in lines[i + 1:]:
            last = group[-1]
            dy = other.rect[0][1] - last.rect[0][1]
            if (abs(other.angle - first.angle) < 4 and 0.7 < other.length / first.length < 1.45
                    and 0.9 * first.height < dy < 3.5 * max(first.height, other.height)
                    and abs(other.rect[0][0] - first.rect[0][0]) < 0.2 * first.length + abs(dy) * 0.15):
                group.append(other)
                if len(group) == 3:
                    break
        if len(group) >= 2:
            out.append(group)
    # bigger groups first, then the longest lines (the MRZ is the widest text on the document)
    out.sort(key=lambda g: (-len(g), -sum(ln.length for ln in g)))
    return out


def _crop_line(gray: np.ndarray, ln: _Line, flip: bool, target_h: int = 44) -> np.ndarray:
    (cx, cy), (w, h), a = ln.rect
    pad_x, pad_y = h * 0.8, h * 0.45
    scale = target_h / max(h, 1.0)
    m = cv2.getRotationMatrix2D((cx, cy), a, scale)
    ow, oh = int((w + 2 * pad_x) * scale), int((h + 2 * pad_y) * scale)
    m[0, 2] += ow / 2 - cx
    m[1, 2] += oh / 2 - cy
    crop = cv2.warpAffine(gray, m, (ow, oh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return cv2.rotate(crop, cv2.ROTATE_180) if flip else crop


# --- recognition ----------------------------------------------------------------------------

def _pitch(symbols: list[tuple[str, float, float, float]]) -> float | None:
    """Character pitch of one line: the typical step between neighbouring symbols,
    refined by least squares over every symbol's cell number."""
    centres = np.array([(s[2] + s[3]) / 2 for s in symbols])
    steps = np.diff(centres)
    steps = steps[steps > 0]
    if len(steps) < 5:
        return None
    pitch = float(np.median(steps))
    offsets = centres - centres[0]
    cells = np.round(offsets / pitch)
    if not cells.any():
        return None
    return float((offsets * cells).sum() / (cells * cells).sum())


def _to_cells(symbols: list[tuple[str, float, float, float]], width: int, pitch: float) -> LineReading:
    """Place symbols into `width` monospaced cells by their x position. Every MRZ line
    starts with a character that is not a filler, so the first symbol anchors cell 0."""
    start = (symbols[0][2] + symbols[0][3]) / 2
    cells: list[tuple[str, float] | None] = [None] * width
    for s in symbols:
        i = int(round(((s[2] + s[3]) / 2 - start) / pitch))
        if 0 <= i < width and (cells[i] is None or cells[i][1] < s[1]):
            cells[i] = (s[0], s[1])
    text, conf = [], []
    for i, cell in enumerate(cells):
        if cell is None:  # an empty cell inside or after a filler run is a filler; elsewhere unknown
            before = next((c for c in reversed(cells[:i]) if c), None)
            after = next((c for c in cells[i + 1:] if c), None)
            filler = before is not None and before[0] == "<" and (after is None or after[0] == "<")
            cell = ("<", 0.5) if filler else ("?", 0.0)
        text.append(cell[0])
        conf.append(cell[1])
    return LineReading("".join(text), tuple(conf))


def _field_map(fmt: str) -> list[list[str]]:
    """Per line, per column: 'd' digit, 'a' letter, 'x' any, and the field name for reports."""
    def spec(parts):
        kinds, names = [], []
        for kind, name, n in parts:
            kinds += [kind] * n
            names += [name] * n
        return kinds, names
    if fmt == "TD1":
        return [spec([("a", "document_code", 2), ("a", "issuing_state", 3), ("x", "document_number", 9),
                      ("x", "document_number_check", 1), ("x", "optional_data", 15)]),
                spec([("d", "date_of_birth", 7), ("a", "sex", 1), ("d", "date_of_expiry", 7),
                      ("a", "nationality", 3), ("x", "optional_data_2", 11), ("d", "composite", 1)]),
                spec([("a", "name", 30)])]
    n = WIDTHS[fmt][1]
    tail = ([("x", "optional_data", 7), ("d", "composite", 1)] if fmt == "TD2"
            else [("x", "optional_data", 14), ("x", "optional_data_check", 1), ("d", "composite", 1)])
    return [spec([("a", "document_code", 2), ("a", "issuing_state", 3), ("a", "name", n - 5)]),
            spec([("x", "document_number", 9), ("x", "document_number_check", 1), ("a", "nationality", 3),
                  ("d", "date_of_birth", 7), ("a", "sex", 1), ("d", "date_of_expiry", 7)] + tail)]


def _force_alphabet(lines: list[str], fmt: str) -> tuple[list[str], list[Correction]]:
    fixes, out = [], []
    for li, (line, (kinds, names)) in enumerate(zip(lines, _field_map(fmt))):
        chars = list(line)
        for ci, (ch, kind) in enumerate(zip(chars, kinds)):
            new = ch
            if kind == "d" and ch not in "0123456789<":
                new = _TO_DIGIT.get(ch, ch)
            elif kind == "a" and ch.isdigit():
                new = _TO_LETTER.get(ch, ch)
            if names[ci] == "document_number_check" and ch in _TO_DIGIT and ch != "<":
                new = _TO_DIGIT[ch]
            if new != ch:
                chars[ci] = new
                fixes.append(Correction(li, ci, names[ci], ch, new, "alphabet"))
        out.append("".join(chars))
    return out, fixes


def _parse(lines: list[str], today) -> MRZ | None:
    try:
        return parse_mrz("\n".join(lines), today=today)
    except MRZError:
        return None


def _check_guided(lines: list[str], fmt: str, today) -> tuple[list[str], list[Correction]]:
    """Fix failing fields by one confusion substitution, only when exactly one candidate
    makes the field's own check digit and the composite check digit pass."""
    fixes: list[Correction] = []
    mrz = _parse(lines, today)
    if mrz is None:
        return lines, fixes
    for fname in ("document_number", "date_of_birth", "date_of_expiry", "optional_data", "composite"):
        if mrz.checks.get(fname, True):
            continue
        positions = [(li, ci) for li, (kinds, names) in enumerate(_field_map(fmt)) for ci, n in enumerate(names)
                     if n in (fname, fname + "_check") or (fname == "composite" and n == "composite")]
        if fname == "composite":  # composite only: any character the composite covers
            positions = [(li, ci) for li, (kinds, names) in enumerate(_field_map(fmt)) for ci, n in enumerate(names)
                         if n in ("optional_data", "optional_data_2", "composite")]
        winners = []
        for li, ci in positions:
            ch = lines[li][ci]
            for alt in _CONFUSIONS.get(ch, ""):
                trial = list(lines)
                trial[li] = trial[li][:ci] + alt + trial[li][ci + 1:]
                m = _parse(trial, today)
                if m is not None and m.checks.get(fname) and m.checks.get("composite"):
                    winners.append((li, ci, ch, alt, trial))
        if len(winners) == 1:
            li, ci, ch, alt, lines = winners[0]
            fixes.append(Correction(li, ci, fname, ch, alt, "check_digit"))
            mrz = _parse(lines, today)
            if mrz is None:
                break
    return lines, fixes


def _read_group(gray: np.ndarray, group: list[_Line], flip: bool, today) -> Reading:
    ordered = list(reversed(group)) if flip else group
    n = len(ordered)
    raw = []
    for ln in ordered:
        raw.append(engine().read_line(_crop_line(gray, ln, flip)))
    pitches = [_pitch(r) if r else None for r in raw]
    if any(p is None for p in pitches):
        return Reading((), 0.0, problem="unreadable")
    if n == 3:
        fmt = "TD1"
    else:  # the last line always ends in a check digit, so it spans the full width
        last = raw[-1]
        cells = ((last[-1][2] + last[-1][3]) - (last[0][2] + last[0][3])) / 2 / pitches[-1] + 1
        fmt = "TD2" if abs(cells - 36) < abs(cells - 44) else "TD3"
    width = WIDTHS[fmt][1]
    readings = [_to_cells(r, width, p) for r, p in zip(raw, pitches)]
    lines = [r.text for r in readings]
    confs = [c for r in readings for c in r.confidences]
    confidence = float(np.mean(confs)) if confs else 0.0
    xs = [p for ln in group for p in cv2.boxPoints(ln.rect)]
    x, y, w, h = cv2.boundingRect(np.array(xs, np.float32))
    box = (float(x), float(y), float(w), float(h))
    if any(len(t) != width or "?" in t for t in lines):
        return Reading(tuple(lines), confidence, problem="unreadable", box=box)
    lines, fixes = _force_alphabet(lines, fmt)
    lines, fixes2 = _check_guided(lines, fmt, today)
    fixes += fixes2
    mrz = _parse(lines, today)
    if mrz is None:
        return Reading(tuple(lines), confidence, tuple(fixes), problem="unreadable", box=box)
    confidence *= 0.97 ** len([f for f in fixes if f.rule == "check_digit"])
    return Reading(tuple(lines), confidence, tuple(fixes), mrz,
                   None if mrz.valid else "check_digit_failed", box)


def _orientations(gray: np.ndarray):
    yield 0, gray
    yield 90, cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE)


def find_and_read(gray: np.ndarray, *, today=None, max_candidates: int = 4) -> list[Reading]:
    """Every MRZ reading the image offers, best first (several when the image shows
    several documents). Empty when nothing MRZ-like was found."""
    readings: list[Reading] = []
    for orientation, img in _orientations(gray):
        for group in _groups(_text_lines(img))[:max_candidates]:
            if any(_overlaps(group, r) for r in readings if r.orientation == orientation and r.mrz):
                continue
            first = _read_group(img, group, False, today)
            best = first
            if not (first.mrz and first.mrz.valid):
                second = _read_group(img, group, True, today)
                best = max((first, second), key=_rank)
            readings.append(Reading(best.lines, best.confidence, best.corrections, best.mrz, best.problem,
                                    best.box, orientation))
    readings.sort(key=_rank, reverse=True)
    return readings


def _overlaps(group: list[_Line], reading: Reading) -> bool:
    x, y, w, h = reading.box
    return any(x <= ln.rect[0][0] <= x + w and y <= ln.rect[0][1] <= y + h for ln in group)


def _rank(r: Reading) -> tuple:
    valid = r.mrz is not None and r.mrz.valid
    passed = sum(r.mrz.checks.values()) if r.mrz else -1
    return (valid, passed, r.confidence)
