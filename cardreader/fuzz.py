"""`python -m cardreader fuzz`: hostile input against every parser that sees card data,
the chip's answers to active and chip authentication, and the document scanner's images.

A target takes bytes and must end in a result or in its parser's typed error
(`LDSError` for the LDS files and the MRZ, `SODError` for EF.SOD, `TrustError`
for certificates, CRLs and Master Lists, a `PAResult` for passive
authentication). Anything else is a crash; an input that runs over the
per-input time bound is a hang; address space is capped with
`resource.setrlimit`, so an unbounded allocation ends as a MemoryError (or,
under atheris, libFuzzer's out-of-memory) and is reported too.

Seeds are valid encodings from the simulated issuer and the test PKI. Two
engines: `mutate` (default) is a deterministic, structure-aware mutator
(flips, truncation, splices, every DER length inflated towards gigabytes)
that runs every target in one process; `atheris` is coverage-guided
(libFuzzer), one process per target. Failing inputs are written to
`--artifacts` for a regression test.

    python -m cardreader fuzz --runs 20000                    # quick, every target (the suite runs this)
    taskset -c 1 python -m cardreader fuzz --engine atheris --runs 1000000 \
        --artifacts fuzz-artifacts > fuzz-1m.log 2>&1         # the long run: 1M inputs, ~10 min, one core
    python -m cardreader fuzz --engine atheris --target aa --runs 200000    # one target (also ca, scanner)
"""
from __future__ import annotations

import functools
import gc
import hashlib
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MEMORY_MB = 3072
INSTRUMENTED = ("cardreader.lds", "cardreader.pki", "cardreader.protocol", "cardreader.apdu", "cardreader.scanner",
                "asn1crypto")  # what atheris traces for coverage


class Hang(BaseException):
    """Raised by the per-input alarm; a BaseException so no parser's `except Exception` swallows it."""


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], bool]  # True: parsed, False: the typed error; raises only on a crash
    seeds: Callable[[], list[bytes]]
    share: float = 1.0            # of an even split of --runs (the OCR target costs ~1 s an input)
    min_timeout_s: float = 0.0    # per-input bound at least this (OCR of a whole card image)


# --------------------------------------------------------------------------- seeds

@functools.lru_cache(maxsize=None)
def _documents():
    """The demo ID card and a passport-style document signed by an RSA-PSS and an explicit-curve PKI."""
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    from cardreader.sim.test_pki import TestPKI
    demo = issue(load_persona("demo"))
    others = [issue(load_persona("impostor"), TestPKI.create(algorithm=a), pace="secp256r1")
              for a in ("rsa-pss", "ecdsa-brainpoolP256r1-explicit")]
    return [demo, *others]


def _files(*names: str) -> list[bytes]:
    return [doc.files[n] for doc in _documents() for n in names if n in doc.files]


def _tagged_text_seeds() -> list[bytes]:
    from cardreader.lds.dg11 import build_dg11
    from cardreader.lds.dg12 import build_dg12
    return [build_dg11({"full_name": "COLLINS<<EILEEN<MARIE", "other_names": ["A", "B"],
                        "place_of_birth": ["ELMIRA", "NY"], "personal_number": "079176004218"}),
            build_dg12({"date_of_issue": "20211119", "issuing_authority": "Bộ Công an"})]


def _mrz_seeds() -> list[bytes]:
    from cardreader.lds.dg1 import DG1
    lines = [("\n".join(DG1.parse(f).mrz.lines)).encode() for f in _files("DG1")]
    return lines + [b"".join(ln.split(b"\n")) for ln in lines]


def _pki_seeds(kind: str) -> list[bytes]:
    out = []
    for doc in _documents():
        pki = doc.pki
        if kind == "certificate":
            out += [pki.csca_cert, pki.ds_cert]
        elif kind == "crl":
            out += [pki.crl(), pki.crl([pki.ds_serial, 7])]
        elif kind == "masterlist":
            out.append(pki.masterlist())
    if kind == "certificate":  # the DS certificate as embedded in EF.SOD, too
        from cardreader.lds.sod import parse_sod
        out += [c.dump() for f in _files("EF.SOD") for c in parse_sod(f).certificates][:1]
    return out


