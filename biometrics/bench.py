"""Benchmarks (figures printed, never asserted): accuracy on the dev data, speed per stage.

`bench-speed` runs, in one process on the same images and the same model files, our pipeline
and a peer pipeline built from OpenCV's own face API (cv2.FaceDetectorYN at the frame's size +
cv2.FaceRecognizerSF.alignCrop, then the same recognizer through onnxruntime), and the dlib-based
`face_recognition` package when it is installed.
"""
from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from .align import align, five_from_68
from .calibrate import draw_det, progress, read_csv
from .detect import competing_faces, primary_face
from .pipeline import APPEARANCE_EVERY
from .liveness import moire_score, screen_border_sides
from .quality import assess
from .recognize import cosine

SHARED = Path(os.environ.get("EGATE_SHARED_DIR", Path(__file__).resolve().parent.parent.parent / "shared"))


def add_commands(sub) -> None:
    s = sub.add_parser("bench-accuracy", help="TAR@FMR, EER on faces-dev and faces-dev-hard; APCER/BPCER on pad-dev")
    s.add_argument("--data", type=Path, default=SHARED / "data")
    s.add_argument("--det", type=Path, default=Path("det-dev.png"))
    s.add_argument("--compare-landmarks", action="store_true",
                   help="also run with YuNet's five points (no 68-point refinement)")
    s.set_defaults(func=cmd_bench_accuracy)
    s = sub.add_parser("bench-speed", help="per-stage latency, frames per second and memory vs peer pipelines")
    s.add_argument("--data", type=Path, default=SHARED / "data")
    s.add_argument("--frames", type=int, default=60)
    s.set_defaults(func=cmd_bench_speed)
    s = sub.add_parser("bench-pad", help="APCER per attack species / BPCER per single-image PAD cue, "
                       "real (pad-dev) and simulated (held-out seeds) attacks; planar cue latency")
    s.add_argument("--data", type=Path, default=SHARED / "data")
    s.add_argument("--faces", type=int, default=60, help="faces-dev images used as bona fide and attack sources")
    s.add_argument("--seed", type=int, default=900_000, help="generator seed base (keep apart from training)")
    s.set_defaults(func=cmd_bench_pad)


def cmd_bench_accuracy(args) -> None:
    from .__main__ import ImageScorer, _labels, _verifier, pad_report, pad_scores, subset_reports
    variants = [True, False] if args.compare_landmarks else [True]
    curves = {}
    for use68 in variants:
        v = _verifier(args, use_landmarks68=use68)
        tag = "68-pt" if use68 else "yunet-5pt"
        print(f"== face verification ({tag} alignment), threshold in use {v.threshold:.4f}")
        for name in ("faces-dev", "faces-dev-hard"):
            root = args.data / name
            rows = read_csv(root / "pairs.csv")
            same = _labels(rows)
            sc = ImageScorer(v, root)
            scores = np.array([sc.pair(r["a"], r["b"])[0] for r in progress(rows, len(rows), name)])
            for r in subset_reports(root, rows, scores, same, name):
                print("  " + r.line())
            g, i = scores[same], scores[~same]
            print(f"  {name}: at the calibrated threshold {v.threshold:.4f}: "
                  f"FMR {100 * np.mean(i >= v.threshold):.2f}%  FNMR {100 * np.mean(g < v.threshold):.2f}%")
            curves[f"{name} {tag}"] = (g, i)
    draw_det(curves, args.det, "DET, dev data")
    print(f"DET curve written to {args.det}")
    v = _verifier(args)
    root = args.data / "pad-dev"
    rows = read_csv(root / "labels.csv")
    labels = np.array([r["label"] == "live" for r in rows])
    scores, groups = pad_scores(v, root, rows)
    thr = v.liveness_policy.model_threshold
    print(f"== PAD single image (MiniFASNet V2+V1SE and Faceplugin, crops as given), threshold {thr:.4f}; "
          "only replay attacks in pad-dev")
    print("\n".join(pad_report(scores, labels, groups, thr)))


