"""`python -m biometrics`: score data sets, calibrate operating points, benchmark.

Every command loads the models once and caches one result per image, so a pairs file with
thousands of rows costs one detection and embedding per distinct image.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from .calibrate import (FTA_SCORE, draw_det, progress, read_csv, sha256_file,
                        threshold_at_fmr, verification_report, write_calibration)
from .image import ImageError, decode_image
from .models import DEFAULT_CALIBRATION, ModelError, default_models_dir
from .pipeline import FaceVerifier


class ImageScorer:
    """Per-image cache of embeddings (verification) and live scores (PAD)."""

    def __init__(self, verifier: FaceVerifier, root: Path):
        self.v = verifier
        self.root = root
        self._emb: dict[str, tuple[np.ndarray | None, str | None]] = {}

    def _read(self, rel: str) -> np.ndarray:
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            raise ImageError("unreadable_file") from None
        return decode_image(data)

    def embedding(self, rel: str) -> tuple[np.ndarray | None, str | None]:
        if rel not in self._emb:
            try:
                a = self.v.analyze(self._read(rel), retry_padded=True)
                # several prominent faces: scored on the primary (largest, most central) face,
                # and said in the reason column, since LFW-style news crops often show two people
                note = f"several_faces:{a.competing + 1}" if a.ok and a.competing else None
                self._emb[rel] = (a.embedding, note) if a.ok else (None, a.reason)
            except ImageError as e:
                self._emb[rel] = (None, e.reason)
        return self._emb[rel]

    def pair(self, a: str, b: str) -> tuple[float, str, str]:
        """(score, decision, reason)"""
        (ea, ra), (eb, rb) = self.embedding(a), self.embedding(b)
        if ea is None or eb is None:
            return FTA_SCORE, "failure_to_acquire", ra or rb or ""
        s = self.v.compare(ea, eb)
        return s, ("match" if s >= self.v.threshold else "no_match"), ";".join(x for x in (ra, rb) if x)

    def live(self, rel: str) -> tuple[float, str, str]:
        """Single-image PAD score (`PadModels.score`: PadNet + artefact cues, calibrated fusion)."""
        try:
            img = self._read(rel)
        except ImageError as e:
            return FTA_SCORE, "failure_to_acquire", e.reason
        a = self.v.analyze(img, embed=False, retry_padded=True)
        if not a.ok:
            return FTA_SCORE, "failure_to_acquire", a.reason or "no_face"
        s = self.v.pad.score(img, a.face.box)
        return s, ("live" if s >= self.v.liveness_policy.model_threshold else "attack"), ""


def _verifier(args, **kw) -> FaceVerifier:
    try:
        return FaceVerifier.load(args.models_dir, args.manifest, **kw)
    except ModelError as e:
        sys.exit(f"error: {e}")


def _score_pairs(scorer: ImageScorer, rows: list[dict]) -> list[tuple[float, str, str]]:
    return [scorer.pair(r["a"], r["b"]) for r in progress(rows, len(rows), "pairs")]


def cmd_score_pairs(args) -> None:
    v = _verifier(args, threshold=args.threshold)
    rows = read_csv(args.pairs)
    res = _score_pairs(ImageScorer(v, args.root), rows)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "score", "decision", "reason"])
        for r, (s, d, why) in zip(rows, res):
            w.writerow([r["a"], r["b"], "" if s == FTA_SCORE else f"{s:.6f}", d, why])
    fta = sum(1 for s, _, _ in res if s == FTA_SCORE)
    print(f"{len(rows)} pairs scored, {fta} failure_to_acquire, threshold {v.threshold:.4f} -> {args.out}")


def cmd_score_pad(args) -> None:
    v = _verifier(args)
    rows = read_csv(args.images)
    sc = ImageScorer(v, args.root)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "live_score", "decision", "reason"])
        for r in progress(rows, len(rows), "images"):
            s, d, why = sc.live(r["path"])
            w.writerow([r["path"], "" if s == FTA_SCORE else f"{s:.6f}", d, why])
    print(f"{len(rows)} images scored, threshold {v.liveness_policy.model_threshold:.4f} -> {args.out}")


def _labels(rows: list[dict]) -> np.ndarray:
    if "same" in rows[0]:
        return np.array([r["same"].strip() in ("1", "true", "True") for r in rows])
    if "kind" in rows[0]:
        return np.array([r["kind"] == "genuine" for r in rows])
    sys.exit("error: the pairs file needs a 'same' (0/1) or 'kind' (genuine/impostor_*) column")


def subset_reports(root: Path, rows: list[dict], scores: np.ndarray, same: np.ndarray, name: str):
    """Whole set plus, where the data set describes them, hard / random impostors and East-Asian."""
    fta = int(np.sum(~np.isfinite(scores)))
    out = [verification_report(name, scores[same], scores[~same], fta)]
    kinds = {}
    if (root / "pair_kinds.csv").is_file():
        kinds = {(r["a"], r["b"]): r["kind"] for r in read_csv(root / "pair_kinds.csv")}
    if kinds:
        kind = np.array([kinds.get((r["a"], r["b"]), "") for r in rows])
        for k in ("impostor_hard", "impostor_random"):
            m = kind == k
            if m.any():
                out.append(verification_report(f"{name} genuine vs {k[9:]}", scores[same], scores[m]))
    if (root / "identities.csv").is_file():
        ids = read_csv(root / "identities.csv")
        if ids and "group" in ids[0]:
            grp = {r["path"]: r["group"] for r in ids}
            ea = np.array([grp.get(r["a"]) == "east_asian" and grp.get(r["b"]) == "east_asian" for r in rows])
            if (ea & same).any() and (ea & ~same).any():
                out.append(verification_report(f"{name} East-Asian only", scores[ea & same], scores[ea & ~same]))
    return out


def cmd_calibrate(args) -> None:
    v = _verifier(args)
    rows = read_csv(args.pairs)
    same = _labels(rows)
    scores = np.array([s for s, _, _ in _score_pairs(ImageScorer(v, args.root), rows)])
    reps = subset_reports(args.root, rows, scores, same, args.pairs.parent.name or "pairs")
    for r in reps:
        print(r.line())
    thr = threshold_at_fmr(scores[~same], args.far)
    g, i = scores[same], scores[~same]
    det = args.det or args.calibration.with_name("det.png")
    draw_det({args.pairs.parent.name or "pairs": (g, i)}, det, f"DET {args.pairs.parent.name}/{args.pairs.name}")
    reg = v.registry
    write_calibration(args.calibration, "face", {
        "threshold": round(thr, 6), "target_fmr": args.far,
        "fnmr_at_threshold": round(float(np.mean(g < thr)), 5),
        "dataset": {"pairs": str(args.pairs), "sha256": sha256_file(args.pairs),
                    "genuine": int(same.sum()), "impostor": int((~same).sum())},
        "pipeline": {"recognizer_sha256": reg.entry("recognizer").sha256,
                     "detector_sha256": reg.entry("detector").sha256,
                     "detector": "YuNet onnxruntime 640 letterbox, score 0.6, NMS 0.3, padded retry",
                     "alignment": "68-point refined 5 points" if v.use_landmarks68 else "YuNet 5 points",
                     "score": "cosine of L2-normalised mfn512 embeddings"},
        "report": [r.as_dict() for r in reps]})
    print(f"threshold {thr:.4f} at FMR {args.far:g} written to {args.calibration}; DET curve {det}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m biometrics", description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", type=Path, default=None,
                   help=f"model directory (default EGATE_MODELS_DIR or {default_models_dir()})")
    p.add_argument("--manifest", type=Path, default=None, help="manifest.json pinning the sha256 of each model")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("score-pairs", help="score face pairs: a,b -> a,b,score,decision")
    s.add_argument("--pairs", type=Path, required=True)
    s.add_argument("--root", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threshold", type=float, default=None)
    s.set_defaults(func=cmd_score_pairs)

    s = sub.add_parser("score-pad", help="liveness per image: path -> path,live_score,decision")
    s.add_argument("--images", type=Path, required=True)
    s.add_argument("--root", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_score_pad)

    s = sub.add_parser("calibrate", help="set the face threshold for a target FMR from labelled pairs")
    s.add_argument("--pairs", type=Path, required=True)
    s.add_argument("--root", type=Path, required=True)
    s.add_argument("--far", type=float, default=0.001)
    s.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION)
    s.add_argument("--det", type=Path, default=None, help="DET curve PNG (default beside the calibration)")
    s.set_defaults(func=cmd_calibrate)

    from . import bench, pad_train
    bench.add_commands(sub)
    pad_train.add_commands(sub, bench.SHARED)

    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