# --------------------------------------------------------------------------- targets

def _lds(parser_path: str, decode_faces: bool = False) -> Callable[[bytes], None]:
    module, _, attr = parser_path.rpartition(":")

    def run(data: bytes) -> None:
        import importlib
        from cardreader.lds import LDSError
        parser = importlib.import_module(module)
        for part in attr.split("."):
            parser = getattr(parser, part)
        try:
            parsed = parser(data)
        except LDSError:
            return False
        for face in getattr(parsed, "faces", ()) if decode_faces else ():
            try:
                face.decode()
            except LDSError:
                pass
        getattr(parsed, "as_dict", lambda: None)()  # what the CLI and the gate read must not crash either
        return True
    return run


def _mrz(data: bytes) -> None:
    from cardreader.lds import LDSError
    from cardreader.lds.mrz import parse_mrz
    try:
        m = parse_mrz(data.decode("latin-1"))
    except LDSError:
        return False
    if m.valid:
        m.bac_key().key_seed_input()
    return True


def _sod(data: bytes) -> None:
    from cardreader.lds.files import describe
    from cardreader.lds.sod import SODError, parse_sod
    try:
        sod = parse_sod(data)
    except SODError:
        return False
    describe(sod)
    return True


@functools.lru_cache(maxsize=None)
def _trust_store():
    """An in-memory store trusting the seeds' CSCAs (so chains, CRLs and Master Lists verify deeply)."""
    from cardreader.pki import TrustStore
    store = TrustStore(None)
    for doc in _documents():
        store.add_csca(doc.pki.csca_cert)
    return store


def _pa(data: bytes) -> None:
    from cardreader.pki import passive_authentication
    from cardreader.pki.pa import PAResult
    doc = _documents()[0]
    dgs = {int(n[2:]): v for n, v in doc.files.items() if n.startswith("DG")}
    result = passive_authentication(data, dgs, _trust_store(), at=doc.pki.now, com=doc.files["EF.COM"])
    if not isinstance(result, PAResult) or result.verdict not in ("valid", "invalid", "incomplete"):
        raise AssertionError(f"passive_authentication returned {result!r}")
    result.to_json()
    return result.checks["sod_parsed"] is True


def _certificate(data: bytes) -> None:
    from cardreader.pki import TrustStore
    from cardreader.pki.trust import TrustError, _describe, certificate_problems, load_certificate
    try:
        cert = load_certificate(data)
    except TrustError:
        return False
    _describe(cert)
    certificate_problems(cert, _documents()[0].pki.now, "ds")
    _trust_store().issuer_of(cert, _documents()[0].pki.now)
    try:
        TrustStore(None).add_csca(data)
    except TrustError:
        pass
    return True


def _crl(data: bytes) -> None:
    from cardreader.pki.trust import TrustError
    store = _trust_store().detached()
    try:
        store.import_crl(data)
    except TrustError:
        return False
    store.crls()
    return True


def _masterlist(data: bytes) -> None:
    from cardreader.pki.trust import TrustError
    store = _trust_store().detached()
    try:
        store.import_masterlist(data, at=_documents()[0].pki.now)
    except TrustError:
        return False
    store.list()
    return True


# --------------------------------------------------------------------------- chip answers and scanner images
# A hostile chip knows its own keys, so these targets let it answer anything *validly* signed or MACed
# too (the first byte picks the mode), not only garbage that fails the first check.

AA_CHALLENGE = bytes(range(1, 9))


