"""Synthetic document images for the MRZ reader: render, then degrade.

Every image is made from an MRZ built by `cardreader.lds.mrz` (so the check
digits are right by construction), printed in OCR-B at the ICAO pitch of
2.54 mm per character on a card or passport page of the real size, with
printed clutter above the zone, then photographed badly: turned on the
reader, seen in perspective, blurred, noisy, JPEG-compressed, unevenly lit
and partly glared. A seed fixes the whole set, so anyone can regenerate it
instead of committing images.
"""
from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cardreader.lds.mrz import build_td1, build_td2, build_td3
from cardreader.scanner.ocr import OCRB_FONT

CLUTTER_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FORMATS = ("TD1", "TD2", "TD3")
LEVELS = ("clean", "moderate", "severe")
# Document sizes in mm (ICAO 9303-3/4/5) and where the MRZ block starts from the bottom edge.
_SIZE_MM = {"TD1": (85.6, 54.0), "TD2": (105.0, 74.0), "TD3": (125.0, 88.0)}
_PITCH_MM = 2.54          # 10 characters per inch
_LINE_MM = 4.23           # 6 lines per inch
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_STATES = ("UTO", "VNM", "D<<", "FRA", "GBR", "USA", "NLD", "JPN", "BRA", "ZAF", "IND", "CAN")
_SURNAMES = ("NGUYEN", "TRAN", "LE", "PHAM", "HOANG", "VO", "COLLINS", "ERIKSSON", "MUELLER",
             "OBI", "SMITH", "GARCIA LOPEZ", "DE LA CRUZ", "OSULLIVAN", "KOWALSKI", "BIN SALEH",
             "ZHOU", "IVANOVA", "QUINTERO", "WOJCIK", "OKONKWO BELLO", "VAN DER BERG")
_GIVEN = ("ANH", "MINH THU", "EILEEN MARIE", "ANNA MARIA", "JOHN", "KWAME", "SIOBHAN", "XAVIER",
          "OLGA", "BAO NGOC", "HANS PETER", "ZOE", "QUANG VINH", "IBRAHIM", "YUKI", "BJORN")


@dataclass(frozen=True)
class Sample:
    """One generated image and the truth it was made from."""

    image: np.ndarray          # BGR uint8
    mrz: str                   # the lines, newline-separated
    format: str
    level: str
    rotation: int              # quarter turns applied (0-3)


def random_mrz(rng: random.Random, fmt: str) -> str:
    """A plausible MRZ with correct check digits; document numbers mix letters and
    digits so that O/0, I/1, B/8 and S/5 confusions have something to bite on."""
    def number() -> str:
        n = rng.choice((8, 9, 9, 9))
        return "".join(rng.choice(_LETTERS + "0123456789" * 2) for _ in range(n))

    def date(lo: int, hi: int) -> dt.date:
        return dt.date(rng.randint(lo, hi), rng.randint(1, 12), rng.randint(1, 28))

    state = rng.choice(_STATES)
    common = dict(issuing_state=state, document_number=number(), date_of_birth=date(1940, 2020),
                  sex=rng.choice("MFX") if rng.random() < 0.9 else "", date_of_expiry=date(2024, 2040),
                  nationality=rng.choice((state, rng.choice(_STATES))),
                  surname=rng.choice(_SURNAMES), given_names=rng.choice(_GIVEN))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 12)))
    if fmt == "TD1":
        return build_td1(document_code=rng.choice(("I", "ID", "IP", "AC")),
                         optional_data=digits[:15], optional_data_2=digits[:11] if rng.random() < .3 else "",
                         **common)
    if fmt == "TD2":
        return build_td2(document_code=rng.choice(("I", "ID", "AC")), optional_data=digits[:7], **common)
    return build_td3(document_code=rng.choice(("P", "PP", "PO")), optional_data=digits[:14], **common)


@lru_cache(maxsize=32)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _ocrb_size_for_pitch(pitch_px: float) -> int:
    """OCR-B is monospaced: choose the point size whose advance is the ICAO pitch."""
    probe = _font(OCRB_FONT, 100)
    return max(6, round(100 * pitch_px / probe.getlength("0")))