def _frames(data: Path, n: int) -> list[np.ndarray]:
    """640x480 'camera frames': dev-hard portraits placed on a grey 4:3 canvas, plus the demo."""
    imgs = []
    demo = cv2.imread(str(data / "demo" / "eileen_collins_nasa.png"))
    paths = sorted((data / "faces-dev-hard" / "images").glob("*/*.jpg"))[: n - 1]
    for src in ([demo] if demo is not None else []) + [cv2.imread(str(p)) for p in paths]:
        if src is None:
            continue
        canvas = np.full((480, 640, 3), 110, np.uint8)
        s = min(440 / src.shape[0], 600 / src.shape[1])
        r = cv2.resize(src, (int(src.shape[1] * s), int(src.shape[0] * s)))
        y, x = (480 - r.shape[0]) // 2, (640 - r.shape[1]) // 2
        canvas[y:y + r.shape[0], x:x + r.shape[1]] = r
        imgs.append(canvas)
    return imgs[:n]


def moving(img: np.ndarray, n: int = 20, seed: int = 0) -> list[np.ndarray]:
    """`n` frames of one still with small head movements (rotation, scale, shift) as a camera would
    see them."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.normal(0, 1.5), 1 + rng.normal(0, 0.02))
        m[:, 2] += rng.normal(0, 3, 2)
        out.append(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return out


def cmd_bench_speed(args) -> None:
    """Three pipelines on the same frames, interleaved frame by frame so a busy machine slows all
    of them alike: (a) every stage on every frame with the square-letterboxed detector, as the
    capture loop ran before; (b) the capture loop as it runs now (`Capture.step`: detector at the
    frame's aspect, PAD models every APPEARANCE_EVERY-th frame, embeddings on chosen frames), per
    stage as the mean cost per frame; (c) OpenCV's own face API as the peer."""
    from .__main__ import _verifier
    from .detect import YuNetDetector
    from .models import ModelRegistry
    from .pipeline import STAGES, Capture, Reference
    v = _verifier(args)
    seqs = [moving(f, 10, i) for i, f in enumerate(_frames(args.data, max(1, args.frames // 10)))]
    frames = [f for seq in seqs for f in seq]
    mdir = v.registry.models_dir
    square = YuNetDetector(ModelRegistry(mdir, v.registry.manifest_path).session("detector"))
    det = cv2.FaceDetectorYN.create(str(mdir / v.registry.entry("detector").file), "", (640, 480), 0.6, 0.3)
    det.setInputSize((640, 480))
    try:
        sf = cv2.FaceRecognizerSF.create(str(mdir / v.registry.entry("recognizer").file), "")
    except cv2.error:
        sf = None
    try:
        import face_recognition  # optional, dlib-based
    except Exception:
        face_recognition = None
    print(f"{len(frames)} frames of 640x480 ({len(seqs)} people x 10 moving frames), {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}, onnxruntime intra-op threads "
          f"{v.registry.session('detector').get_session_options().intra_op_num_threads}")
    for f in frames[:3]:
        v.analyze(f)
        square.detect(f)
    before = {k: [] for k in STAGES + ("frame",)}
    after = dict.fromkeys(STAGES, 0.0)
    after_frames: list[float] = []
    peer, dlib = [], []
    n_after = 0
    for seq in seqs:
        ref_emb = v.analyze(seq[0]).embedding
        if ref_emb is None:
            continue
        cap = Capture(v, Reference(True, embedding=ref_emb), time.monotonic)
        for img in seq:
            # (a) every stage on every frame, square letterbox
            t0 = time.perf_counter()
            faces = square.detect(img)
            t1 = time.perf_counter()
            if not faces:
                continue
            face = primary_face(faces, img.shape)
            lm = v.landmarks.predict(img, face.box)
            aligned = align(img, five_from_68(lm))
            t2 = time.perf_counter()
            eyes = v.eyes.p_open(img, lm)
            assess(img, face, aligned, competing_faces(faces, face), eyes)
            t3 = time.perf_counter()
            v.pad.score(img, face.box)
            x, y, w, h = (int(max(0, c)) for c in face.box)
            moire_score(img[y:y + h, x:x + w])
            screen_border_sides(img, face.box)
            t4 = time.perf_counter()
            emb = v.recognizer.embed(aligned)
            t5 = time.perf_counter()
            cosine(ref_emb, emb)
            t6 = time.perf_counter()
            for k, a, b in (("detect", t0, t1), ("align", t1, t2), ("quality", t2, t3), ("liveness", t3, t4),
                            ("embed", t4, t5), ("compare", t5, t6), ("frame", t0, t6)):
                before[k].append(1000 * (b - a))
            # (b) the capture loop as it runs
            t0 = time.perf_counter()
            cap.step(img)
            after_frames.append(1000 * (time.perf_counter() - t0))
            # (c) peer: OpenCV's own face API, same detector file, same recognizer file
            t0 = time.perf_counter()
            _, rows = det.detect(img)
            if rows is not None:
                crop = sf.alignCrop(img, rows[0]) if sf is not None else align(img, rows[0][4:14].reshape(5, 2))
                cosine(ref_emb, v.recognizer.embed(crop))
                peer.append(1000 * (time.perf_counter() - t0))
            if face_recognition is not None:
                rgb = np.ascontiguousarray(img[:, :, ::-1])
                t0 = time.perf_counter()
                locs = face_recognition.face_locations(rgb)
                if locs:
                    face_recognition.face_encodings(rgb, locs[:1])
                dlib.append(1000 * (time.perf_counter() - t0))
        for k in STAGES:
            after[k] += 1000 * cap.stage[k]
        n_after += cap.frames_used
    med = {k: statistics.median(ts) for k, ts in before.items()}
    mean_after = {k: after[k] / max(n_after, 1) for k in STAGES}
    frame_after = statistics.mean(after_frames)
    print("per frame, ms      (a) every stage, every frame (median)   (b) capture loop now (mean per frame)")
    for k in STAGES:
        print(f"  {k:<9} {med[k]:10.2f}{'':30}{mean_after[k]:10.2f}")
    print(f"  {'frame':<9} {med['frame']:10.2f} = {1000 / med['frame']:5.1f} fps{'':19}"
          f"{frame_after:10.2f} = {1000 / frame_after:5.1f} fps  (p90 {np.percentile(after_frames, 90):.2f})")
    core = sum(med[k] for k in ("detect", "align", "embed", "compare"))
    print(f"  (a) detect+align+embed+compare {core:.2f} ms; (b) runs the PAD models on 1/{APPEARANCE_EVERY} "
          f"of the face frames and embeds {100 * cap_share(after, mean_after, med):.0f}% of them")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (whole process, all pipelines)")
    p = statistics.median(peer)
    print(f"peer (cv2.FaceDetectorYN at 640x480 + FaceRecognizerSF.alignCrop + same mfn512 via onnxruntime): "
          f"{p:.2f} ms/frame = {1000 / p:.1f} frames/s")
    print(f"  ratio (a) detect+align+embed+compare / peer = {core / p:.2f}; (a) whole frame / peer = "
          f"{med['frame'] / p:.2f}; (b) whole frame / peer = {frame_after / p:.2f}")
    if face_recognition is None:
        print("face_recognition (dlib): not installed, skipped. `pip download face_recognition dlib-bin "
              "face_recognition_models` takes seconds (dlib-bin is a prebuilt wheel, no compile)")
        return
    q = statistics.median(dlib)
    print(f"face_recognition (dlib HOG + ResNet, detect + encode): {q:.2f} ms/frame = {1000 / q:.1f} frames/s; "
          f"ratio (b) whole frame / dlib = {frame_after / q:.2f}")


def cap_share(after: dict, mean_after: dict, med: dict) -> float:
    """Share of frames embedded in (b): its mean embed cost per frame over (a)'s cost of one embedding."""
    return mean_after["embed"] / max(med["embed"], 1e-9)


def cmd_bench_pad(args) -> None:
    """Single-image cues on bona fide faces (pad-dev live + faces-dev) against pad-dev replays (real)
    and simulated print / replay attacks of faces-dev images. Each cue's threshold is set at BPCER
    5% on all bona fide images; APCER is then reported per species (ISO/IEC 30107-3 names)."""
    from .__main__ import _verifier
    from .liveness import planar_residuals
    from .pad_synth import ATTACKS
    v = _verifier(args)
    pad = args.data / "pad-dev"
    rows = read_csv(pad / "labels.csv")
    faces = sorted((args.data / "faces-dev" / "images").glob("*/*.jpg"))[::7][:args.faces]
    samples: list[tuple[str, np.ndarray]] = [("bona_fide" if r["label"] == "live" else "replay_real",
                                              cv2.imread(str(pad / r["path"]))) for r in rows]
    for i, f in enumerate(faces):
        img = cv2.imread(str(f))
        samples.append(("bona_fide", img))
        for k, (name, gen) in enumerate(ATTACKS.items()):
            samples.append((f"{name}_sim", gen(img, np.random.default_rng(args.seed + 10 * i + k))))
    cols: dict[str, list[float]] = {"model": [], "moire": [], "border": []}
    species, t_cues = [], []
    for sp, img in progress(samples, len(samples), "pad cues"):
        a = v.analyze(img, embed=False, retry_padded=True)
        if not a.ok:
            continue   # not detected: counted below as failure to acquire, neither accepted nor rejected
        x, y, w, h = (int(max(0, c)) for c in a.face.box)
        t0 = time.perf_counter()
        cols["moire"].append(-moire_score(img[y:y + max(h, 1), x:x + max(w, 1)]))
        cols["border"].append(-float(screen_border_sides(img, a.face.box)))
        t_cues.append(time.perf_counter() - t0)
        cols["model"].append(v.pad.score(img, a.face.box))
        species.append(sp)
    sp = np.array(species)
    live = sp == "bona_fide"
    print(f"samples: {len(samples)}, acquired {len(sp)}; per species: "
          + ", ".join(f"{k} {int((sp == k).sum())}" for k in sorted(set(species))))
    print("cue      thr      BPCER   " + "  ".join(f"APCER {k:<12}" for k in sorted(set(species)) if k != "bona_fide"))
    fused = None
    for name, vals in cols.items():
        s = np.array(vals)
        z = (s - s[live].mean()) / (s[live].std() + 1e-9)
        fused = z if fused is None else np.minimum(fused, z)   # the weakest cue speaks
        _print_pad_row(name, s, live, sp)
    _print_pad_row("min-z", fused, live, sp)
    ref = np.random.default_rng(0).normal(size=(68, 2)) * 30 + 200
    t0 = time.perf_counter()
    for _ in range(200):
        planar_residuals(ref, ref + 0.5)
    print(f"added latency per frame: moire+border {1000 * np.mean(t_cues):.2f} ms, "
          f"planar {1000 * (time.perf_counter() - t0) / 200:.3f} ms")


def _print_pad_row(name: str, s: np.ndarray, live: np.ndarray, sp: np.ndarray) -> None:
    from .__main__ import pad_threshold
    from .calibrate import pad_rates
    thr = pad_threshold(s[live], s[~live], 0.05)
    bp = pad_rates(s[live], s[~live], thr)[1]
    aps = [pad_rates(s[live], s[sp == k], thr)[0] for k in sorted(set(sp)) if k != "bona_fide"]
    print(f"{name:<8} {thr:8.4f} {100 * bp:6.2f}%  " + "  ".join(f"{100 * a:6.2f}%{'':<12}" for a in aps))