@functools.lru_cache(maxsize=None)
def _aa_docs():
    """(RSA document, ECDSA-AA document) of the demo persona."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    rsa_doc = _documents()[0]
    return rsa_doc, issue(load_persona("demo"), rsa_doc.pki, aa_key=ec.generate_private_key(ec.SECP256R1()))


def _aa(data: bytes) -> bool:
    """Active authentication: the INTERNAL AUTHENTICATE answer, DG15 and DG14 are all the chip's.
    Modes: 0 the RSA signature as sent, 1 an ISO 9796-2 representative F signed with the chip's key
    (message recovery on anything the chip likes), 2 the plain r||s ECDSA signature, 3 DG15 (with a
    fixed answer), 4 DG14 naming the ECDSA hash."""
    from cardreader.protocol.aa import AAResult, verify_aa
    if not data:
        return False
    mode, body = data[0] % 5, data[1:]
    rsa_doc, ec_doc = _aa_docs()
    if mode == 1:
        n = rsa_doc.aa_private_key.private_numbers()
        f = int.from_bytes(body, "big")
        if not 0 < f < n.public_numbers.n:
            return False
        body = pow(f, n.d, n.public_numbers.n).to_bytes((n.public_numbers.n.bit_length() + 7) // 8, "big")
    doc = ec_doc if mode in (2, 4) else rsa_doc
    dg15, dg14, response = doc.files["DG15"], doc.files.get("DG14"), body
    if mode == 3:
        dg15, response = body, _aa_seed_answers()[0][1:]
    elif mode == 4:
        dg14, response = body, _aa_seed_answers()[2][1:]
    result = verify_aa(dg15, AA_CHALLENGE, response, dg14)
    if not isinstance(result, AAResult) or result.result not in ("passed", "failed", "not_performed"):
        raise AssertionError(f"verify_aa returned {result!r}")
    result.to_json()
    return result.passed


@functools.lru_cache(maxsize=None)
def _aa_seed_answers() -> list[bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cardreader.pki import iso9796_2
    rsa_doc, ec_doc = _aa_docs()
    key = rsa_doc.aa_private_key
    m1 = bytes(iso9796_2.m1_length(key.key_size))
    r, s = decode_dss_signature(ec_doc.aa_private_key.sign(AA_CHALLENGE, ec.ECDSA(hashes.SHA256())))
    return [b"\x00" + iso9796_2.sign(key, AA_CHALLENGE, m1=m1),
            b"\x01" + iso9796_2.encode(m1, AA_CHALLENGE, key.key_size),
            b"\x02" + r.to_bytes(32, "big") + s.to_bytes(32, "big"),
            b"\x03" + rsa_doc.files["DG15"], b"\x04" + ec_doc.files["DG14"]]


class _HostileChip:
    """A transport whose chip answers from the fuzz input, each answer `flags sw1 sw2 len payload`:
    flags&3 = 0 raw bytes, 1 the payload as properly protected data (it knows the session keys),
    2 the payload as SM data objects followed by a valid MAC over them, 3 a bare status word.
    With no input left it answers a protected 9000."""

    def __init__(self, script: bytes):
        self.script, self.channel = script, None

    def card_present(self) -> bool:
        return True

    def transmit(self, apdu: bytes) -> bytes:
        from cardreader.apdu import ResponseAPDU
        from cardreader.protocol.sm import SMSession, encode_do
        live = self.channel.session
        session = SMSession(live.cipher, live.ks_enc, live.ks_mac, live.ssc)   # the chip's copy
        if len(self.script) < 4:
            return session.protect_response(apdu[1], ResponseAPDU(b"", 0x9000))
        flags, sw, n = self.script[0], self.script[1:3], self.script[3]
        payload, self.script = self.script[4:4 + n], self.script[4 + n:]
        if flags & 3 == 1:
            return session.protect_response(apdu[1], ResponseAPDU(payload, int.from_bytes(sw, "big")))
        if flags & 3 == 2:
            session.ssc += 1
            return payload + encode_do(0x8E, session._mac(payload)) + sw
        return (b"" if flags & 3 == 3 else payload) + sw


@functools.lru_cache(maxsize=None)
def _ca_seed_dg14s() -> list[bytes]:
    """DG14s announcing an ECDH key (AES) and a DH key (RFC 5114 group, 3DES)."""
    from cardreader.lds import tlv
    from cardreader.lds.security_infos import (chip_authentication_info, chip_authentication_public_key_info,
                                               encode_security_infos)
    from cardreader.protocol.ca import DHChipKey
    from cardreader.protocol.pace import STANDARD_GROUPS
    group = STANDARD_GROUPS[0]()
    dh = DHChipKey(group, group.random_private(lambda k: bytes([7]) * k))
    infos = [chip_authentication_public_key_info(dh.spki(), key_id=1),
             chip_authentication_info("id-CA-DH-3DES-CBC-CBC", key_id=1)]
    return [_files("DG14")[0], tlv.encode(0x6E, encode_security_infos(infos))]


def _ca(data: bytes) -> bool:
    """Chip authentication: mode 0 the chip's DG14 (its key and protocol), answering properly
    protected 9000s; mode 1 its answers (`_HostileChip`) to MSE:Set AT, GENERAL AUTHENTICATE and the
    confirming SELECT, with the first seed's DG14. Ends in the reader's typed errors or success."""
    from cardreader.apdu import CardError, PlainChannel
    from cardreader.lds import LDSError, tlv
    from cardreader.lds.security_infos import parse_security_infos
    from cardreader.protocol import ca
    from cardreader.protocol.pace import PACEError
    from cardreader.protocol.sm import AccessControlError, SecureChannel, SecureMessagingError, SMSession
    if not data:
        return False
    dg14, script = (data[1:], b"") if data[0] % 2 == 0 else (_ca_seed_dg14s()[0], data[1:])
    chip = _HostileChip(script)
    channel = SecureChannel(PlainChannel(chip), SMSession("AES-128", bytes(16), bytes(range(16)), 0))
    chip.channel = channel
    try:
        ca.perform_ca(channel, parse_security_infos(tlv.parse_one(dg14, 0x6E).value))
    except (LDSError, AccessControlError, SecureMessagingError, CardError, PACEError):
        return False
    return True


@functools.lru_cache(maxsize=None)
def _scanner_seeds() -> list[bytes]:
    """A small rendered TD1 card as PNG, as JPEG and as a raw array."""
    import random as _random

    import cv2
    from cardreader.scanner.synth import render_document
    card = render_document(_documents()[0].persona.mrz, px_per_mm=7.0, rng=_random.Random(2))
    return [b"\x00" + cv2.imencode(".png", card)[1].tobytes(),
            b"\x00" + cv2.imencode(".jpg", card, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(),
            b"\x01" + _raw_image(card)]


RAW_DTYPES = ("uint8", "uint16", "float32", "int8", "bool", "float64")


def _raw_image(a) -> bytes:
    shape = tuple(a.shape) + (0,) * (3 - a.ndim)
    return bytes([RAW_DTYPES.index(str(a.dtype)), a.ndim]) + b"".join(d.to_bytes(2, "big") for d in shape) \
        + a.tobytes()


def _scanner(data: bytes) -> bool:
    """The document scanner's input: mode 0 encoded image bytes (what a folder or the integrator
    hands over), mode 1 a raw array of any dtype/shape (what a camera driver hands over; the header
    declares dtype, ndim and up to 3 sides, the pixels are repeated to fill it, capped at 64 MB)."""
    import numpy as np
    from cardreader.scanner import ScanResult, read_mrz
    if not data:
        return False
    image: object = data[1:]
    if data[0] % 2 == 1:
        if len(data) < 9:
            return False
        dtype, ndim = np.dtype(RAW_DTYPES[data[1] % len(RAW_DTYPES)]), data[2] % 4
        shape = tuple(int.from_bytes(data[3 + 2 * i:5 + 2 * i], "big") for i in range(3))[:ndim]
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size > 64 << 20:
            return False
        pixels = data[9:] or b"\x00"
        raw = (pixels * (size // len(pixels) + 1))[:size]
        image = np.frombuffer(raw, dtype).reshape(shape)
    result = read_mrz(image)
    if not isinstance(result, ScanResult) or (result.ok and result.mrz is None):
        raise AssertionError(f"read_mrz returned {result!r}")
    return result.ok


TARGETS: dict[str, Target] = {
    "tlv": Target(_lds("cardreader.lds.tlv:parse"), lambda: _files("DG1", "DG13", "DG14", "EF.COM")),
    "file": Target(_lds("cardreader.lds.files:parse_file"), lambda: _files("DG1", "DG13", "EF.COM", "DG15")),
    "mrz": Target(_mrz, _mrz_seeds),
    "com": Target(_lds("cardreader.lds.com:COM.parse"), lambda: _files("EF.COM")),
    "dg1": Target(_lds("cardreader.lds.dg1:DG1.parse"), lambda: _files("DG1")),
    "dg2": Target(_lds("cardreader.lds.dg2:DG2.parse", decode_faces=True), lambda: _files("DG2")[:1]),
    "dg11": Target(_lds("cardreader.lds.dg11:DG11.parse"), lambda: _tagged_text_seeds()[:1]),
    "dg12": Target(_lds("cardreader.lds.dg12:DG12.parse"), lambda: _tagged_text_seeds()[1:]),
    "dg13": Target(_lds("cardreader.lds.dg13:DG13.parse"), lambda: _files("DG13")),
    "dg14": Target(_lds("cardreader.lds.dg14:DG14.parse"), lambda: _files("DG14")),
    "dg15": Target(_lds("cardreader.lds.dg15:DG15.parse"), lambda: _files("DG15")),
    "card-access": Target(_lds("cardreader.lds.security_infos:parse_security_infos"),
                          lambda: _files("EF.CardAccess")),
    "sod": Target(_sod, lambda: _files("EF.SOD")),
    "pa": Target(_pa, lambda: _files("EF.SOD")[:1]),
    "certificate": Target(_certificate, lambda: _pki_seeds("certificate")),
    "crl": Target(_crl, lambda: _pki_seeds("crl")),
    "masterlist": Target(_masterlist, lambda: _pki_seeds("masterlist")),
    "aa": Target(_aa, _aa_seed_answers),
    "ca": Target(_ca, lambda: [b"\x00" + d for d in _ca_seed_dg14s()] + [b"\x01"]),
    "scanner": Target(_scanner, _scanner_seeds, share=0.01, min_timeout_s=20.0),
}


# --------------------------------------------------------------------------- the mutation engine

LENGTH_BOMBS = (b"\x84\x7f\xff\xff\xff", b"\x84\xff\xff\xff\xff", b"\x83\xff\xff\xff", b"\x82\xff\xff",
                b"\x80", b"\x81\x00", b"\x85\x01\x00\x00\x00\x00", b"\x89" + b"\xff" * 9)
INTERESTING = (0x00, 0x01, 0x02, 0x30, 0x31, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xA0, 0xFF)


def length_offsets(data: bytes) -> list[int]:
    """Offsets of the length fields of a (BER/DER) TLV encoding, walked leniently: as far as it parses."""
    out: list[int] = []

    def walk(start: int, end: int, depth: int) -> None:
        pos = start
        while pos < end and depth < 32 and len(out) < 4096:
            tag_start = pos
            first = data[pos]
            pos += 1
            if first & 0x1F == 0x1F:
                while pos < end and data[pos] & 0x80:
                    pos += 1
                pos += 1
            if pos >= end:
                return
            out.append(pos)
            n = data[pos]
            pos += 1
            if n & 0x80:
                k = n & 0x7F
                if k == 0 or k > 4 or pos + k > end:
                    return
                n = int.from_bytes(data[pos:pos + k], "big")
                pos += k
            if pos + n > end:
                return
            if first & 0x20:
                walk(pos, pos + n, depth + 1)
            pos += n
            assert pos > tag_start

    walk(0, len(data), 0)
    return out


class Mutator:
    """Deterministic mutations of a seed corpus (with stacking on earlier mutants)."""

    def __init__(self, seeds: list[bytes], rng: random.Random):
        self.seeds = seeds
        self.offsets = [length_offsets(s) for s in seeds]
        self.rng = rng
        self.recent: list[bytes] = []

    def __call__(self) -> bytes:
        r = self.rng
        i = r.randrange(len(self.seeds))
        data = bytearray(self.seeds[i])
        offsets = self.offsets[i]
        if self.recent and r.random() < 0.25:
            data, offsets = bytearray(r.choice(self.recent)), []
        for _ in range(r.choice((1, 1, 1, 2, 2, 3, 5, 8))):
            data = self._one(data, offsets)
        out = bytes(data)
        if len(self.recent) < 256:
            self.recent.append(out)
        else:
            self.recent[r.randrange(256)] = out
        return out

    def _one(self, data: bytearray, offsets: list[int]) -> bytearray:
        r = self.rng
        n = len(data)
        op = r.randrange(10)
        i = r.randrange(n) if n else 0
        if op == 0 and n:
            data[i] ^= 1 << r.randrange(8)
        elif op == 1 and n:
            data[i] = r.choice(INTERESTING)
        elif op == 2 and n:
            data[i] = r.randrange(256)
        elif op == 3:
            del data[i:]
        elif op == 4:
            data[i:i] = r.randbytes(r.randrange(1, 16))
        elif op == 5:
            del data[i:i + r.randrange(1, 32)]
        elif op == 6 and n:  # duplicate a slice (repeated elements, nested copies)
            j = r.randrange(i, min(n, i + 256) + 1)
            data[i:i] = data[i:j]
        elif op == 7:  # splice from another seed
            other = r.choice(self.seeds)
            j = r.randrange(len(other) + 1)
            data[i:] = other[j:j + r.randrange(1, 512)]
        elif op in (8, 9) and offsets:  # a length field: bomb, off by a little, or zero
            k = r.choice(offsets)
            if k < n:
                length_len = 1 + (data[k] & 0x7F if data[k] & 0x80 else 0)
                if op == 8:
                    data[k:k + length_len] = r.choice(LENGTH_BOMBS)
                else:
                    data[k] = (data[k] + r.choice((-2, -1, 1, 2))) & 0xFF
        return data


@dataclass
class Stats:
    target: str
    execs: int = 0
    accepted: int = 0  # inputs that parsed (the rest ended in a typed error)
    failures: int = 0
    slowest_s: float = 0.0
    seconds: float = 0.0


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _alarm(signum, frame):
    raise Hang()


def _save(artifacts: Path, target: str, kind: str, data: bytes) -> Path:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{target}-{kind}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def runs_for(name: str, runs: int, targets: int) -> int:
    """The target's part of `runs` split over `targets` (weighted by its share)."""
    return max(1, round(runs / targets * TARGETS[name].share)) if targets > 1 else runs


