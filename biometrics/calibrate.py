"""Scoring labelled data, error rates (ISO/IEC 19795-1 and 30107-3 names), DET curves, calibration.

Conventions: higher score = more similar / more likely live; a comparison is a match when
score >= threshold. The threshold for a target FMR allows at most floor(FMR x impostors)
impostor scores at or above it (the rule in MODELS.md), so on 887 impostors FMR 0.1% means none.
A failure to acquire scores -inf: it is a false non-match for a genuine pair and a correct
non-match for an impostor pair, and it is counted separately.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FTA_SCORE = -math.inf


def progress(items: Iterable, total: int, label: str) -> Iterator:
    """A one-line progress bar on stderr, only when stderr is a terminal."""
    tty = sys.stderr.isatty()
    for i, x in enumerate(items, 1):
        if tty and (i == total or i % 10 == 0):
            n = int(30 * i / max(total, 1))
            sys.stderr.write(f"\r{label} [{'#' * n}{'.' * (30 - n)}] {i}/{total}")
            sys.stderr.flush()
        yield x
    if tty:
        sys.stderr.write("\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---- metrics ---------------------------------------------------------------------------------
def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """Smallest threshold with at most floor(fmr * n) impostors at or above it."""
    imp = np.sort(np.asarray(impostor, np.float64)[np.isfinite(impostor)])[::-1]
    k = int(math.floor(fmr * len(impostor) + 1e-9))
    if k >= len(imp):
        return -1.0
    return float(np.nextafter(imp[k], np.inf))


def rates(genuine: np.ndarray, impostor: np.ndarray, thr: float) -> tuple[float, float]:
    """(FMR, FNMR) at thr."""
    return float(np.mean(impostor >= thr)), float(np.mean(genuine < thr))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FMR and FNMR cross."""
    cands = np.unique(np.concatenate([genuine, impostor])[np.isfinite(np.concatenate([genuine, impostor]))])
    best = (1.0, 0.0)
    for t in cands:
        fmr, fnmr = rates(genuine, impostor, t)
        gap = abs(fmr - fnmr)
        if gap < best[0] or (gap == best[0]):
            best = (gap, t)
    fmr, fnmr = rates(genuine, impostor, best[1])
    return (fmr + fnmr) / 2, float(best[1])


@dataclass
class VerificationReport:
    name: str
    n_genuine: int
    n_impostor: int
    fta: int
    tar_1: float
    thr_1: float
    tar_01: float
    thr_01: float
    eer: float

    def line(self) -> str:
        return (f"{self.name:<34} gen {self.n_genuine:5d} imp {self.n_impostor:5d} FTA {self.fta:3d} | "
                f"TAR@FMR1% {100 * self.tar_1:6.2f} (thr {self.thr_1:.3f}) | "
                f"TAR@FMR0.1% {100 * self.tar_01:6.2f} (thr {self.thr_01:.3f}) | EER {100 * self.eer:5.2f}%")

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def verification_report(name: str, genuine, impostor, fta: int = 0) -> VerificationReport:
    g, i = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    t1, t01 = threshold_at_fmr(i, 0.01), threshold_at_fmr(i, 0.001)
    return VerificationReport(name, len(g), len(i), fta, float(np.mean(g >= t1)), t1,
                              float(np.mean(g >= t01)), t01, eer(g, i)[0])


def pad_rates(live: np.ndarray, attack: np.ndarray, thr: float) -> tuple[float, float]:
    """(APCER, BPCER) at thr: attacks accepted as live, bona fide rejected."""
    return float(np.mean(attack >= thr)), float(np.mean(live < thr))


def pad_threshold(live: np.ndarray, attack: np.ndarray, bpcer: float) -> float:
    """The highest threshold (lowest APCER) whose BPCER stays within the target."""
    live = np.sort(np.asarray(live, np.float64)[np.isfinite(live)])
    if not len(live):
        return 0.5
    k = int(math.floor(bpcer * len(live) + 1e-9))   # bona fide allowed below the threshold
    return float(live[min(k, len(live) - 1)])


# ---- DET curve -------------------------------------------------------------------------------
def draw_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "DET") -> None:
    """FNMR against FMR on log10 axes (1e-4..1), drawn with OpenCV, one colour per curve."""
    W, H, L, B, T, R = 900, 700, 90, 70, 50, 30
    img = np.full((H, W, 3), 255, np.uint8)
    lo = -4.0

    def px(fmr: float, fnmr: float) -> tuple[int, int]:
        x = (max(math.log10(max(fmr, 1e-12)), lo) - lo) / -lo
        y = (max(math.log10(max(fnmr, 1e-12)), lo) - lo) / -lo
        return int(L + x * (W - L - R)), int(H - B - y * (H - B - T))

    for e in range(int(lo), 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if v > 1:
                continue
            a, b = px(v, 1e-12)[0], px(1e-12, v)[1]
            c = (200, 200, 200) if m > 1 else (150, 150, 150)
            cv2.line(img, (a, T), (a, H - B), c, 1)
            cv2.line(img, (L, b), (W - R, b), c, 1)
        a, b = px(10.0 ** e, 1e-12)[0], px(1e-12, 10.0 ** e)[1]
        lab = f"{100 * 10.0 ** e:g}%"
        cv2.putText(img, lab, (a - 20, H - B + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.putText(img, lab, (L - 70, b + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.rectangle(img, (L, T), (W - R, H - B), (0, 0, 0), 1)
    cv2.putText(img, "FMR (false match rate)", (W // 2 - 100, H - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    cv2.putText(img, "FNMR", (10, T + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    cv2.putText(img, title, (L, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    colours = [(200, 60, 30), (30, 140, 30), (30, 30, 200), (160, 40, 160), (0, 140, 200), (90, 90, 90)]
    for k, (name, (g, i)) in enumerate(curves.items()):
        col = colours[k % len(colours)]
        ts = np.unique(np.concatenate([g, i])[np.isfinite(np.concatenate([g, i]))])
        pts = np.array([px(*rates(g, i, t)) for t in ts[:: max(1, len(ts) // 2000)]], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, col, 2, cv2.LINE_AA)
        cv2.putText(img, name, (W - R - 330, T + 25 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


# ---- calibration file ------------------------------------------------------------------------
def write_calibration(path: Path, section: str, record: dict) -> None:
    """Replace one section ('face' or 'liveness') of calibration.json, keeping the others."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc["comment"] = ("Operating points for biometrics.pipeline.FaceVerifier, written by "
                      "`python -m biometrics calibrate` / `calibrate-pad` / `train-pad`. Development data only: "
                      "recalibrate on the gate's own camera images before production.")
    record = dict(record, date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    doc[section] = record
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
