"""Read the printed MRZ from a photograph of a document.

Four steps, each of which can say no:

1. *Locate.* The MRZ is two or three long, parallel, equally long lines of
   equal-pitch characters at the bottom of the document. Dark-on-light strokes
   are smeared horizontally into line blobs, in the image as given and turned a
   quarter, and groups of 2-3 blobs that look like an MRZ become candidates.
2. *Recognise.* Each line is cut out along its own rotated rectangle (so skew
   is undone per line), flattened (paper divided out, the faint background
   whitened) and read by Tesseract's LSTM engine, restricted to
   ``A-Z 0-9 <`` and a single text line. OCR-B is monospaced and an MRZ line
   fills its cells, so a grid of cells is fitted from where the print starts
   and ends, matched to the engine's symbols and to where the glyphs sit (a
   quadratic, for perspective); every symbol then goes to its cell, which
   repairs the engine's dropped, doubled or split symbols. Each cell is also
   compared with the 37 OCR-B glyphs: the general-purpose English model
   confuses 0/O, C/0, K/<, and a clearly better glyph fit overrides it; the
   fit also caps each character's confidence.
   Upside-down candidates are read the other way round when the first reading
   does not parse.
3. *Correct, conservatively.* A character outside its field's alphabet (a
   letter in a date or check digit, a digit in a name or state code) becomes
   the best-fitting glyph of the allowed alphabet. Then, only for a field whose
   check digit fails, single confusion substitutions (O/0, I/1, B/8, S/5, Z/2,
   G/6, K/<) are tried where the glyph fits both about equally, and one is kept
   only when exactly one candidate satisfies both the field's and the composite
   check digit. Nothing is guessed across several positions. Then what the
   check digits cannot see must be sure, or the reading is refused: the name
   must have the ICAO 9303-3 structure (`malformed_name`), and names, codes and
   sex (no check digit), check-digit twins (characters of equal value modulo
   10 such as '<'/0/K or 8/S) and confusion pairs that only a shared check digit
   covers must be told apart by the glyph (`low_confidence`, see `_doubts`).
4. *Read again.* A refused reading of an MRZ-like band is repeated from other
   pixels (`PREPROCESSINGS`: larger, smaller, sharpened); a later reading is
   accepted only when its check digits pass and an independent reading confirms
   what no check digit covers, or when readings with identical lines settle each
   other's doubts; accepted readings that differ are refused (`_read_candidate`).

The CAN (`find_cans`) is read the same way from word-sized blobs of six
OCR-B digits; it has no check digit, so every digit must be sure.
"""
from __future__ import annotations

import dataclasses
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from cardreader.lds.mrz import MRZ, MRZError, parse_mrz

WIDTHS = {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
# Single-character confusions tried under check-digit guidance (both directions).
_CONFUSIONS = {"O": "0", "0": "OD", "D": "0", "I": "1", "1": "I", "B": "8", "8": "B", "S": "5", "5": "S",
               "Z": "2", "2": "Z", "G": "6", "6": "G", "K": "<", "<": "K"}
_AMBIGUOUS = 0.15  # a substitution is tried only where the glyph fits the alternative about as well
OCRB_FONT = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")
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
    scores: tuple[np.ndarray, ...] = ()  # per cell: OCR-B glyph correlation with each of _ALPHABET
    # per cell: for a filler right after a letter, the filler glyph's fit one pitch to the right
    # of that letter (the letter's cell is well placed, a run's first cell often is not)
    filler_after_letter: tuple[float, ...] = ()


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
    detail: str | None = None          # why `problem`, in words (positions and fields, no characters)
    preprocessing: str = "base"        # which of PREPROCESSINGS gave these lines
    flip: bool = False                 # read upside down
    attempts: tuple[tuple[str, str | None], ...] = ()  # (preprocessing, problem) of every reading made
    doubts: tuple = ()                 # the characters `_doubts` found unsure

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
    """Horizontal-ish blobs of dark strokes that could be lines of MRZ text."""
    return [ln for ln in _text_blobs(gray) if ln.length > 0.2 * max(gray.shape) and ln.length > 8 * ln.height]


def _text_blobs(gray: np.ndarray) -> list[_Line]:
    """Dark strokes smeared horizontally into word and line blobs (found on a copy scaled
    to 1000 px, returned in the coordinates of `gray`)."""
    scale = 1000.0 / max(gray.shape)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rect = lambda kw, kh: cv2.getStructuringElement(cv2.MORPH_RECT, (kw, kh))  # noqa: E731
    blackhat = cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, rect(21, 11))
    _, bw = cv2.threshold(blackhat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bw = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, rect(27, 3))
    bw = cv2.morphologyEx(bw, cv2.MORPH_OPEN, rect(11, 5))
    contours, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pieces = [(_norm_rect(cv2.minAreaRect(c)), c.reshape(-1, 2)) for c in contours if len(c) >= 5]
    pieces = [p for p in pieces if p[0].height > 5 and p[0].length > 2 * p[0].height]
    out = []
    for ln in _merge_pieces(sorted(pieces, key=lambda p: p[0].rect[0][0])):
        (cx, cy), (lw, lh), a = ln.rect
        out.append(_Line(((cx / scale, cy / scale), (lw / scale, lh / scale), a), lw / scale, lh / scale, a))
    return out


