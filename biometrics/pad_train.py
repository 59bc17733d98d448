"""PadNet: build the PAD data sets, train the single-image CNN and the colour-texture head,
calibrate the fusion.

Data (all from ../shared/data, never copied into the repo; cached as face crops outside it):

* bona fide: faces-dev (LFW) images through a simulated webcam (`pad_synth.webcam`), and the
  pad-dev live frames;
* real attacks: the pad-dev replays;
* simulated attacks: `pad_synth.print_attack` / `replay_attack`, strong or mild, of those faces-dev
  images and of the pad-dev live frames, captured by the webcam or only lightly (`camera`): a clean
  web photo re-presented must score as an attack, a webcam face as live.

The data comes in pieces, each built and cached once: one per faces-dev split (identities assigned
by a hash of the name, 14 / 3 / 3 of 20, each split drawing its simulated attacks from its own seed
range `SEEDS`) and one per pad-dev person (one source recording; its simulated attacks from its own
seed range). A split is its faces-dev piece plus the pieces of its pad-dev people (`PAD_PERSONS`),
so splits share no person and no generator seed. The CNN trains on `train` only; `calibrate-pad`
fits the fusion and the operating point on `calib`; `bench-pad` reports on `test`, and
`bench-pad-cv` leaves each pad-dev person out in turn (`cv_folds`).

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
from .liveness import (ARTEFACT_CUES, PADNET_ROLE, PADNET_SCALE, PADNET_SIZE, TEXTURE_DIM, TEXTURE_ROLE, PadFusion,
                       PadNet, PadTexture, artefact_cues, colour_texture, padnet_crop, padnet_input)
from .models import CHECKOUT, DEFAULT_CALIBRATION, DEFAULT_MANIFEST, ModelRegistry
from .pad_synth import ATTACKS, camera, digital_copy, webcam

SPLITS = ("train", "calib", "test")
PAD_PEOPLE = ("BalveerSinghYT", "Krzysiek354", "TrickyF0x", "VishalkrishnaBlaze", "WOLF-huo", "alexcamargoweb")
PAD_PERSONS = {"train": ("BalveerSinghYT", "Krzysiek354", "WOLF-huo"), "calib": ("alexcamargoweb",),
               "test": ("TrickyF0x", "VishalkrishnaBlaze")}
PAD_RENDERINGS = 4    # renderings per pad-dev frame (camera / attack seeds); calib and test use the first
PAD_SHARE = 0.35      # share of each species' training weight carried by pad-dev (webcam) samples
MILD_SHARE = 0.35     # share of simulated attacks drawn mild
DIGITAL_SHARE = 0.2   # share of faces-dev attacks that are the clean photo itself (`digital_copy`)
LIGHT_CAPTURE = 0.3   # share of the others captured lightly (`camera`); the rest by the webcam
SEEDS = {"train": 0, "calib": 1_000_000, "test": 2_000_000, "pad-dev": 3_000_000}   # + 100_000 per person
SPECIES = ("bona_fide", "replay_real", "print_sim", "replay_sim")
DATA_VERSION = "padnet-data-5"   # bump when the generator or the crop changes: invalidates caches
DEFAULT_FEATURES = ("padnet", "texture") + ARTEFACT_CUES + ("thirdparty",)
PADNET_FILE = "padnet.onnx"
TEXTURE_FILE = "padtexture.onnx"
TEXTURE_L2 = 10.0     # ridge of the colour-texture head (354 inputs, a few thousand crops)


def _bucket(name: str, n: int) -> int:
    """A stable bucket 0..n-1 for a name (a hash, not Python's salted `hash`)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % n


def identity_split(identity: str) -> str:
    h = _bucket(identity, 20)
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
    render: np.ndarray         # rendering index of a pad-dev frame (0: the first), 0 for faces-dev

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

    def subset(self, m: np.ndarray) -> "PadSet":
        return PadSet(self.crops[m], {k: v[m] for k, v in self.cues.items()}, self.thirdparty[m], self.species[m],
                      self.source[m], self.group[m], self.fta, self.render[m])

    @classmethod
    def concat(cls, sets: list["PadSet"]) -> "PadSet":
        fta: dict[str, int] = {}
        for s in sets:
            for k, v in s.fta.items():
                fta[k] = fta.get(k, 0) + v
        return cls(np.concatenate([s.crops for s in sets]),
                   {k: np.concatenate([s.cues[k] for s in sets]) for k in sets[0].cues},
                   *(np.concatenate([getattr(s, a) for s in sets]) for a in ("thirdparty", "species", "source", "group")),
                   fta, np.concatenate([s.render for s in sets]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, crops=self.crops, thirdparty=self.thirdparty, species=self.species,
                            source=self.source, group=self.group, fta=json.dumps(self.fta), render=self.render,
                            **{f"cue_{k}": v for k, v in self.cues.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "PadSet":
        z = np.load(path, allow_pickle=False)
        return cls(z["crops"], {k[4:]: z[k] for k in z.files if k.startswith("cue_")}, z["thirdparty"],
                   z["species"], z["source"], z["group"], json.loads(str(z["fta"])), z["render"])


def _attack(kind: str, img: np.ndarray, rng: np.random.Generator, photo: bool) -> np.ndarray:
    """A simulated attack, strong or mild, captured by the webcam, only lightly, or not at all; of a
    web `photo`, also the clean photo itself (`digital_copy`: shown so well, or injected, that
    neither medium nor capture left a trace; still an attack, as the demo portrait held up is)."""
    if photo and rng.random() < DIGITAL_SHARE:
        return digital_copy(img, rng)
    medium = ATTACKS[kind](img, rng, mild=bool(rng.random() < MILD_SHARE))
    return camera(medium, rng) if rng.random() < LIGHT_CAPTURE else webcam(medium, rng)


def _sources(data: Path, piece: str, max_faces: int):
    """(species, source, group, seed or None, path, kind, rendering) for every sample of a piece:
    'lfw:<split>' (faces-dev identities of that split, at most `max_faces` images, each as a
    webcam bona fide, a print and a replay) or 'pad:<person>' (that person's pad-dev frames,
    `PAD_RENDERINGS` times each: first as recorded, then re-captured by `camera`, and each live
    frame made into that many prints and replays)."""
    out = []
    if piece.startswith("pad:"):
        person = piece[4:]
        pad = data / "pad-dev"
        seed = SEEDS["pad-dev"] + 100_000 * PAD_PEOPLE.index(person)
        for r in read_csv(pad / "labels.csv"):
            if r["path"].split("/")[1] != person:
                continue
            real = "bona_fide" if r["label"] == "live" else "replay_real"
            out.append((real, "pad-dev", piece, None, pad / r["path"], None, 0))
            for k in range(1, PAD_RENDERINGS):
                seed += 1
                out.append((real, "pad-dev", piece, seed, pad / r["path"], None, k))
            if r["label"] == "live":
                for name in ATTACKS:
                    for k in range(PAD_RENDERINGS):
                        seed += 1
                        out.append((f"{name}_sim", "pad-dev", piece, seed, pad / r["path"], name, k))
        return out
    split = piece[4:]
    seed = SEEDS[split]
    ids = read_csv(data / "faces-dev" / "identities.csv")
    faces = [r for r in ids if identity_split(r["identity"]) == split]
    faces = faces[::max(1, len(faces) // max_faces)][:max_faces] if max_faces else faces
    for r in faces:
        p = data / "faces-dev" / r["path"]
        for kind in ("webcam",) + tuple(ATTACKS):
            seed += 1
            out.append(("bona_fide" if kind == "webcam" else f"{kind}_sim", "faces-dev", f"lfw:{r['identity']}",
                        seed, p, kind, 0))
    return out


def build_piece(verifier, data: Path, piece: str, max_faces: int) -> PadSet:
    """Render, detect and crop every sample of a piece (the detector box as the gate would see it).
    The third-party score is computed where a calib or test split may use it: faces-dev calib/test
    and each pad-dev person's first rendering."""
    crops, cues, tp, species, source, group, render, fta = [], {k: [] for k in ARTEFACT_CUES}, [], [], [], [], [], {}
    todo = _sources(data, piece, max_faces)
    for sp, src, grp, seed, path, kind, k in progress(todo, len(todo), f"pad {piece}"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if seed is not None:
            rng = np.random.default_rng(seed)
            img = (webcam(img, rng) if kind == "webcam" else _attack(kind, img, rng, src == "faces-dev") if kind
                   else camera(img, rng))          # kind None: a recorded capture re-drawn
        a = verifier.analyze(img, embed=False, retry_padded=True)
        if not a.ok:
            fta[sp] = fta.get(sp, 0) + 1
            continue
        crops.append(padnet_crop(img, a.face.box))
        for c, v in artefact_cues(img, a.face.box).items():
            cues[c].append(v)
        tp.append(verifier.pad.thirdparty(img, a.face.box) if piece not in ("lfw:train",) and k == 0 else np.nan)
        species.append(sp)
        source.append(src)
        group.append(grp)
        render.append(k)
    return PadSet(np.array(crops, np.uint8).reshape(-1, PADNET_SIZE, PADNET_SIZE, 3),
                  {c: np.array(v, np.float64) for c, v in cues.items()}, np.array(tp, np.float64),
                  np.array(species), np.array(source), np.array(group), fta, np.array(render, np.int64))


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "egate" / "pad"


def load_piece(verifier, data: Path, piece: str, max_faces: int, cache: Path | None = None) -> PadSet:
    """The piece from the cache (keyed by data version, piece, size and the data's labels), else built.
    The cache holds face crops of real people: it stays on this machine, outside the repo."""
    key = hashlib.sha256(f"{DATA_VERSION}|{piece}|{max_faces}|{Path(data).resolve()}|"
                         f"{sha256_file(Path(data) / 'pad-dev' / 'labels.csv')}".encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"{piece.replace(':', '-')}-{key}.npz"
    if path.is_file():
        return PadSet.load(path)
    s = build_piece(verifier, data, piece, max_faces)
    s.save(path)
    return s


def load_split(verifier, data: Path, split: str, max_faces: int, cache: Path | None = None,
               persons: tuple[str, ...] | None = None) -> PadSet:
    """faces-dev `split` plus the pad-dev pieces of `persons` (default `PAD_PERSONS[split]`): every
    rendering for training, the first only for calib and test."""
    pads = [load_piece(verifier, data, f"pad:{p}", 0, cache) for p in (persons or PAD_PERSONS[split])]
    if split != "train":
        pads = [p.subset(p.render == 0) for p in pads]
    return PadSet.concat([load_piece(verifier, data, f"lfw:{split}", max_faces, cache)] + pads)


def padnet_logits(session, crops: np.ndarray) -> np.ndarray:
    m = PadNet(session)
    return np.array([m.logit_of(c) for c in crops])


def texture_logits(session, crops: np.ndarray) -> np.ndarray:
    m = PadTexture(session)
    return np.array([m.logit_of(c) for c in crops])


def features(s: PadSet, padnet: np.ndarray, texture: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return dict(s.cues, padnet=padnet, texture=np.full(len(s.species), np.nan) if texture is None else texture,
                thirdparty=s.thirdparty)


def train_texture(train_set: PadSet, out: Path, l2: float = TEXTURE_L2) -> dict:
    """Fit the colour-texture head on `train_set` (ridge logistic regression, the species weights of
    PadNet's training) and export it as one Gemm to ONNX (input 1 x 354, output the logit)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    t0 = time.time()
    X = np.array([colour_texture(c) for c in train_set.crops], np.float64)
    m = PadFusion.fit(tuple(f"t{i}" for i in range(TEXTURE_DIM)), X, train_set.live,
                      train_set.species_weights(PAD_SHARE), l2=l2)
    w = (m.weights / m.std).astype(np.float32)             # standardisation folded into the weights
    b = np.float32(m.bias - float(m.mean / m.std @ m.weights))
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["texture", "w", "b"], ["logit"])], "padtexture",
        [helper.make_tensor_value_info("texture", TensorProto.FLOAT, [1, TEXTURE_DIM])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(w[:, None], "w"), numpy_helper.from_array(np.array([b]), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="egate pad_train")
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    import onnxruntime as ort
    got = texture_logits(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), train_set.crops[:16])
    ref = m.bias + ((X[:16] - m.mean) / m.std) @ m.weights
    if not np.allclose(ref, got, atol=1e-3):
        raise RuntimeError(f"texture ONNX differs from the fit: max |d| {np.abs(ref - got).max():.2e}")
    return {"file": out.name, "sha256": sha256_file(out), "bytes": out.stat().st_size, "l2": l2,
            "inputs": "liveness.colour_texture of the PadNet crop: sqrt of uniform LBP(8,1) histograms of H, S, V, "
                      "Y, Cr, Cb (6 x 59)", "seconds": round(time.time() - t0, 1)}


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


def register(onnx_path: Path, manifest: Path = DEFAULT_MANIFEST, role: str = PADNET_ROLE) -> dict:
    """Pin the trained file in the manifest (PadNet or the texture head, loaded from the repo's models/)."""
    doc = json.loads(manifest.read_text())
    entry = {"file": onnx_path.name, "role": role, "sha256": sha256_file(onnx_path),
             "bytes": onnx_path.stat().st_size, "licence": "first-party (this repository)",
             "location": "repo",
             "note": "trained by `python -m biometrics train-pad`; see models/padnet.json"}
    doc["models"] = [m for m in doc["models"] if m["role"] != role] + [entry]
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return entry


# ---- calibration of the fusion ---------------------------------------------------------------
def fit_fusion(calib_set: PadSet, feats: tuple[str, ...], padnet: np.ndarray, bpcer: float,
               texture: np.ndarray | None = None) -> tuple[PadFusion, float, dict]:
    """The logistic fusion fitted on `calib_set` (PadNet and texture-head logits), its threshold at
    the target BPCER, and the rates it gives there (on the same set: the fit's own figures)."""
    f = features(calib_set, padnet, texture)
    X = np.c_[[f[k] for k in feats]].T
    ok = np.isfinite(X).all(1)
    fusion = PadFusion.fit(feats, X[ok], calib_set.live[ok], calib_set.species_weights()[ok])
    s = np.array([fusion.score(dict(zip(feats, row))) for row in X[ok]])
    live, sp = calib_set.live[ok], calib_set.species[ok]
    thr = pad_threshold(s[live], s[~live], bpcer)
    per = {k: round(pad_rates(s[live], s[sp == k], thr)[0], 5) for k in SPECIES[1:] if (sp == k).any()}
    rates = {"bpcer": round(pad_rates(s[live], s[~live], thr)[1], 5), "apcer_per_species": per,
             "counts": {k: int((sp == k).sum()) for k in SPECIES}}
    return fusion, thr, rates


def calibrate(calib_set: PadSet, feats: tuple[str, ...], bpcer: float,
              calibration: Path = DEFAULT_CALIBRATION) -> tuple[PadFusion, float]:
    """Fit the fusion on the calib split, set its threshold at the target BPCER; write both."""
    n, registry = len(calib_set.species), ModelRegistry()
    fusion, thr, rates = fit_fusion(
        calib_set, feats, padnet_logits(registry.session(PADNET_ROLE), calib_set.crops)
        if "padnet" in feats else np.full(n, np.nan), bpcer,
        texture_logits(registry.session(TEXTURE_ROLE), calib_set.crops) if "texture" in feats else None)
    if "padnet" in feats:
        fusion.padnet_sha256 = registry.entry(PADNET_ROLE).sha256
    if "texture" in feats:
        fusion.texture_sha256 = registry.entry(TEXTURE_ROLE).sha256
    rec = {"model_threshold": round(thr, 6), "bpcer_target": bpcer, "bpcer": rates["bpcer"],
           "apcer_per_species": rates["apcer_per_species"], "score": "PadFusion p(live) of " + ", ".join(feats),
           "fusion": fusion.as_record(),
           "dataset": {"split": "calib", "pad_dev_persons": list(PAD_PERSONS["calib"]),
                       "faces_dev_identities": "sha256(identity) % 20 in 14..16",
                       "generator_seeds": f"{SEEDS['calib']}+ (faces-dev), pad-dev per-person ranges",
                       "counts": rates["counts"], "fta": calib_set.fta},
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
                    "pad_dev_persons": PAD_PERSONS, "pad_dev_renderings": PAD_RENDERINGS,
                    "mild_attack_share": MILD_SHARE, "digital_copy_share": DIGITAL_SHARE,
                    "light_capture_share": LIGHT_CAPTURE,
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
    return _verifier(args, pad_fusion=False)


def cmd_train_pad(args) -> None:
    v = _verifier_without_fusion(args)
    sets = {s: load_split(v, args.data, s, args.max_faces if s == "train" else args.max_faces // 4, args.cache)
            for s in ("train", "calib")}
    for n, s in sets.items():
        print(f"{n}: " + ", ".join(f"{k} {int((s.species == k).sum())}" for k in SPECIES) + f"; not detected {s.fta}")
    out = CHECKOUT / "models" / PADNET_FILE
    if not args.texture_only:
        info = train(sets["train"], sets["calib"], out, args.epochs, args.seed, args.threads)
        entry = register(out)
        record(out.with_suffix(".json"), out, info, sets, args.data, args.max_faces)
        print(f"{out} ({entry['bytes']} bytes, sha256 {entry['sha256'][:16]}...) pinned in {DEFAULT_MANIFEST}")
    tex = out.with_name(TEXTURE_FILE)
    texture = train_texture(sets["train"], tex)
    register(tex, role=TEXTURE_ROLE)
    doc = json.loads(out.with_suffix(".json").read_text())      # the head is recorded beside PadNet
    doc["texture"] = dict(texture, date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          data="the train split above (same crops and species weights as PadNet)",
                          output="logit, > 0 = bona fide (live)")
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{tex} ({texture['bytes']} bytes, sha256 {texture['sha256'][:16]}...) pinned in {DEFAULT_MANIFEST}")
    feats = tuple(args.features.split(","))
    _, thr = calibrate(sets["calib"], feats, args.bpcer)
    print(f"fusion of {', '.join(feats)} fitted on the calib split, threshold {thr:.4f} at BPCER "
          f"{args.bpcer:g}, written to {DEFAULT_CALIBRATION}")


def cmd_calibrate_pad(args) -> None:
    v = _verifier_without_fusion(args)
    s = load_split(v, args.data, "calib", args.max_faces // 4, args.cache)
    feats = tuple(args.features.split(","))
    _, thr = calibrate(s, feats, args.bpcer, args.calibration)
    print(f"fusion of {', '.join(feats)} fitted on the calib split ({len(s.species)} images), "
          f"threshold {thr:.4f} at BPCER {args.bpcer:g}, written to {args.calibration}")


# ---- leave-one-person-out cross-validation ---------------------------------------------------
def cv_folds() -> list[tuple[str, str, tuple[str, ...]]]:
    """(held-out person, calibration person, training people): each pad-dev person tested once by a
    model that neither trained nor calibrated on them; the calibration person is the next one."""
    n = len(PAD_PEOPLE)
    return [(p, PAD_PEOPLE[(i + 1) % n], tuple(q for q in PAD_PEOPLE if q not in (p, PAD_PEOPLE[(i + 1) % n])))
            for i, p in enumerate(PAD_PEOPLE)]


def _half(s: PadSet, keep: int) -> PadSet:
    """Every `keep`-th faces-dev identity (by a hash of its name), all pad-dev rows: a smaller
    training set for the cross-validation folds."""
    if keep <= 1:
        return s
    m = np.array([g.startswith("pad:") or _bucket(g, keep) == 0 for g in s.group])
    return s.subset(m)


def _seq_sets(person_frames: dict[str, list[np.ndarray]], seed: int) -> list[tuple[str, list[np.ndarray]]]:
    """Capture windows of one person: the live and the replay recording from four starting frames,
    and two prints and two screen replays of their own live frames held and moved in front of the
    camera (held-out generator seeds)."""
    from .bench import held_sheet
    live, spoof = person_frames["live"], person_frames["spoof"]
    out = []
    for k in (0, 3, 6, 9):
        out += [("bona_fide", live[k:] + live[:k]), ("replay_real", spoof[k:] + spoof[:k])]
    for j, k in enumerate((0, 6)):
        for name, gen in ATTACKS.items():
            rng = np.random.default_rng(seed + 10 * j + len(out))
            out.append((f"{name}_sim", held_sheet(gen(live[k], rng, mild=bool(j)), rng, 12)))
    return out


CV_SPECIES = ("replay_real", "print_sim", "replay_sim")


def cmd_bench_pad_cv(args) -> None:
    """Leave-one-person-out over the 6 pad-dev people: for each, train PadNet on 4 others (plus a
    share of the faces-dev train identities), fit the fusion and its threshold (BPCER target) on the
    5th with the faces-dev calib identities, then score the held-out person's frames (single image,
    at that threshold) and their capture windows (the capture loop as the gate runs it, challenge
    off, the window's mean p(live) against the same threshold). faces-dev test identities with
    their held-out seeds are scored by every fold too."""
    import copy
    import dataclasses
    import tempfile

    import onnxruntime as ort

    from .bench import run_sequence
    v = _verifier_without_fusion(args)
    base_policy = v.liveness_policy
    data, feats = args.data, tuple(args.features.split(","))
    lfw_train = _half(load_piece(v, data, "lfw:train", args.max_faces, args.cache), args.faces_share)
    lfw_calib = load_piece(v, data, "lfw:calib", args.max_faces // 4, args.cache)
    lfw_test = load_piece(v, data, "lfw:test", args.max_faces // 4, args.cache)
    pads = {p: load_piece(v, data, f"pad:{p}", 0, args.cache) for p in PAD_PEOPLE}
    pad = data / "pad-dev"
    rows = read_csv(pad / "labels.csv")
    rec = {p: {lab: [cv2.imread(str(pad / r["path"])) for r in rows if r["path"].split("/")[1] == p
                     and r["label"] == lab] for lab in ("live", "spoof")} for p in PAD_PEOPLE}
    folds = [f for f in cv_folds() if not args.only or f[0] in args.only.split(",")]
    single, seq, lfw_rows = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (held, cal, trainers) in enumerate(folds):
            print(f"fold {i + 1}/{len(folds)}: test {held}, calibrate {cal}, train {', '.join(trainers)}", flush=True)
            tr = PadSet.concat([lfw_train] + [pads[p] for p in trainers])
            ca = PadSet.concat([lfw_calib, pads[cal].subset(pads[cal].render == 0)])
            te = PadSet.concat([lfw_test, pads[held].subset(pads[held].render == 0)])
            onnx = Path(tmp) / f"padnet-{held}.onnx"
            train(tr, ca, onnx, args.epochs, args.seed, args.threads)
            train_texture(tr, onnx.with_suffix(".texture.onnx"))
            sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
            tsess = ort.InferenceSession(str(onnx.with_suffix(".texture.onnx")), providers=["CPUExecutionProvider"])
            fusion, thr, _ = fit_fusion(ca, feats, padnet_logits(sess, ca.crops), args.bpcer,
                                        texture_logits(tsess, ca.crops))
            f = features(te, padnet_logits(sess, te.crops), texture_logits(tsess, te.crops))
            sc = np.array([fusion.score({k: f[k][j] for k in feats}) for j in range(len(te.species))])
            single[held] = (sc[te.source == "pad-dev"], te.species[te.source == "pad-dev"], thr)
            lfw_rows.append((sc[te.source == "faces-dev"], te.species[te.source == "faces-dev"], thr))
            v.pad = copy.copy(v.pad)
            v.pad.padnet, v.pad.texture, v.pad.fusion = PadNet(sess), PadTexture(tsess), fusion
            v.liveness_policy = dataclasses.replace(base_policy, model_threshold=thr, challenge=False)
            seq[held] = [(sp, run_sequence(v, frames)) for sp, frames in
                         _seq_sets(rec[held], SEEDS["pad-dev"] + 100_000 * PAD_PEOPLE.index(held) + 90_000)]
            _cv_line(held, single[held], seq[held])
    print(f"\nleave-one-person-out, {len(folds)} folds: PadNet {args.epochs} epochs on 4 pad-dev people and "
          f"1/{args.faces_share} of the faces-dev train identities ({int(lfw_train.live.sum())} bona fide); fusion "
          f"and threshold (BPCER {100 * args.bpcer:.0f}%) on the 5th person + faces-dev calib")
    print(f"{'held-out person':<20} {'thr':>6}  single image: {'BPCER':>7} " + " ".join(f"{k:>11}" for k in CV_SPECIES)
          + f"   windows: {'BPCER':>7} " + " ".join(f"{k:>11}" for k in CV_SPECIES))
    for held in single:
        _cv_line(held, single[held], seq[held])
    pooled_s = (np.concatenate([single[h][0] >= single[h][2] for h in single]),
                np.concatenate([single[h][1] for h in single]))
    pooled_q = [x for h in seq for x in seq[h]]
    print(f"{'pooled (pad-dev)':<20} {'':>6}  " + _cv_cells(*pooled_s, pooled_q))
    acc = np.concatenate([s >= t for s, _, t in lfw_rows])
    sp = np.concatenate([s for _, s, _ in lfw_rows])
    print(f"faces-dev test identities, every fold's model at its threshold: BPCER {100 * np.mean(~acc[sp == 'bona_fide']):.1f}%"
          + "".join(f", APCER {k} {100 * np.mean(acc[sp == k]):.1f}%" for k in CV_SPECIES[1:])
          + f" ({int((sp == 'bona_fide').sum() / len(lfw_rows))} bona fide, "
          f"{int((sp == 'print_sim').sum() / len(lfw_rows))} + {int((sp == 'replay_sim').sum() / len(lfw_rows))} attacks)")


def _cv_cells(accepted: np.ndarray, species: np.ndarray, windows: list[tuple[str, object]]) -> str:
    """BPCER and APCER per species (n) for single images (accepted = score >= threshold) and windows."""
    def rate(a, m, bona):
        return f"{100 * np.mean(~a[m] if bona else a[m]):5.1f}%/{int(m.sum()):<3}" if m.any() else f"{'-':>10}"
    ws = np.array([s for s, _ in windows])
    wl = np.array([r.liveness == "live" for _, r in windows])
    return (f"{'':14}{rate(accepted, species == 'bona_fide', True):>7} "
            + " ".join(f"{rate(accepted, species == k, False):>11}" for k in CV_SPECIES)
            + f"   {'':9}{rate(wl, ws == 'bona_fide', True):>7} "
            + " ".join(f"{rate(wl, ws == k, False):>11}" for k in CV_SPECIES))


def _cv_line(held: str, single: tuple, windows: list) -> None:
    sc, sp, thr = single
    print(f"{held:<20} {thr:6.3f}  " + _cv_cells(sc >= thr, sp, windows), flush=True)


def add_commands(sub, shared: Path) -> None:
    def common(s):
        s.add_argument("--data", type=Path, default=shared / "data")
        s.add_argument("--max-faces", type=int, default=800, help="faces-dev images in train (a quarter in calib/test)")
        s.add_argument("--cache", type=Path, default=None, help=f"face-crop cache (default {cache_dir()})")
        s.add_argument("--bpcer", type=float, default=0.05)
        s.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                       help="fusion inputs: padnet, texture, moire, border, glare, gamut, banding, thirdparty")
    s = sub.add_parser("train-pad", help="train PadNet (needs the train extra: torch), pin it, calibrate the fusion")
    common(s)
    s.add_argument("--epochs", type=int, default=16)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--texture-only", action="store_true",
                   help="keep the pinned PadNet; retrain only the colour-texture head, then calibrate")
    s.set_defaults(func=cmd_train_pad)
    s = sub.add_parser("calibrate-pad", help="fit the single-image PAD fusion and its threshold on the calib split")
    common(s)
    s.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION)
    s.set_defaults(func=cmd_calibrate_pad)
    s = sub.add_parser("bench-pad-cv", help="leave-one-pad-dev-person-out cross-validation of PadNet + fusion "
                       "(trains a model per fold: needs the train extra), single image and capture windows")
    common(s)
    s.add_argument("--epochs", type=int, default=8, help="per fold (train-pad uses 16)")
    s.add_argument("--faces-share", type=int, default=2, help="train on 1/N of the faces-dev train identities")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--only", default="", help="comma-separated held-out people (default: all 6)")
    s.set_defaults(func=cmd_bench_pad_cv)