def run_one(name: str, data: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | str:
    """Run one input: True (parsed) or False (typed error), else the failure: 'crash:Type', 'hang' or 'memory'."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(timeout_s, TARGETS[name].min_timeout_s))
    try:
        return bool(TARGETS[name].run(data))
    except Hang:
        return "hang"
    except MemoryError:
        return "memory"
    except Exception as exc:  # everything a parser may not raise
        return f"crash:{type(exc).__name__}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fuzz(name: str, runs: int, *, seed: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S,
         artifacts: Path | None = None, log=None) -> Stats:
    """Mutation-fuzz one target in-process for `runs` inputs (the seeds themselves first)."""
    target = TARGETS[name]
    seeds = target.seeds()
    mutate = Mutator(seeds, random.Random(f"{name}:{seed}"))
    stats = Stats(name)
    start = time.perf_counter()
    for k in range(runs):
        data = seeds[k] if k < len(seeds) else mutate()
        t0 = time.perf_counter()
        outcome = run_one(name, data, timeout_s)
        took = time.perf_counter() - t0
        stats.execs += 1
        stats.slowest_s = max(stats.slowest_s, took)
        stats.accepted += outcome is True
        if isinstance(outcome, str):
            failure = outcome
            stats.failures += 1
            where = _save(artifacts, name, failure.split(":")[0], data) if artifacts else None
            if log:
                print(f"{name}: {failure} on {len(data)} bytes -> {where}", file=log, flush=True)
    stats.seconds = time.perf_counter() - start
    return stats


# --------------------------------------------------------------------------- atheris

def _atheris_main(name: str, runs: int, timeout_s: float, memory_mb: int, artifacts: Path, corpus: Path | None) -> int:
    """Coverage-guided run of one target under libFuzzer (never returns: libFuzzer exits)."""
    import atheris
    target = TARGETS[name]
    seeds = target.seeds()
    corpus = corpus or Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (corpus / hashlib.sha256(s).hexdigest()[:16]).write_bytes(s)
    run = target.run
    run(seeds[0])  # import every module the target touches, then instrument ours and asn1crypto's:
    for obj in gc.get_objects():  # (atheris.instrument_all would spend a minute on numpy, cv2, ...)
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(INSTRUMENTED):
            atheris.instrument_func(obj)
    artifacts.mkdir(parents=True, exist_ok=True)
    _limit_memory(memory_mb + 1024)  # a backstop behind libFuzzer's own -rss_limit_mb
    max_len = max(len(s) for s in seeds) * 5 // 4 + 64
    timeout_s = max(timeout_s, target.min_timeout_s)
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-timeout={max(1, round(timeout_s))}",
                   f"-rss_limit_mb={memory_mb}", f"-max_len={max_len}", "-print_final_stats=1",
                   f"-artifact_prefix={artifacts}/{name}-", str(corpus)], run)
    atheris.Fuzz()
    return 0


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")


def _atheris_all(names: list[str], runs: int, args) -> int:
    """One libFuzzer process per target (libFuzzer exits when done); prints each one's figures."""
    total, worst = 0, 0
    for name in names:
        cmd = [sys.executable, "-m", "cardreader", "fuzz", "--engine", "atheris", "--target", name,
               "--runs", str(runs_for(name, runs, len(names))), "--timeout", str(args.timeout), "--memory-mb", str(args.memory_mb),
               "--artifacts", str(args.artifacts)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        done = _DONE.search(proc.stderr)
        execs = int(done.group(1)) if done else 0
        stat = dict(_STAT.findall(proc.stderr))
        total += execs
        worst = max(worst, proc.returncode)
        status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode}"
        print(f"{name:<12} {execs:>9} execs {time.perf_counter() - t0:>8.1f} s  corpus +{stat.get('new_units_added', '?')}"
              f"  slowest {stat.get('slowest_unit_time_sec', '?')} s  peak RSS {stat.get('peak_rss_mb', '?')} MB  {status}",
              flush=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
    print(f"total        {total:>9} execs", flush=True)
    return 1 if worst else 0


# --------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    p = subparsers.add_parser("fuzz", help="fuzz the parsers that see card data (LDS, MRZ, SOD, PKI)")
    p.add_argument("--target", default="all", help=f"one of {', '.join(TARGETS)}, or 'all' (runs split evenly)")
    p.add_argument("--runs", type=int, default=20_000, help="inputs in total")
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    p.add_argument("--seed", type=int, default=0, help="random seed of the mutate engine")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-input time bound (s)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="address-space cap (MB)")
    p.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"), help="where failing inputs go")
    p.add_argument("--corpus", type=Path, help="atheris: corpus directory to keep (default: a temporary one)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    names = list(TARGETS) if args.target == "all" else [args.target]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target {unknown[0]!r}; targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    if args.engine == "atheris":
        if len(names) > 1:
            return _atheris_all(names, args.runs, args)
        return _atheris_main(names[0], args.runs, args.timeout, args.memory_mb, args.artifacts, args.corpus)
    for name in names:  # build the seeds before capping memory (key generation, image loading)
        TARGETS[name].seeds()
    _trust_store()
    _limit_memory(args.memory_mb)
    print(f"{'target':<12} {'execs':>8} {'parsed':>7} {'fail':>5} {'execs/s':>8} {'slowest s':>10}", flush=True)
    total = Stats("total")
    for name in names:
        s = fuzz(name, runs_for(name, args.runs, len(names)), seed=args.seed, timeout_s=args.timeout, artifacts=args.artifacts, log=sys.stderr)
        print(f"{name:<12} {s.execs:>8} {s.accepted:>7} {s.failures:>5} {s.execs / s.seconds:>8.0f} "
              f"{s.slowest_s:>10.3f}", flush=True)
        total.execs += s.execs
        total.failures += s.failures
        total.seconds += s.seconds
        total.slowest_s = max(total.slowest_s, s.slowest_s)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'total':<12} {total.execs:>8} {'':>7} {total.failures:>5} {total.execs / total.seconds:>8.0f} "
          f"{total.slowest_s:>10.3f}   peak RSS {peak_mb:.0f} MB, cap {args.memory_mb} MB, "
          f"time bound {args.timeout} s per input", flush=True)
    return 1 if total.failures else 0
