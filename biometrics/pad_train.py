"""PadNet: build the PAD data sets, train the single-image CNN, calibrate the fusion.

Data (all from ../shared/data, never copied into the repo; cached as face crops outside it):

* bona fide: faces-dev (LFW) images through the simulated camera (`pad_synth.camera`), and the
  pad-dev live frames;
* real attacks: the pad-dev replays;
* simulated attacks: `pad_synth.print_attack` / `replay_attack` of those faces-dev images and of
  the pad-dev live frames, then the same camera.

Three disjoint splits, BY PERSON and BY GENERATOR SEED: a faces-dev identity goes to train /
calib / test by a hash of its name (14 / 3 / 3 of 20), each pad-dev person (one per source
recording) to exactly one split (`PAD_PERSONS`), and every split draws its simulated attacks from
its own seed range (`SEEDS`). The CNN trains on `train` only; `calibrate-pad` fits the fusion and
the operating point on `calib`; `bench-pad` reports on `test`, whose people and generator seeds
neither step saw.

torch is a training tool only (`pip install -e .[train]`): it is imported inside `train()`, and
the gate runs the exported ONNX under onnxruntime.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .calibrate import pad_rates, pad_threshold, progress, read_csv, sha256_file, write_calibration
from .liveness import (ARTEFACT_CUES, PADNET_ROLE, PADNET_SCALE, PADNET_SIZE, PadFusion, PadNet, artefact_cues,
                       padnet_crop, padnet_input)
from .models import CHECKOUT, DEFAULT_CALIBRATION, DEFAULT_MANIFEST
from .pad_synth import ATTACKS, camera

SPLITS = ("train", "calib", "test")
PAD_PERSONS = {"train": ("BalveerSinghYT", "Krzysiek354", "WOLF-huo"), "calib": ("alexcamargoweb",),
               "test": ("TrickyF0x", "VishalkrishnaBlaze")}
PAD_VARIANTS = {"train": 4, "calib": 1, "test": 1}   # renderings per pad-dev frame (camera / attack seeds)
PAD_SHARE = 0.35      # share of each species' training weight carried by pad-dev (webcam) samples
SEEDS = {"train": 0, "calib": 1_000_000, "test": 2_000_000}
SPECIES = ("bona_fide", "replay_real", "print_sim", "replay_sim")
DATA_VERSION = "padnet-data-2"   # bump when the generator or the crop changes: invalidates caches
DEFAULT_FEATURES = ("padnet",) + ARTEFACT_CUES + ("thirdparty",)
PADNET_FILE = "padnet.onnx"


def identity_split(identity: str) -> str:
    h = int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16) % 20
    return "train" if h < 14 else "calib" if h < 17 else "test"


@dataclass
class PadSet:
    """One split: face crops for PadNet, artefact cues, third-party score, labels."""

    crops: np.ndarray          # N x 96 x 96 x 3 uint8 BGR (padnet_crop)
    cues: dict[str, np.ndarray]
    thirdparty: np.ndarray     # PadModels.thirdparty, NaN where not computed
    species: np.ndarray        # SPECIES names
    source: np.ndarray         # 'faces-dev' | 'pad-dev'
    group: np.ndarray          # person: 'lfw:<identity>' or 'pad:<person>'
    fta: dict[str, int]        # not detected, per species

    @property
    def live(self) -> np.ndarray:
        return self.species == "bona_fide"

    def species_weights(self, pad_share: float | None = None) -> np.ndarray:
        """Each species carries the same total weight (bona fide = all attacks together); with
        `pad_share`, the pad-dev samples of a species that has both sources carry that share of it,
        so the few webcam captures are not drowned by the web photos."""
        w = np.zeros(len(self.species))
        attacks = [s for s in SPECIES if s != "bona_fide" and (self.species == s).any()]
        for s in SPECIES:
            m = self.species == s
            if not m.any():
                continue
            total = 1.0 if s == "bona_fide" else 1.0 / len(attacks)
            pad = m & (self.source == "pad-dev")
            if pad_share is None or not pad.any() or pad.sum() == m.sum():
                w[m] = total / m.sum()
            else:
                w[pad] = total * pad_share / pad.sum()
                w[m & ~pad] = total * (1 - pad_share) / (m & ~pad).sum()
        return w

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, crops=self.crops, thirdparty=self.thirdparty, species=self.species,
                            source=self.source, group=self.group, fta=json.dumps(self.fta),
                            **{f"cue_{k}": v for k, v in self.cues.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "PadSet":
        z = np.load(path, allow_pickle=False)
        return cls(z["crops"], {k[4:]: z[k] for k in z.files if k.startswith("cue_")}, z["thirdparty"],
                   z["species"], z["source"], z["group"], json.loads(str(z["fta"])))


def _sources(data: Path, split: str, max_faces: int):
    """(species, source, group, seed or None, loader) for every sample of the split."""
    pad = data / "pad-dev"
    rows = [r for r in read_csv(pad / "labels.csv") if r["path"].split("/")[1] in PAD_PERSONS[split]]
    seed = SEEDS[split]
    out = []
    for r in rows:
        person = r["path"].split("/")[1]
        real = "bona_fide" if r["label"] == "live" else "replay_real"
        out.append((real, "pad-dev", f"pad:{person}", None, pad / r["path"], None))
        for _ in range(PAD_VARIANTS[split] - 1):      # the same capture through other camera draws
            seed += 1
            out.append((real, "pad-dev", f"pad:{person}", seed, pad / r["path"], None))
        if r["label"] == "live":
            for name in ATTACKS:
                for _ in range(PAD_VARIANTS[split]):
                    seed += 1
                    out.append((f"{name}_sim", "pad-dev", f"pad:{person}", seed, pad / r["path"], name))
    ids = read_csv(data / "faces-dev" / "identities.csv")
    faces = [r for r in ids if identity_split(r["identity"]) == split]
    faces = faces[::max(1, len(faces) // max_faces)][:max_faces] if max_faces else faces
    for r in faces:
        p = data / "faces-dev" / r["path"]
        for kind in (None,) + tuple(ATTACKS):
            seed += 1
            out.append(("bona_fide" if kind is None else f"{kind}_sim", "faces-dev", f"lfw:{r['identity']}",
                        seed, p, kind))
    return out


def build_split(verifier, data: Path, split: str, max_faces: int, thirdparty: bool) -> PadSet:
    """Render, detect and crop every sample of `split` (the detector box as the gate would see it)."""
    crops, cues, tp, species, source, group, fta = [], {k: [] for k in ARTEFACT_CUES}, [], [], [], [], {}
    todo = _sources(data, split, max_faces)
    for sp, src, grp, seed, path, kind in progress(todo, len(todo), f"pad {split}"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if seed is not None:
            rng = np.random.default_rng(seed)
            img = camera(ATTACKS[kind](img, rng) if kind else img, rng)   # kind None: a live/real capture re-drawn
        a = verifier.analyze(img, embed=False, retry_padded=True)
        if not a.ok:
            fta[sp] = fta.get(sp, 0) + 1
            continue
        crops.append(padnet_crop(img, a.face.box))
        for k, v in artefact_cues(img, a.face.box).items():
            cues[k].append(v)
        tp.append(verifier.pad.thirdparty(img, a.face.box) if thirdparty else np.nan)
        species.append(sp)
        source.append(src)
        group.append(grp)
    return PadSet(np.array(crops, np.uint8).reshape(-1, PADNET_SIZE, PADNET_SIZE, 3),
                  {k: np.array(v, np.float64) for k, v in cues.items()}, np.array(tp, np.float64),
                  np.array(species), np.array(source), np.array(group), fta)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "egate" / "pad"


def load_split(verifier, data: Path, split: str, max_faces: int, cache: Path | None = None) -> PadSet:
    """The split from the cache (keyed by data version, split, size and the data's labels), else built.
    The cache holds face crops of real people: it stays on this machine, outside the repo."""
    key = hashlib.sha256(f"{DATA_VERSION}|{split}|{max_faces}|{Path(data).resolve()}|"
                         f"{sha256_file(Path(data) / 'pad-dev' / 'labels.csv')}".encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"{split}-{key}.npz"
    if path.is_file():
        return PadSet.load(path)
    s = build_split(verifier, data, split, max_faces, thirdparty=split != "train")
    s.save(path)
    return s


def padnet_logits(session, crops: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.array([float(np.asarray(session.run(None, {name: padnet_input(c)})[0]).reshape(-1)[0])
                     for c in crops])


def features(s: PadSet, padnet: np.ndarray) -> dict[str, np.ndarray]:
    return dict(s.cues, padnet=padnet, thirdparty=s.thirdparty)


# ---- training (torch only here) --------------------------------------------------------------
def _net():
    import torch.nn as nn

    def block(i, o, stride):
        return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 16, 2), *block(16, 16, 1), *block(16, 32, 2), *block(32, 32, 1),
                         *block(32, 64, 2), *block(64, 64, 1), *block(64, 96, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(96, 1))


def train(train_set: PadSet, calib_set: PadSet, out: Path, epochs: int, seed: int, threads: int) -> dict:
    """Train PadNet on `train_set`, export ONNX (opset 17, input 1x3x96x96) to `out`; returns a record."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(padnet_input(train_set.crops))
    y_all = torch.from_numpy(train_set.live.astype(np.float32))
    w_all = torch.from_numpy((train_set.species_weights(PAD_SHARE) * len(train_set.species)).astype(np.float32))
    x_cal = torch.from_numpy(padnet_input(calib_set.crops))
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    batch, n = 64, len(y_all)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((n + batch - 1) // batch))
    t0, log = time.time(), []
    for ep in range(epochs):
        net.train()
        order, total = rng.permutation(n), 0.0
        for i in range(0, n, batch):
            idx = torch.from_numpy(order[i:i + batch])
            x = x_all[idx]
            flip = torch.rand(len(idx)) < 0.5
            x[flip] = x[flip].flip(3)
            x = x * (1 + 0.1 * (torch.rand(len(idx), 1, 1, 1) - 0.5)) + 0.2 * (torch.rand(len(idx), 1, 1, 1) - 0.5)
            dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
            x = torch.roll(x, (dy, dx), (2, 3))
            loss = (F.binary_cross_entropy_with_logits(net(x).squeeze(1), y_all[idx], reduction="none")
                    * w_all[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            z = torch.cat([net(x_cal[i:i + 256]).squeeze(1) for i in range(0, len(x_cal), 256)]).numpy()
        auc = {sp: _auc(z[calib_set.live], z[calib_set.species == sp]) for sp in SPECIES[1:]
               if (calib_set.species == sp).any()}
        log.append({"epoch": ep + 1, "loss": round(total / n, 4), "calib_auc": {k: round(v, 4) for k, v in auc.items()},
                    "seconds": round(time.time() - t0, 1)})
        print(f"epoch {ep + 1}/{epochs} loss {total / n:.4f} calib AUC "
              + " ".join(f"{k} {v:.3f}" for k, v in auc.items()) + f"  ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, PADNET_SIZE, PADNET_SIZE)
    torch.onnx.export(net, dummy, str(out), opset_version=17, input_names=["input"], output_names=["logit"],
                      dynamo=False)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(x_cal[:16]).squeeze(1).numpy()
    got = padnet_logits(sess, calib_set.crops[:16])
    if not np.allclose(ref, got, atol=1e-3):
        raise RuntimeError(f"ONNX export differs from torch: max |d| {np.abs(ref - got).max():.2e}")
    return {"torch": torch.__version__, "epochs": epochs, "seed": seed, "threads": threads,
            "train_seconds": round(time.time() - t0, 1), "log": log,
            "parameters": int(sum(p.numel() for p in net.parameters()))}


def _auc(live: np.ndarray, attack: np.ndarray) -> float:
    """P(live score > attack score), ties half."""
    if not len(live) or not len(attack):
        return float("nan")
    allv = np.concatenate([live, attack])
    ranks = np.argsort(np.argsort(allv, kind="mergesort"), kind="mergesort") + 1.0
    for v in np.unique(allv):           # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[:len(live)].sum() - len(live) * (len(live) + 1) / 2) / (len(live) * len(attack)))


def register(onnx_path: Path, manifest: Path = DEFAULT_MANIFEST) -> dict:
    """Pin the trained file in the manifest (role pad_padnet, loaded from the repo's models/)."""
    doc = json.loads(manifest.read_text())
    entry = {"file": onnx_path.name, "role": PADNET_ROLE, "sha256": sha256_file(onnx_path),
             "bytes": onnx_path.stat().st_size, "licence": "first-party (this repository)",
             "location": "repo",
             "note": "trained by `python -m biometrics train-pad`; see models/padnet.json"}
    doc["models"] = [m for m in doc["models"] if m["role"] != PADNET_ROLE] + [entry]
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return entry


# ---- calibration of the fusion ---------------------------------------------------------------
def webcam_thirdparty(verifier, data: Path) -> np.ndarray:
    """Third-party scores of the pad-dev live frames of every person outside the test split (those
    models never trained on them, so PadNet's training people may serve here)."""
    pad = data / "pad-dev"
    keep = set(PAD_PERSONS["train"]) | set(PAD_PERSONS["calib"])
    out = []
    for r in read_csv(pad / "labels.csv"):
        if r["label"] == "live" and r["path"].split("/")[1] in keep:
            img = cv2.imread(str(pad / r["path"]), cv2.IMREAD_COLOR)
            a = verifier.analyze(img, embed=False, retry_padded=True) if img is not None else None
            if a is not None and a.ok:
                out.append(verifier.pad.thirdparty(img, a.face.box))
    return np.array(out)


def calibrate(verifier, calib_set: PadSet, feats: tuple[str, ...], bpcer: float, data: Path,
              calibration: Path = DEFAULT_CALIBRATION) -> tuple[PadFusion, float]:
    """Fit the fusion on the calib split, set its threshold at the target BPCER, and the third-party
    veto at the same BPCER on webcam bona fide frames (`webcam_thirdparty`); write all."""
    n = len(calib_set.species)
    f = features(calib_set, padnet_logits(PadNet.from_repo().session, calib_set.crops) if "padnet" in feats
                 else np.full(n, np.nan))
    X = np.c_[[f[k] for k in feats]].T
    ok = np.isfinite(X).all(1)
    fusion = PadFusion.fit(feats, X[ok], calib_set.live[ok], calib_set.species_weights()[ok])
    if "padnet" in feats:
        fusion.padnet_sha256 = sha256_file(CHECKOUT / "models" / PADNET_FILE)
    s = np.array([fusion.score(dict(zip(feats, row))) for row in X[ok]])
    live, sp = calib_set.live[ok], calib_set.species[ok]
    thr = pad_threshold(s[live], s[~live], bpcer)
    webcam = webcam_thirdparty(verifier, data)
    fusion.veto = (pad_threshold(webcam, np.zeros(0), bpcer), thr)
    s = np.array([fusion.score(dict(zip(feats, row), thirdparty=tp)) for row, tp in zip(X[ok], f["thirdparty"][ok])])
    per = {k: round(pad_rates(s[live], s[sp == k], thr)[0], 5) for k in SPECIES[1:] if (sp == k).any()}
    bp = pad_rates(s[live], s[~live], thr)[1]
    rec = {"model_threshold": round(thr, 6), "bpcer_target": bpcer, "bpcer": round(bp, 5),
           "apcer_per_species": per, "score": "PadFusion p(live) of " + ", ".join(feats),
           "fusion": fusion.as_record(),
           "dataset": dict({"split": "calib", "pad_dev_persons": list(PAD_PERSONS["calib"]),
                            "faces_dev_identities": "sha256(identity) % 20 in 14..16",
                            "generator_seeds": f"{SEEDS['calib']}+", "counts": {k: int((sp == k).sum()) for k in SPECIES},
                            "fta": calib_set.fta,
                            "veto_bona_fide": f"{len(webcam)} pad-dev live frames of "
                                              + ", ".join(PAD_PERSONS["train"] + PAD_PERSONS["calib"])}),
           "note": ("single-image operating point (per frame, mean over the capture window); development "
                    "data only, recalibrate on the gate's own camera")}
    write_calibration(calibration, "liveness", rec)
    return fusion, thr


def record(path: Path, onnx_path: Path, train_info: dict, sets: dict[str, PadSet], data: Path, max_faces: int) -> None:
    """models/padnet.json: what the model was trained on, how, and when."""
    doc = {"file": onnx_path.name, "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": f"python -m biometrics train-pad --epochs {train_info['epochs']} --seed {train_info['seed']} "
                      f"--max-faces {max_faces}",
           "input": {"name": "input", "shape": [1, 3, PADNET_SIZE, PADNET_SIZE], "layout": "NCHW, BGR",
                     "values": "(v / 255 - 0.5) / 0.25",
                     "crop": f"square of side {PADNET_SCALE} x max(w, h) of the YuNet box, centred on it, "
                             "mirrored where it leaves the frame, INTER_AREA to 96x96 (liveness.padnet_crop)"},
           "output": {"name": "logit", "shape": [1, 1], "meaning": "> 0 = bona fide (live)"},
           "data": {"root": str(data), "version": DATA_VERSION, "max_faces_per_split": max_faces,
                    "pad_dev_persons": PAD_PERSONS, "pad_dev_renderings": PAD_VARIANTS,
                    "pad_dev_weight_share": PAD_SHARE, "generator_seed_base": SEEDS,
                    "faces_dev_split": "sha256(identity) % 20: <14 train, 14-16 calib, 17-19 test",
                    "counts": {n: {k: int((s.species == k).sum()) for k in SPECIES} for n, s in sets.items()},
                    "not_detected": {n: s.fta for n, s in sets.items()},
                    "terms": "faces-dev (LFW) and pad-dev are internal development data (see data/README.md): "
                             "this is a development model; retrain on licensed gate data before production"},
           **train_info}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _verifier_without_fusion(args):
    """The verifier for detection and third-party scores, built without the (possibly stale)
    fusion that this command is about to replace."""
    from .__main__ import _verifier
    from .liveness import PadModels
    PadModels.use_calibrated_fusion = False
    return _verifier(args)


def cmd_train_pad(args) -> None:
    v = _verifier_without_fusion(args)
    sets = {s: load_split(v, args.data, s, args.max_faces if s == "train" else args.max_faces // 4, args.cache)
            for s in ("train", "calib")}
    for n, s in sets.items():
        print(f"{n}: " + ", ".join(f"{k} {int((s.species == k).sum())}" for k in SPECIES) + f"; not detected {s.fta}")
    out = CHECKOUT / "models" / PADNET_FILE
    info = train(sets["train"], sets["calib"], out, args.epochs, args.seed, args.threads)
    entry = register(out)
    record(out.with_suffix(".json"), out, info, sets, args.data, args.max_faces)
    print(f"{out} ({entry['bytes']} bytes, sha256 {entry['sha256'][:16]}...) pinned in {DEFAULT_MANIFEST}")
    feats = tuple(args.features.split(","))
    _, thr = calibrate(v, sets["calib"], feats, args.bpcer, args.data)
    print(f"fusion of {', '.join(feats)} fitted on the calib split, threshold {thr:.4f} at BPCER "
          f"{args.bpcer:g}, written to {DEFAULT_CALIBRATION}")


def cmd_calibrate_pad(args) -> None:
    v = _verifier_without_fusion(args)
    s = load_split(v, args.data, "calib", args.max_faces // 4, args.cache)
    feats = tuple(args.features.split(","))
    _, thr = calibrate(v, s, feats, args.bpcer, args.data, args.calibration)
    print(f"fusion of {', '.join(feats)} fitted on the calib split ({len(s.species)} images), "
          f"threshold {thr:.4f} at BPCER {args.bpcer:g}, written to {args.calibration}")


def add_commands(sub, shared: Path) -> None:
    def common(s):
        s.add_argument("--data", type=Path, default=shared / "data")
        s.add_argument("--max-faces", type=int, default=800, help="faces-dev images in train (a quarter in calib/test)")
        s.add_argument("--cache", type=Path, default=None, help=f"face-crop cache (default {cache_dir()})")
        s.add_argument("--bpcer", type=float, default=0.05)
        s.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                       help="fusion inputs: padnet, moire, border, glare, gamut, banding, thirdparty")
    s = sub.add_parser("train-pad", help="train PadNet (needs the train extra: torch), pin it, calibrate the fusion")
    common(s)
    s.add_argument("--epochs", type=int, default=16)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_train_pad)
    s = sub.add_parser("calibrate-pad", help="fit the single-image PAD fusion and its threshold on the calib split")
    common(s)
    s.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION)
    s.set_defaults(func=cmd_calibrate_pad)