def _merge_pieces(pieces: list[tuple[_Line, np.ndarray]]) -> list[_Line]:
    """Join blobs that continue one another along the same text line (a line the smearing
    broke at a wide gap), left to right."""
    chains: list[list] = []
    for ln, pts in pieces:
        for chain in chains:
            last = chain[-1][0]
            (lx, ly), (cx, cy) = last.rect[0], ln.rect[0]
            slope = np.tan(np.deg2rad(last.angle))
            expected_y = ly + slope * (cx - lx)
            gap = (cx - lx) - (last.length + ln.length) / 2
            if abs(cy - expected_y) < 0.5 * last.height and -0.2 * last.length < gap < 2.5 * last.height \
                    and 0.6 < ln.height / last.height < 1.6:
                chain.append((ln, pts))
                break
        else:
            chains.append([(ln, pts)])
    out = []
    for chain in chains:
        if len(chain) == 1:
            out.append(chain[0][0])
        else:
            out.append(_norm_rect(cv2.minAreaRect(np.concatenate([p for _, p in chain]).astype(np.float32))))
    return out


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


# The band is read as cut (`base`); when that reading is refused it is read again from other
# pixels: larger and smaller (the engine and the glyph grid see other stroke widths and
# other JPEG blocks), and sharpened (blur merges O into 0 and K into a filler).
PREPROCESSINGS = ("base", "large", "small", "sharp")
_LINE_HEIGHT = {"base": 44, "large": 56, "small": 36, "sharp": 44}