def render_document(mrz: str, *, px_per_mm: float = 12.0, rng: random.Random | None = None,
                    clutter: bool = True, can: str | None = None) -> np.ndarray:
    """The MRZ side of a document, flat and sharp, as BGR (the format follows from the lines)."""
    rng = rng or random.Random(0)
    lines = mrz.split("\n")
    fmt = {3: "TD1", 2: "TD2" if len(lines[0]) == 36 else "TD3"}[len(lines)]
    w_mm, h_mm = _SIZE_MM[fmt]
    w, h = round(w_mm * px_per_mm), round(h_mm * px_per_mm)
    tint = tuple(rng.randint(205, 250) for _ in range(3))
    img = Image.new("RGB", (w, h), tint)
    draw = ImageDraw.Draw(img)
    # A faint guilloche-like background, as security printing has.
    for k in range(rng.randint(4, 9)):
        colour = tuple(max(0, c - rng.randint(15, 45)) for c in tint)
        amp, per, phase = rng.uniform(2, 8) * px_per_mm, rng.uniform(15, 40) * px_per_mm, rng.uniform(0, 6.3)
        y0 = rng.uniform(0.1, 0.6) * h
        pts = [(x, y0 + amp * np.sin(phase + 2 * np.pi * x / per)) for x in range(0, w, 4)]
        draw.line(pts, fill=colour, width=max(1, round(px_per_mm * 0.15)))
    mrz_top = h - (len(lines) * _LINE_MM + 2.5) * px_per_mm
    if clutter:
        small = _font(CLUTTER_FONT, max(8, round(2.2 * px_per_mm)))
        big = _font(CLUTTER_FONT, max(10, round(3.2 * px_per_mm)))
        draw.text((4 * px_per_mm, 3 * px_per_mm), rng.choice(("REPUBLIC OF UTOPIA", "CÔNG HÒA XHCN VIỆT NAM",
                                                              "BUNDESREPUBLIK", "ROYAUME D'UTOPIE")),
                  font=big, fill=(30, 30, 80))
        y = 9 * px_per_mm
        while y < mrz_top - 4 * px_per_mm:
            label = rng.choice(("Nơi thường trú / Place of residence", "Đặc điểm nhận dạng", "Date of issue",
                                "Ngày cấp 12/03/2021", "Authority / Cơ quan cấp", "Height 1.72 m",
                                "Signature of holder", "Personal identification: mole"))
            draw.text((4 * px_per_mm + rng.uniform(0, 20) * px_per_mm, y), label, font=small, fill=(40, 40, 40))
            y += rng.uniform(3.5, 6) * px_per_mm
        # a fingerprint/photo patch and a barcode-like block, both strong edges the locator must ignore
        px = w - rng.uniform(22, 30) * px_per_mm
        draw.rectangle((px, 8 * px_per_mm, px + 18 * px_per_mm, 8 * px_per_mm + 14 * px_per_mm),
                       outline=(60, 60, 60), width=2, fill=tuple(c - 40 for c in tint))
        for i in range(int(12 * px_per_mm / 3)):
            if rng.random() < .6:
                x0 = 4 * px_per_mm + i * 3
                draw.rectangle((x0, mrz_top - 4 * px_per_mm, x0 + 1, mrz_top - 1.5 * px_per_mm), fill=(0, 0, 0))
    size = _ocrb_size_for_pitch(_PITCH_MM * px_per_mm)
    font = _font(OCRB_FONT, size)
    if can:
        _draw_can(draw, can, (w - 21 * px_per_mm, 2 * px_per_mm), px_per_mm)
    left = (w - len(lines[0]) * _PITCH_MM * px_per_mm) / 2
    ink = rng.randint(0, 40)
    for i, line in enumerate(lines):
        draw.text((left, mrz_top + (i * _LINE_MM + 0.5) * px_per_mm), line, font=font, fill=(ink, ink, ink))
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def _draw_can(draw: ImageDraw.ImageDraw, can: str, at: tuple[float, float], px_per_mm: float) -> None:
    """The CAN as ID cards print it: six OCR-B digits on their own, a small label above."""
    x, y = at
    draw.text((x, y), "CAN", font=_font(CLUTTER_FONT, max(8, round(1.6 * px_per_mm))), fill=(60, 60, 60))
    draw.text((x, y + 2.2 * px_per_mm), can, font=_font(OCRB_FONT, _ocrb_size_for_pitch(_PITCH_MM * px_per_mm)),
              fill=(15, 15, 15))


