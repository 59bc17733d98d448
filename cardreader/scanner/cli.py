"""CLI: read an MRZ and a CAN from an image, generate the synthetic set, benchmark the reader.

    python -m cardreader mrz IMAGE [--json] [--reveal]
    python -m cardreader mrz-synth --out DIR --n N --seed S
    python -m cardreader bench-mrz --n 500 [--workers 2] [--max-minutes M] [--rows FILE]
    python -m cardreader bench-mrz --can --n 100          # the CAN on rendered card fronts
"""
from __future__ import annotations

import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path

from cardreader.scanner import synth

_FIELDS = ("document_code", "issuing_state", "document_number", "date_of_birth", "date_of_expiry", "sex",
           "nationality", "primary_identifier", "secondary_identifier", "optional_data", "optional_data_2")


def register(subparsers) -> None:
    p = subparsers.add_parser("mrz", help="read the printed MRZ and the CAN from a photo or scan of a document")
    p.add_argument("image", type=Path)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--reveal", action="store_true", default=None,
                   help="print the personal fields (default: on with --json, as the operator asked for them)")
    p.set_defaults(func=_cmd_mrz)
    p = subparsers.add_parser("mrz-synth", help="render synthetic TD1/TD2/TD3 document images with ground truth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=20, help="images per format and degradation level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--formats", nargs="+", default=list(synth.FORMATS), choices=synth.FORMATS)
    p.add_argument("--levels", nargs="+", default=list(synth.LEVELS), choices=synth.LEVELS)
    p.set_defaults(func=_cmd_synth)
    p = subparsers.add_parser("bench-mrz", help="accuracy, rejection and speed of the MRZ reader on generated images")
    p.add_argument("--n", type=int, default=500, help="images per format and degradation level")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--formats", nargs="+", default=list(synth.FORMATS), choices=synth.FORMATS)
    p.add_argument("--levels", nargs="+", default=list(synth.LEVELS), choices=synth.LEVELS)
    p.add_argument("--workers", type=int, default=1, help="processes (each runs one Tesseract)")
    p.add_argument("--can", action="store_true",
                   help="read the CAN from rendered card fronts instead of the MRZ (--formats is ignored)")
    p.add_argument("--max-minutes", type=float, help="stop after this long and report the images read so far "
                                                     "(taken index-major, so every format and level is covered)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--rows", type=Path, help="also write one line per image (index, outcome, reason) to this file, as they finish")
    p.set_defaults(func=_cmd_bench)


def _cmd_mrz(args) -> int:
    from cardreader.scanner import read_can, read_mrz

    result = read_mrz(args.image)
    can = read_can(args.image)
    reveal = args.json if args.reveal is None else args.reveal
    if args.json:
        print(json.dumps({**result.to_json(reveal=reveal), "can": can.to_json(reveal=reveal)}, indent=2,
                         ensure_ascii=False))
    else:
        print(f"{'OK' if result.ok else 'REJECTED'}: {result.reason or 'all check digits hold'}"
              f"{f' ({result.detail})' if result.detail else ''}"
              f" (confidence {result.confidence:.2f}, {len(result.corrections)} correction(s),"
              f" preprocessing {result.preprocessing}, {len(result.attempts) or 1} reading(s),"
              f" {result.seconds * 1000:.0f} ms)")
        if result.mrz is not None:
            for name, passed in result.checks.items():
                print(f"  check {name:<16} {'pass' if passed else 'FAIL'}")
            if reveal:
                print("\n".join(result.mrz.lines))
        print(f"CAN {'OK' if can.ok else 'REJECTED'}: {can.reason or 'six sure digits'}"
              f" (confidence {can.confidence:.2f}, unsure positions {list(can.unsure)})"
              + (f": {can.can}" if reveal and can.can else ""))
    return 0 if result.ok or can.ok else 1


def _cmd_synth(args) -> int:
    labels = synth.generate(args.out, args.n, args.seed, formats=args.formats, levels=args.levels)
    print(f"wrote {args.n * len(args.formats) * len(args.levels)} images and {labels}")
    return 0


def _bench_can(seed: int, level: str, i: int) -> dict:
    from cardreader.scanner import read_can

    rng = random.Random(f"{seed}/CAN/{level}/{i}")
    can = "".join(rng.choice("0123456789") for _ in range(6))
    image, _ = synth.degrade(synth.render_front(can, px_per_mm=rng.uniform(9.0, 13.0), rng=rng), level, rng)
    t, cpu = time.perf_counter(), time.process_time()
    r = read_can(image)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"fmt": "CAN", "level": level, "i": i, "ok": r.ok, "exact": r.can == can, "fields": int(r.can == can),
            "seconds": seconds, "cpu_seconds": cpu, "reason": r.reason, "corrected": False}