def _crop_line(gray: np.ndarray, ln: _Line, prep: str = "base") -> np.ndarray:
    """The line cut out upright along its rectangle and flattened (`_turned` reads it the other
    way round without cutting it again)."""
    target_h = _LINE_HEIGHT[prep]
    (cx, cy), (w, h), a = ln.rect
    pad_x, pad_y = h * 0.8, h * 0.45
    scale = target_h / max(h, 1.0)
    m = cv2.getRotationMatrix2D((cx, cy), a, scale)
    ow, oh = int((w + 2 * pad_x) * scale), int((h + 2 * pad_y) * scale)
    m[0, 2] += ow / 2 - cx
    m[1, 2] += oh / 2 - cy
    crop = cv2.warpAffine(gray, m, (ow, oh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if prep == "sharp":
        crop = cv2.addWeighted(crop, 1.8, cv2.GaussianBlur(crop, (0, 0), 1.5), -0.8, 0)
    return _flatten(crop)


def _turned(crop: np.ndarray) -> np.ndarray:
    return cv2.rotate(crop, cv2.ROTATE_180)


def _flatten(crop: np.ndarray) -> np.ndarray:
    """Divide out the paper (uneven light, glare) and whiten what is much lighter than the
    print: the faint security background that runs through the zone makes the engine see
    letters in filler runs and spoils the glyph comparison."""
    paper = cv2.morphologyEx(crop, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (17, 17)))
    ratio = crop.astype(np.float32) / np.maximum(paper.astype(np.float32), 1.0)
    if float(np.percentile(ratio, 3)) > 0.85:  # no print in the crop
        return crop
    # the print's own darkness, locally (glare and blur make it lighter in places)
    h = crop.shape[0]
    ink = cv2.erode(ratio, cv2.getStructuringElement(cv2.MORPH_RECT, (h, h)))
    ink = np.minimum(cv2.blur(ink, (h, h)), 0.6)
    return (np.clip((ratio - ink) / (0.7 * (1.0 - ink)), 0.0, 1.0) * 255).astype(np.uint8)


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


_GLYPH_SIZE = (28, 34)  # template cell (w, h): one OCR-B advance by digit-top..baseline


@lru_cache(maxsize=1)
def _glyphs() -> np.ndarray:
    """OCR-B templates of the 37 MRZ characters, one advance wide, zero-mean unit-norm."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(OCRB_FONT), 100)
    adv = font.getlength("0")
    out = []
    for ch in _ALPHABET:
        img = Image.new("L", (int(np.ceil(adv)), 130), 0)
        ImageDraw.Draw(img).text((0, 0), ch, font=font, fill=255)
        band = np.asarray(img, np.float32)[_BAND[0]:_BAND[1] + 1]
        out.append(_normalise(cv2.resize(band, _GLYPH_SIZE, interpolation=cv2.INTER_AREA)))
    return np.stack(out)


_BAND = (17, 95)  # OCR-B at 100 pt: top of the digits to the bottom of the letters
_ADVANCE = 72.3   # OCR-B advance at 100 pt


def _normalise(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return a / (np.linalg.norm(a) + 1e-6)


def _glyph_scores(ink: np.ndarray, cx: float, top: float, bottom: float, pitch: float) -> np.ndarray:
    """Best normalised correlation of the cell around `cx` with each OCR-B template,
    allowing a few pixels of slack in both directions."""
    return _glyph_match(ink, cx, top, bottom, pitch)[0]


def _glyph_match(ink: np.ndarray, cx: float, top: float, bottom: float, pitch: float) -> tuple[np.ndarray, float]:
    """`_glyph_scores`, and where the best-fitting template sat: its centre's x in `ink`."""
    tw, th = _GLYPH_SIZE
    slack_x, slack_y = 4, 3
    sx, sy = pitch / tw, (bottom - top) / th
    src = np.float32([[cx - pitch / 2 - slack_x * sx, top - slack_y * sy],
                      [cx + pitch / 2 + slack_x * sx, top - slack_y * sy],
                      [cx - pitch / 2 - slack_x * sx, bottom + slack_y * sy]])
    dst = np.float32([[0, 0], [tw + 2 * slack_x, 0], [0, th + 2 * slack_y]])
    patch = cv2.warpAffine(ink, cv2.getAffineTransform(src, dst), (tw + 2 * slack_x, th + 2 * slack_y),
                           flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    if patch.std() < 1e-3:
        return np.zeros(len(_ALPHABET), np.float32), cx
    # normalised correlation of every template at every offset as one product (the templates
    # are zero-mean and unit-norm, so only each window's mean and norm are needed)
    windows = np.lib.stride_tricks.sliding_window_view(patch, (th, tw)).reshape(-1, th * tw)
    windows = windows - windows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(windows, axis=1)
    corr = (windows @ _glyphs().reshape(len(_ALPHABET), -1).T) / np.maximum(norms, 1e-6)[:, None]
    at = corr.argmax(axis=0)
    scores = corr[at, np.arange(len(_ALPHABET))].astype(np.float32)
    best_x = int(at[int(scores.argmax())]) % (2 * slack_x + 1)
    return scores, cx + (best_x - slack_x) * sx


def _baseline(ink: np.ndarray) -> float:
    """The row letters and digits stand on: the bottom of the tallest run of inked rows (a
    printed rule or a frame edge under the text is a thin run of its own)."""
    _, bw = cv2.threshold(ink.astype(np.uint8), 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    rows = bw.sum(axis=1)
    on = rows > 0.08 * rows.max()
    if not on.any():
        return float(ink.shape[0] - 1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return float(ends[k] - 1)


def _to_cells(crop: np.ndarray, symbols: list[tuple[str, float, float, float]], width: int,
              pitch: float) -> LineReading:
    """One character per monospaced cell. Every MRZ line starts with a character that is not
    a filler, so the first symbol anchors cell 0. The engine's symbol is kept unless the
    OCR-B glyph comparison clearly prefers another character (0/O, 9/O, C/0 and the like,
    which the general-purpose English model confuses); an empty cell takes the glyph's."""
    ink = 255.0 - crop.astype(np.float32)
    bottom = _baseline(ink)
    top = bottom - (_BAND[1] - _BAND[0]) / _ADVANCE * pitch  # OCR-B proportions, from the pitch
    centres, pitches, fitted = _grid_from_extent(symbols, ink, top, bottom, width, pitch)
    if not fitted:
        cells, runs, lp = _walk(symbols, width, pitch)
        centres, pitches, fitted = _cell_centres(cells, runs, width, pitch, lp)
    if fitted:  # place the engine's symbols again, now that every cell's position is known
        centres, pitches = _refine(ink, centres, pitches, top, bottom)
        cells, runs = _place(symbols, centres, pitches)
    text, conf, scores = [], [], []
    for i, cell in enumerate(cells):
        cx = float(centres[i])
        sc = _glyph_scores(ink, cx, top, bottom, float(pitches[i]))
        best = int(sc.argmax())
        if cell is None:  # the engine skipped it: the glyph if clear, a filler between fillers
            before = next((c for c in reversed(cells[:i]) if c), None)
            after = next((c for c in cells[i + 1:] if c), None)
            if sc[best] > _GLYPH_SURE:
                ch, cf = _ALPHABET[best], float(sc[best])
            elif before is not None and before[0] == "<" and (after is None or after[0] == "<"):
                ch, cf = "<", 0.5
            else:
                ch, cf = "?", 0.0
        else:
            ch, cf = cell[0], cell[1]
            margin = _GLYPH_MARGIN / 2 if _ALPHABET[best] == "<" else _GLYPH_MARGIN  # the chevron is unmistakable
            # a run's cells are trusted to the glyph once the grid is fitted: a run box often
            # swallows the check digit after it
            if (i not in runs or fitted) and _ALPHABET[best] != ch and sc[best] > _GLYPH_SURE \
                    and sc[best] - sc[_ALPHABET.index(ch)] > margin:
                ch, cf = _ALPHABET[best], min(cf, float(sc[best]))
        if ch in _ALPHABET:  # the engine's certainty, capped by how well the OCR-B glyph fits
            cf = min(cf, float(sc[_ALPHABET.index(ch)]))
        text.append(ch)
        conf.append(cf)
        scores.append(sc)
    after = [0.0] * width
    for i in range(1, width):
        if text[i] == "<" and text[i - 1] not in "<?":
            cx = float(centres[i - 1]) + float(pitches[i - 1])
            after[i] = float(_glyph_scores(ink, cx, top, bottom, float(pitches[i - 1]))[_ALPHABET.index("<")])
    return LineReading("".join(text), tuple(conf), tuple(scores), tuple(after))


def _walk(symbols: list[tuple[str, float, float, float]], width: int, pitch: float
          ) -> tuple[list[tuple[str, float, float] | None], set[int], float]:
    """The symbols put in cells by walking the line left to right, tracking the local pitch,
    which perspective stretches or squeezes along it; a symbol less than half a pitch from the
    last is a split glyph or a spurious box and competes for the same cell. Used only when no
    grid could be fitted to the print's extent. Returns the cells, the cells of filler runs and
    the local pitch at the end."""
    cells: list[tuple[str, float, float] | None] = [None] * width
    runs: set[int] = set()
    anchor_c, anchor_i, lp = (symbols[0][2] + symbols[0][3]) / 2, 0, pitch
    cells[0] = (symbols[0][0], symbols[0][1], anchor_c)
    for s in symbols[1:]:
        c = (s[2] + s[3]) / 2
        if s[0] == "<" and s[3] - s[2] > 1.5 * lp:  # one box over a run of fillers
            first = anchor_i + max(1, int(round((s[2] + lp / 2 - anchor_c) / lp)))
            last = anchor_i + int(round((s[3] - lp / 2 - anchor_c) / lp))
            for i in range(first, min(last, width - 1) + 1):
                if cells[i] is None:
                    cells[i] = ("<", s[1], anchor_c + (i - anchor_i) * lp)
                    runs.add(i)
            if last >= first:
                anchor_c, anchor_i = anchor_c + (last - anchor_i) * lp, last
            continue
        k = int(round((c - anchor_c) / lp))
        if k <= 0:  # pieces of one glyph: the cell's centre is between them
            anchor_c = (anchor_c + c) / 2
            if s[1] > cells[anchor_i][1] and anchor_i not in runs:
                cells[anchor_i] = (s[0], s[1], anchor_c)
            continue
        i = anchor_i + k
        if i >= width:  # surplus fillers pushed the line's last character past the end
            if s is symbols[-1] and s[0] != "<" and (cells[-1] is None or cells[-1][0] == "<"):
                cells[-1] = (s[0], s[1], c)
                runs.discard(width - 1)
            break
        if k == 1:
            lp = 0.8 * lp + 0.2 * (c - anchor_c)
        cells[i] = (s[0], s[1], c)
        runs.discard(i)
        anchor_c, anchor_i = c, i
    return cells, runs, lp


def _cell_centres(cells: list, runs: set[int], width: int, pitch: float, lp: float
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Each cell's centre and pitch along the line. The engine's symbol boxes are rough (a
    fifth of a pitch off is common, which spoils the glyph comparison), and perspective
    makes the pitch drift smoothly: so a quadratic in the cell number is fitted to the
    centres of the symbols the engine placed, dropping outliers, and used for every cell
    (the third value says whether it could be)."""
    known = [(i, cell[2]) for i, cell in enumerate(cells) if cell]
    placed = np.array([(i, c) for i, c in known if i not in runs], np.float64)
    idx = np.arange(width, dtype=np.float64)
    if len(placed) >= 8 and np.ptp(placed[:, 0]) >= width / 3:
        keep = np.ones(len(placed), bool)
        for _ in range(3):
            coef = np.polyfit(placed[keep, 0], placed[keep, 1], 2)
            resid = np.abs(np.polyval(coef, placed[:, 0]) - placed[:, 1])
            new = resid < 0.3 * pitch
            if new.sum() < 8 or (new == keep).all():
                break
            keep = new
        slope = np.polyval(np.polyder(coef), idx)
        if (slope > 0.7 * pitch).all() and (slope < 1.4 * pitch).all():
            return np.polyval(coef, idx), slope, True
    centres = np.interp(idx, [k for k, _ in known], [c for _, c in known])
    if known[-1][0] < width - 1:  # extrapolate beyond the last symbol with the local pitch
        tail = np.arange(known[-1][0] + 1, width)
        centres[tail] = known[-1][1] + (tail - known[-1][0]) * lp
    return centres, np.full(width, pitch), False


def _grid_from_extent(symbols: list[tuple[str, float, float, float]], ink: np.ndarray, top: float, bottom: float,
                      width: int, pitch: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """The cell grid from where the print starts and ends: an MRZ line fills all its cells,
    so the first symbol's centre and the last inked column span the line. The engine's
    symbols are then matched to their nearest cells and a quadratic (perspective) refitted,
    twice, so a symbol the engine added or dropped shifts no other cell."""
    band = ink[max(0, int(top)):int(bottom) + 1]
    if band.size == 0:
        return np.zeros(width), np.zeros(width), False
    cols = np.flatnonzero(band.max(axis=0) > 0.5 * band.max())
    first = (symbols[0][2] + symbols[0][3]) / 2
    if len(cols) == 0 or cols[-1] <= first:
        return np.zeros(width), np.zeros(width), False
    p = (cols[-1] - first) / (width - 0.5)
    if abs(p - pitch) > 0.12 * pitch:  # something inked beyond the line's end, or a cut line
        return np.zeros(width), np.zeros(width), False
    idx = np.arange(width, dtype=np.float64)
    coef = np.array([0.0, p, first])
    centres = [(s[2] + s[3]) / 2 for s in symbols if not (s[0] == "<" and s[3] - s[2] > 1.5 * p)]
    for _ in range(3):
        grid = np.polyval(coef, idx)
        pts = []
        for c in centres:
            i = int(np.argmin(np.abs(grid - c)))
            if abs(grid[i] - c) < 0.3 * p:
                pts.append((i, c))
        pts = np.array(pts, np.float64)
        if len(pts) < min(8, width - 1) or np.ptp(pts[:, 0]) < width / 2:
            return np.zeros(width), np.zeros(width), False
        coef = np.polyfit(pts[:, 0], pts[:, 1], 2)
    slope = np.polyval(np.polyder(coef), idx)
    if not ((slope > 0.8 * p).all() and (slope < 1.25 * p).all()):
        return np.zeros(width), np.zeros(width), False
    return np.polyval(coef, idx), slope, True


def _refine(ink: np.ndarray, centres: np.ndarray, pitches: np.ndarray, top: float, bottom: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Move the grid to where the glyphs are: the engine's boxes (split chevrons, a box over
    a filler and the digit after it) can bend it by a fraction of a pitch near the line's
    end. The quadratic is refitted to the centres of the cells whose best template fits well."""
    idx = np.arange(len(centres), dtype=np.float64)
    pts = []
    for i, (c, p) in enumerate(zip(centres, pitches)):
        sc, x = _glyph_match(ink, float(c), top, bottom, float(p))
        if sc.max() > _GLYPH_SURE:
            pts.append((i, x))
    if len(pts) < len(centres) // 2:
        return centres, pitches
    pts = np.array(pts, np.float64)
    coef = np.polyfit(pts[:, 0], pts[:, 1], 2)
    resid = np.abs(np.polyval(coef, pts[:, 0]) - pts[:, 1])
    keep = resid < 0.15 * float(np.median(pitches))
    if keep.sum() >= len(centres) // 2:
        coef = np.polyfit(pts[keep, 0], pts[keep, 1], 2)
    slope = np.polyval(np.polyder(coef), idx)
    if not ((slope > 0.8 * pitches).all() and (slope < 1.25 * pitches).all()):
        return centres, pitches
    return np.polyval(coef, idx), slope


def _place(symbols: list[tuple[str, float, float, float]], centres: np.ndarray, pitches: np.ndarray
           ) -> tuple[list[tuple[str, float, float] | None], set[int]]:
    """Each symbol into the cell whose centre is nearest (within 0.4 pitch, else it is a
    spurious box); a box spanning several cells is a run of fillers; of two symbols
    competing for one cell (a split glyph) the surer one stays."""
    cells: list[tuple[str, float, float] | None] = [None] * len(centres)
    runs: set[int] = set()
    for ch, cf, x0, x1 in symbols:
        c = (x0 + x1) / 2
        if ch == "<" and x1 - x0 > 1.5 * float(np.median(pitches)):
            for i in np.flatnonzero((centres > x0) & (centres < x1)):
                if cells[i] is None:
                    cells[i] = ("<", cf, float(centres[i]))
                    runs.add(int(i))
            continue
        i = int(np.argmin(np.abs(centres - c)))
        if abs(centres[i] - c) < 0.4 * pitches[i] and (cells[i] is None or i in runs or cf > cells[i][1]):
            cells[i] = (ch, cf, c)
            runs.discard(i)
    return cells, runs


_GLYPH_MARGIN = 0.06
_UNCHECKED = frozenset({"document_code", "issuing_state", "name", "sex", "nationality"})
_UNCHECKED_MIN = 0.6
_FIT_FLOOR = 0.5     # a checked character whose glyph fits worse than this was cut out of the wrong cell
_TWIN_MARGIN = 0.1   # how much better the glyph must fit than a check-digit twin's
_TWIN_MIN = 0.4      # a twin fitting worse than this is no contender
_TWIN_SHARP = 0.85   # ... unless the glyph fits this well and the engine, sure, read the same


def _twin_contends(fit: float, twin: float, engine_agrees: bool) -> bool:
    """Whether a check-digit twin fits too nearly as well as the character read. Some OCR-B
    pairs look alike at any sharpness (0 and U correlate about 0.9): for a glyph that fits
    sharply and that the engine read too, the twin's misfit must be 1.6 times the glyph's."""
    if twin <= max(fit - _TWIN_MARGIN, _TWIN_MIN):
        return False
    return not (engine_agrees and fit >= _TWIN_SHARP and (1 - twin) >= 1.6 * (1 - fit))
_GLYPH_SURE = 0.75  # a glyph fit below this never overrides the engine


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


_DIGITS = frozenset("0123456789<")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ<")


def _force_alphabet(lines: list[str], fmt: str, scores) -> tuple[list[str], list[Correction]]:
    """Positional knowledge: a digit where only letters may stand (or the reverse) becomes the
    best-fitting OCR-B glyph of the allowed alphabet."""
    fixes, out = [], []
    for li, (line, (kinds, names)) in enumerate(zip(lines, _field_map(fmt))):
        chars = list(line)
        for ci, (ch, kind) in enumerate(zip(chars, kinds)):
            if names[ci] == "document_number_check":
                kind = "d"
            allowed = _DIGITS if kind == "d" else _LETTERS if kind == "a" else None
            if allowed is None or ch in allowed:
                continue
            sc = scores[li][ci]
            new = max(allowed, key=lambda c: sc[_ALPHABET.index(c)])
            chars[ci] = new
            fixes.append(Correction(li, ci, names[ci], ch, new, "alphabet"))
        out.append("".join(chars))
    return out, fixes


def _parse(lines: list[str], today) -> MRZ | None:
    try:
        return parse_mrz("\n".join(lines), today=today)
    except MRZError:
        return None


def _check_guided(lines: list[str], fmt: str, today, scores) -> tuple[list[str], list[Correction]]:
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
            sc = scores[li][ci]
            for alt in _CONFUSIONS.get(ch, ""):
                if sc[_ALPHABET.index(alt)] < sc[_ALPHABET.index(ch)] - _AMBIGUOUS:
                    continue
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


def _value(ch: str) -> int:
    return 0 if ch == "<" else int(ch) if ch.isdigit() else ord(ch) - 55


@dataclass(frozen=True)
class Doubt:
    """Why one character of a reading is not sure. A `hard` doubt refuses the reading by
    itself; soft doubts refuse it when two fall under one check digit (`group`)."""

    line: int
    column: int
    field: str
    why: str
    hard: bool
    group: str = ""

    def __str__(self) -> str:
        return f"line {self.line + 1} column {self.column + 1} ({self.field}): {self.why}"


def _doubts(lines: list[str], fmt: str, readings: list[LineReading]) -> list[Doubt]:
    """The characters of a reading that parses where a misread could hide. The check digits
    are modulo 10 over character values (A=10 ... Z=35, '<'=0), so they cannot tell '<' from
    0, A, K, U, nor 8 from I, S, nor 6 from G, and so on: such *twins* must be told apart by
    the glyph. Names, codes and sex carry no check digit at all: every letter there must be
    sure, and so must a filler next to a letter (a name shifted or cut by one cell reads as
    a valid MRZ; a filler after a letter may also be sure one pitch right of that letter);
    there the OCR-B glyph must not fit another character better than the one read (a K read
    as a filler), nor, where the engine read otherwise (a digit forced to a letter), leave
    less than a clear margin. In checked fields a letter or digit whose glyph barely fits
    was cut from the wrong cell. Softer doubts: a low certainty, a glyph that fits another
    character better, or a confusion partner (O/0, B/8, ...) the glyph fits nearly as well;
    one under a check digit shows (weights 7, 3, 1 are prime to 10), two can cancel out (0
    read O three times in TD2 optional data, which only the composite covers).
    (Fillers in long runs fit their interpolated cells loosely; they only have to beat
    plausible twins.)"""
    out: list[Doubt] = []
    for li, (line, reading, (kinds, names)) in enumerate(zip(lines, readings, _field_map(fmt))):
        for ci, ch in enumerate(line):
            name, sc = names[ci], reading.scores[ci]
            hard = lambda why: out.append(Doubt(li, ci, name, why, True))  # noqa: E731
            fit = float(sc[_ALPHABET.index(ch)])
            conf = reading.confidences[ci] if reading.text[ci] == ch else fit
            if name in _UNCHECKED:
                rival = max(float(sc[_ALPHABET.index(t)]) for t in _LETTERS if t != ch)
                if reading.text[ci] != ch and (fit < _GLYPH_SURE or fit - rival < _GLYPH_MARGIN):
                    hard("the glyph cannot confirm the character forced into the field")
                    continue
                if ch == "<" and ci > 0 and line[ci - 1] != "<" and names[ci - 1] == name:
                    if reading.text[ci] == ch and reading.filler_after_letter:
                        conf = max(conf, reading.filler_after_letter[ci])
                before_letter = ci + 1 < len(line) and names[ci + 1] == name and line[ci + 1] != "<"
                after_letter = ci > 0 and names[ci - 1] == name and line[ci - 1] != "<"
                if ch != "<" or before_letter or after_letter:
                    if conf < _UNCHECKED_MIN:
                        hard("uncertain character in a field without a check digit")
                    elif rival > fit:
                        hard("the glyph fits another character better, no check digit to decide")
                continue
            allowed = _DIGITS if kinds[ci] == "d" or name.endswith("_check") else _ALPHABET
            twins = [t for t in allowed if t != ch and _value(t) % 10 == _value(ch) % 10]
            if any(_twin_contends(fit, float(sc[_ALPHABET.index(t)]), reading.text[ci] == ch and conf >= _GLYPH_SURE)
                   for t in twins):
                hard("the glyph cannot tell check-digit twins apart")
            elif ch != "<" and fit < _FIT_FLOOR:
                hard("the glyph barely fits (cut from the wrong cell?)")
            elif ch != "<":
                disputed = max(float(sc[_ALPHABET.index(t)]) for t in allowed if t != ch) > fit
                contested = any(t in allowed and float(sc[_ALPHABET.index(t)]) > fit - _TWIN_MARGIN
                                for t in _CONFUSIONS.get(ch, ""))
                if conf < _UNCHECKED_MIN or disputed or contested:
                    group = name.removesuffix("_check")
                    if group in ("optional_data", "optional_data_2") and fmt != "TD3":
                        group = "composite"  # only the composite check covers these
                    out.append(Doubt(li, ci, name, "uncertain", False, group))
    return out


def _verdict(doubts_per_reading: list[list[Doubt]]) -> str | None:
    """Why readings of identical lines (one, or several from other preprocessings) must be
    refused, None if they need not: a character is doubtful only where every reading
    doubts it (an independent reading that is sure of it, and agrees on every line,
    settles it), hard only where every reading's doubt is hard."""
    per_pos: dict[tuple[int, int], list[Doubt]] = {}
    for doubts in doubts_per_reading:
        for d in doubts:
            per_pos.setdefault((d.line, d.column), []).append(d)
    left = [ds for ds in per_pos.values() if len(ds) == len(doubts_per_reading)]
    for ds in sorted(left, key=lambda ds: (ds[0].line, ds[0].column)):
        if all(d.hard for d in ds):
            return str(ds[0])
    groups: dict[str, list[Doubt]] = {}
    for ds in left:
        soft = next(d for d in ds if not d.hard)
        groups.setdefault(soft.group, []).append(soft)
    for group, ds in groups.items():
        if len(ds) > 1:
            return f"{ds[1]}: two uncertain characters under one check digit ({group}) could cancel out"
    return None


_NAME = re.compile(r"[A-Z]+(<[A-Z]+)*(<<[A-Z]+(<[A-Z]+)*)?")


def _name_malformed(lines: list[str], fmt: str) -> bool:
    """ICAO 9303-3 name structure: the primary identifier, `<<`, the secondary identifier,
    components separated by single fillers, fillers to the end. A name that breaks it
    (a run of three fillers before more letters, a leading filler, two `<<`) is a misread
    that no check digit would catch: a filler inserted or a K taken for one."""
    field = lines[2] if fmt == "TD1" else lines[0][5:]
    return _NAME.fullmatch(field.rstrip("<")) is None


def _read_group(cut: list[np.ndarray], group: list[_Line], flip: bool, today, prep: str = "base") -> Reading:
    """Read `group` from `cut`, its lines cut out with `prep` (`_crop_line`), upright and in
    order; `flip` reads them upside down."""
    n = len(group)
    crops = [_turned(c) for c in reversed(cut)] if flip else cut
    raw = [engine().read_line(c) for c in crops]
    pitches = [_pitch(r) if r else None for r in raw]
    done = dict(preprocessing=prep, flip=flip)
    if any(p is None for p in pitches):
        return Reading((), 0.0, problem="unreadable", detail="a line without enough symbols", **done)
    if n == 3:
        fmt = "TD1"
    else:  # the last line always ends in a check digit, so it spans the full width
        last = raw[-1]
        cells = ((last[-1][2] + last[-1][3]) - (last[0][2] + last[0][3])) / 2 / pitches[-1] + 1
        fmt = "TD2" if abs(cells - 36) < abs(cells - 44) else "TD3"
    width = WIDTHS[fmt][1]
    readings = [_to_cells(c, r, width, p) for c, r, p in zip(crops, raw, pitches)]
    lines = [r.text for r in readings]
    confs = [c for r in readings for c in r.confidences]
    confidence = float(np.mean(confs)) if confs else 0.0
    xs = [p for ln in group for p in cv2.boxPoints(ln.rect)]
    x, y, w, h = cv2.boundingRect(np.array(xs, np.float32))
    done.update(box=(float(x), float(y), float(w), float(h)))
    if any(len(t) != width or "?" in t for t in lines):
        return Reading(tuple(lines), confidence, problem="unreadable", detail="cells no glyph fills surely", **done)
    lines, fixes = _force_alphabet(lines, fmt, [r.scores for r in readings])
    lines, fixes2 = _check_guided(lines, fmt, today, [r.scores for r in readings])
    fixes += fixes2
    mrz = _parse(lines, today)
    if mrz is None:
        return Reading(tuple(lines), confidence, tuple(fixes), problem="unreadable", detail="no MRZ layout", **done)
    if _name_malformed(lines, fmt):
        return Reading(tuple(lines), confidence, tuple(fixes), mrz, "malformed_name",
                       detail="the name breaks the ICAO 9303 structure (fillers inserted or a letter lost)", **done)
    doubts = tuple(_doubts(lines, fmt, readings))
    done.update(doubts=doubts)
    why = _verdict([list(doubts)])
    if why:
        return Reading(tuple(lines), confidence, tuple(fixes), mrz, "low_confidence", detail=why, **done)
    confidence *= 0.97 ** len([f for f in fixes if f.rule == "check_digit"])
    failed = [k for k, ok in mrz.checks.items() if not ok] + list(mrz.problems)
    return Reading(tuple(lines), confidence, tuple(fixes), mrz, "check_digit_failed" if failed else None,
                   detail=", ".join(failed) or None, **done)


def _orientations(gray: np.ndarray):
    yield 0, gray
    yield 90, cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _accepted(r: Reading) -> bool:
    return r.mrz is not None and r.mrz.valid and r.problem is None


def _mrz_like(r: Reading) -> bool:
    """Lines of one format's width, nearly every cell filled: worth reading again (printed
    clutter that happens to form a group leaves many cells empty)."""
    return (len(r.lines) in (2, 3) and len({len(t) for t in r.lines}) == 1
            and (len(r.lines[0]), len(r.lines)) in {(w, n) for n, w in WIDTHS.values()}
            and sum(t.count("?") for t in r.lines) <= _MAX_EMPTY * sum(map(len, r.lines)))


_MAX_EMPTY = 0.3  # share of cells


def _unchecked_text(r: Reading) -> str:
    """The characters no check digit covers (codes, names, sex, nationality), in order."""
    fmt = {3: "TD1", 2: "TD2" if len(r.lines[0]) == 36 else "TD3"}[len(r.lines)]
    return "".join(ch for line, (_, names) in zip(r.lines, _field_map(fmt))
                   for ch, name in zip(line, names) if name in _UNCHECKED)


def _read_candidate(img: np.ndarray, group: list[_Line], today) -> Reading:
    """One candidate band, read with the default preprocessing and, when that reading is
    refused, again with each of `PREPROCESSINGS` until one is accepted. Independent
    readings (other pixels of the same band) are used two ways, both needing check digits
    that pass: a reading refused only for doubts that another reading with identical lines
    is sure of is accepted (`_verdict`); a reading accepted on its own is kept only when
    another reading agrees with it on every character no check digit covers (a name misread
    the same way from different pixels is unlikely). Two accepted readings that differ are
    refused as `inconsistent_reads`. A candidate that does not look like an MRZ (printed
    clutter) is not read again, so clutter costs one reading."""
    cut = [_crop_line(img, ln) for ln in group]  # both ways up read the same cut
    first = _read_group(cut, group, False, today)
    if not _accepted(first):
        second = _read_group(cut, group, True, today)
        first = max((first, second), key=_rank)
    if _accepted(first) or not _mrz_like(first):
        return first
    tried = [first]
    for prep in PREPROCESSINGS[1:]:
        r = _read_group([_crop_line(img, ln, prep) for ln in group], group, first.flip, today, prep)
        tried.append(r)
        if not _mrz_like(r):
            continue
        accepted = [p for p in tried if _accepted(p)]
        same = [p for p in tried if p.lines == r.lines and p.mrz is not None and p.mrz.valid
                and p.problem in (None, "low_confidence")]
        settled = len(same) >= 2 and _verdict([list(p.doubts) for p in same]) is None
        if len({p.lines for p in accepted} | ({r.lines} if settled else set())) > 1:
            return _with_attempts(dataclasses.replace(
                r, problem="inconsistent_reads",
                detail="two preprocessings gave different MRZs that both pass their check digits"), tried)
        if settled:
            return _with_attempts(dataclasses.replace(r, problem=None, detail=(
                f"{len(same)} readings agree and settle each other's doubts")), tried)
        for p in accepted:  # confirmed by another reading on what no check digit covers
            if any(_unchecked_text(o) == _unchecked_text(p) for o in tried if o is not p and _mrz_like(o)):
                return _with_attempts(p, tried)
    best = max(tried, key=_rank)
    if _accepted(best):  # passed its check digits, but nothing confirmed its names
        best = dataclasses.replace(best, problem="unconfirmed",
                                   detail="no second reading agreed on the fields without a check digit")
    return _with_attempts(best, tried)


def _with_attempts(r: Reading, tried: list[Reading]) -> Reading:
    return dataclasses.replace(r, attempts=tuple((t.preprocessing, t.problem) for t in tried))


def find_and_read(gray: np.ndarray, *, today=None, max_candidates: int = 4) -> list[Reading]:
    """Every MRZ reading the image offers, best first (several when the image shows
    several documents). Empty when nothing MRZ-like was found."""
    readings: list[Reading] = []
    for orientation, img in _orientations(gray):
        for group in _groups(_text_lines(img))[:max_candidates]:
            if any(_overlaps(group, r) for r in readings if r.orientation == orientation and r.mrz):
                continue
            readings.append(dataclasses.replace(_read_candidate(img, group, today), orientation=orientation))
    readings.sort(key=_rank, reverse=True)
    return readings


def _overlaps(group: list[_Line], reading: Reading) -> bool:
    x, y, w, h = reading.box
    return any(x <= ln.rect[0][0] <= x + w and y <= ln.rect[0][1] <= y + h for ln in group)


def _rank(r: Reading) -> tuple:
    valid = r.mrz is not None and r.mrz.valid and r.problem is None
    passed = sum(r.mrz.checks.values()) if r.mrz else -1
    return (valid, passed, r.confidence)


# --- the Card Access Number -------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class CanReading:
    """Six digits read from one word-sized blob, with each digit's certainty."""

    digits: str
    confidences: tuple[float, ...]
    unsure: tuple[int, ...]  # positions whose glyph or engine certainty is not enough
    box: tuple[float, float, float, float] = (0, 0, 0, 0)
    orientation: int = 0

    def __repr__(self) -> str:
        return f"CanReading(unsure={self.unsure})"


CAN_DIGITS = 6
_CAN_SURE = 0.75  # every CAN digit's fit (engine certainty capped by the OCR-B glyph) must reach this


def find_cans(gray: np.ndarray, *, max_candidates: int = 24) -> list[CanReading]:
    """Every six-digit OCR-B number the image shows (the CAN is printed so, on its own), in
    the image as given and turned a quarter; upside-down blobs are read the other way round.
    The check digits that guard the MRZ do not exist here, so each digit must be sure on
    both opinions, the engine's and the glyph's, with a clear margin over every other digit."""
    out: list[CanReading] = []
    for orientation, img in _orientations(gray):
        blobs = [b for b in _text_blobs(img) if 3.0 < b.length / b.height < 10.0]
        for blob in sorted(blobs, key=lambda b: -b.height)[:max_candidates]:
            crop = _crop_line(img, blob)
            upright = _read_can(crop, blob, orientation)
            turned = _read_can(_turned(crop), blob, orientation)
            if upright is None or turned is None:
                reading = upright or turned
            elif upright.unsure or turned.unsure:  # the way up where the glyphs fit better
                reading = min((upright, turned), key=lambda r: (len(r.unsure), -sum(r.confidences)))
            else:  # sure both ways up (0, 1, 8 and 6/9 turn into each other): say so
                reading = CanReading(upright.digits, upright.confidences, tuple(range(CAN_DIGITS)),
                                     upright.box, orientation)
            if reading is not None:
                out.append(reading)
    return out


def _read_can(crop: np.ndarray, blob: _Line, orientation: int) -> CanReading | None:
    symbols = engine().read_line(crop)  # a digit too many or too few is settled by the cells
    if not CAN_DIGITS - 1 <= len(symbols) <= CAN_DIGITS + 2 or not all(s[0].isdigit() for s in symbols):
        return None
    pitch = _pitch(symbols)
    if pitch is None:
        return None
    cells = _to_cells(crop, symbols, CAN_DIGITS, pitch)
    if not cells.text.isdigit():
        return None
    digit_idx = [_ALPHABET.index(d) for d in "0123456789"]
    unsure = []
    for i, (ch, conf, sc) in enumerate(zip(cells.text, cells.confidences, cells.scores)):
        fit = float(sc[_ALPHABET.index(ch)])
        rival = max(float(sc[j]) for j in digit_idx if _ALPHABET[j] != ch)
        if conf < _CAN_SURE or fit - rival < _GLYPH_MARGIN:
            unsure.append(i)
    if len(unsure) > CAN_DIGITS // 2:  # not an OCR-B number at all (printed clutter)
        return None
    (cx, cy), (w, h), _ = blob.rect
    return CanReading(cells.text, cells.confidences, tuple(unsure), (cx - w / 2, cy - h / 2, w, h), orientation)