def render_front(can: str, *, px_per_mm: float = 12.0, rng: random.Random | None = None) -> np.ndarray:
    """The front of a chip ID card (TD1): title, photo, labelled fields and the CAN at the
    bottom right, as German and Vietnamese chip cards print it; no MRZ."""
    rng = rng or random.Random(0)
    w, h = round(_SIZE_MM["TD1"][0] * px_per_mm), round(_SIZE_MM["TD1"][1] * px_per_mm)
    tint = tuple(rng.randint(205, 250) for _ in range(3))
    img = Image.new("RGB", (w, h), tint)
    draw = ImageDraw.Draw(img)
    small = _font(CLUTTER_FONT, max(8, round(2.2 * px_per_mm)))
    draw.text((4 * px_per_mm, 3 * px_per_mm), rng.choice(("CĂN CƯỚC CÔNG DÂN", "PERSONALAUSWEIS", "IDENTITY CARD")),
              font=_font(CLUTTER_FONT, max(10, round(3.2 * px_per_mm))), fill=(30, 30, 80))
    draw.rectangle((4 * px_per_mm, 10 * px_per_mm, 26 * px_per_mm, 38 * px_per_mm), outline=(60, 60, 60),
                   width=2, fill=tuple(c - 60 for c in tint))
    y = 10 * px_per_mm
    for label in rng.sample(("Họ và tên / Full name", "Ngày sinh / Date of birth", "Giới tính / Sex",
                             "Quốc tịch / Nationality", "Quê quán / Place of origin", "Có giá trị đến / Expiry"), 5):
        draw.text((30 * px_per_mm, y), label, font=small, fill=(40, 40, 40))
        y += 5.5 * px_per_mm
    _draw_can(draw, can, (w - 21 * px_per_mm, h - 10 * px_per_mm), px_per_mm)
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def degrade(card: np.ndarray, level: str, rng: random.Random, *, quarter_turns: int | None = None
            ) -> tuple[np.ndarray, int]:
    """Photograph the card on the reader: `clean` is a straight, sharp scan; `moderate` is
    what a reader camera gives on a good day (any quarter turn, a few degrees of skew,
    mild perspective, blur, noise, JPEG, uneven light, a glare patch); `severe` doubles it."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    k = {"clean": 0.0, "moderate": 1.0, "severe": 2.0}[level]
    nrng = np.random.default_rng(rng.getrandbits(32))
    h, w = card.shape[:2]
    margin = round(0.12 * max(w, h))
    bg = tuple(rng.randint(20, 120) for _ in range(3))
    canvas = cv2.copyMakeBorder(card, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=bg)
    ch, cw = canvas.shape[:2]
    src = np.float32([[margin, margin], [margin + w, margin], [margin + w, margin + h], [margin, margin + h]])
    if k:
        angle = np.deg2rad(rng.uniform(-4, 4) * k)
        centre = src.mean(axis=0)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
        jitter = nrng.uniform(-0.025 * k, 0.025 * k, (4, 2)).astype(np.float32) * [w, h]
        dst = (src - centre) @ rot.T + centre + jitter
        canvas = cv2.warpPerspective(canvas, cv2.getPerspectiveTransform(src, dst.astype(np.float32)),
                                     (cw, ch), borderMode=cv2.BORDER_CONSTANT, borderValue=bg)
    img = canvas.astype(np.float32)
    if k:
        # uneven light: a linear ramp plus a soft glare spot somewhere on the card
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        gx, gy = rng.uniform(-1, 1), rng.uniform(-1, 1)
        ramp = 1.0 - 0.18 * k * (gx * (xx / cw - .5) + gy * (yy / ch - .5))
        img *= ramp[..., None]
        if rng.random() < 0.7:
            cx, cy = rng.uniform(0.2, 0.8) * cw, rng.uniform(0.2, 0.8) * ch
            r = rng.uniform(0.05, 0.12) * max(cw, ch)
            glare = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * rng.uniform(60, 110) * k / 2
            img += glare[..., None]
        sigma = rng.uniform(0.3, 0.9) * k
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img += nrng.normal(0, 3.0 * k, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    turns = rng.randrange(4) if quarter_turns is None and k else (quarter_turns or 0)
    img = np.ascontiguousarray(np.rot90(img, turns))
    quality = 95 if not k else rng.randint(max(25, int(75 - 20 * k)), 92)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), turns


def sample(rng: random.Random, fmt: str, level: str) -> Sample:
    """One random document of `fmt` photographed at `level`."""
    mrz = random_mrz(rng, fmt)
    px_per_mm = rng.uniform(9.0, 13.0) if level != "severe" else rng.uniform(7.5, 13.0)
    card = render_document(mrz, px_per_mm=px_per_mm, rng=rng)
    image, turns = degrade(card, level, rng)
    return Sample(image=image, mrz=mrz, format=fmt, level=level, rotation=turns)


def generate(out: Path, n: int, seed: int, *, formats=FORMATS, levels=LEVELS) -> Path:
    """Write n images per format and level plus `labels.jsonl` (file, format, level, mrz)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    labels = out / "labels.jsonl"
    with labels.open("w") as fh:
        for fmt in formats:
            for level in levels:
                for i in range(n):
                    s = sample(rng, fmt, level)
                    name = f"{fmt}_{level}_{i:05d}.jpg"
                    cv2.imwrite(str(out / name), s.image, [cv2.IMWRITE_JPEG_QUALITY, 97])
                    fh.write(json.dumps({"file": name, "format": fmt, "level": level, "mrz": s.mrz,
                                         "rotation": s.rotation * 90}) + "\n")
    return labels