def _bench_one(job: tuple[int, str, str, int]) -> dict:
    from cardreader.lds.mrz import parse_mrz
    from cardreader.scanner import read_mrz

    seed, fmt, level, i = job
    if fmt == "CAN":
        return _bench_can(seed, level, i)
    s = synth.sample(random.Random(f"{seed}/{fmt}/{level}/{i}"), fmt, level)
    t, cpu = time.perf_counter(), time.process_time()
    r = read_mrz(s.image)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    truth = parse_mrz(s.mrz)
    exact = r.mrz is not None and "\n".join(r.mrz.lines) == s.mrz
    fields = sum(r.mrz is not None and getattr(r.mrz, f) == getattr(truth, f) for f in _FIELDS)
    return {"fmt": fmt, "level": level, "i": i, "ok": r.ok, "exact": exact, "fields": fields, "seconds": seconds,
            "cpu_seconds": cpu, "reason": r.reason, "corrected": bool(r.corrections)}


class _Serial:
    """`imap` in this process (one worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def imap(fn, jobs):
        return map(fn, jobs)


def _cmd_bench(args) -> int:
    # index-major order, so an interrupted run still covers every format and level evenly
    formats = ["CAN"] if args.can else args.formats
    jobs = [(args.seed, f, lv, i) for i in range(args.n) for f in formats for lv in args.levels]
    t0 = time.perf_counter()
    rows = []
    out = args.rows.open("w") if args.rows else None
    with (mp.get_context("fork").Pool(args.workers) if args.workers > 1 else _Serial()) as pool:
        for row in pool.imap(_bench_one, jobs):
            rows.append(row)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
            if args.max_minutes and time.perf_counter() - t0 > 60 * args.max_minutes:
                break
    if out:
        out.close()
    wall = time.perf_counter() - t0
    print(f"bench-mrz: {len(rows)} of {len(jobs)} images ({args.n} per format and level asked), seed {args.seed}, "
          f"{args.workers} worker(s), {wall:.0f} s wall")
    header = (f"{'format':<6} {'level':<9} {'n':>5} {'read exactly':>12} {'fields ok':>9} {'rejected':>8} "
              f"{'WRONG accepted':>14} {'corrected':>9} {'ms/img mean':>11} {'p95':>6} {'CPU ms':>6}")
    print(header)
    print("-" * len(header))
    figures = []
    for f in formats:
        for lv in args.levels:
            sel = [r for r in rows if r["fmt"] == f and r["level"] == lv]
            n = len(sel)
            if not n:
                continue
            times = sorted(r["seconds"] * 1000 for r in sel)
            fig = {"format": f, "level": lv, "n": n,
                   "document_accuracy": sum(r["ok"] and r["exact"] for r in sel) / n,
                   "field_accuracy": sum(r["fields"] for r in sel) / (n * (1 if f == "CAN" else len(_FIELDS))),
                   "rejected": sum(not r["ok"] for r in sel) / n,
                   "wrong_accepted": sum(r["ok"] and not r["exact"] for r in sel),
                   "corrected": sum(r["corrected"] and r["ok"] for r in sel) / n,
                   "ms_mean": statistics.fmean(times), "ms_p95": times[int(0.95 * (n - 1))],
                   "cpu_ms_mean": statistics.fmean(r["cpu_seconds"] * 1000 for r in sel),
                   "reasons": {k: sum(r["reason"] == k for r in sel) for k in {r["reason"] for r in sel} if k}}
            figures.append(fig)
            print(f"{f:<6} {lv:<9} {n:>5} {fig['document_accuracy']:>12.1%} {fig['field_accuracy']:>9.1%} "
                  f"{fig['rejected']:>8.1%} {fig['wrong_accepted']:>14d} {fig['corrected']:>9.1%} "
                  f"{fig['ms_mean']:>11.0f} {fig['ms_p95']:>6.0f} {fig['cpu_ms_mean']:>6.0f}")
    for fig in figures:
        if fig["reasons"]:
            print(f"  rejections {fig['format']} {fig['level']}: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(fig["reasons"].items())))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry while `python -m cardreader` does not list the scanner yet."""
    import argparse

    parser = argparse.ArgumentParser(prog="cardreader.scanner")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
