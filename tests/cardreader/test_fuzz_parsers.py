"""The fuzz driver (`python -m cardreader fuzz`) over every parser that sees card data.

The quick run here (20k inputs over all targets, the OCR target's share smaller) is
the in-suite version of the documented long runs (`--engine atheris`). The
regression files are inputs the driver found that once escaped as IndexError /
KeyError / TypeError / AttributeError from asn1crypto's lazy parsing, an unknown
curve or out-of-range DH numbers in a chip's DG14; they must now end in typed errors.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cardreader import fuzz
from cardreader.lds import tlv

REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.bin"))
REPO = Path(__file__).resolve().parents[2]


def test_quick_run_of_every_target_finds_no_crash_hang_or_memory_blowup(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cardreader", "fuzz", "--runs", "20000", "--timeout", "2",
                           "--memory-mb", "2048", "--artifacts", str(tmp_path / "artifacts")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = {m[0]: m for m in re.findall(r"^(\S+)\s+(\d+)\s+(\d*)\s+(\d+)\s", proc.stdout, re.M)}
    assert set(fuzz.TARGETS) <= set(rows)
    for name in fuzz.TARGETS:
        _, execs, parsed, failures = rows[name]
        assert int(execs) == fuzz.runs_for(name, 20000, len(fuzz.TARGETS)) and int(failures) == 0
        # the seeds parse (mutated CRLs and Master Lists almost never keep a valid signature)
        assert int(parsed) >= len(fuzz.TARGETS[name].seeds()), name
    # and for the unsigned files the mutants are not all rejected at the first byte
    # (a mutated AA answer must not pass, so `aa` counts only the seeds and harmless mutants)
    assert all(int(rows[n][2]) > 20 for n in ("tlv", "dg1", "dg2", "dg13", "dg14", "dg15", "sod", "certificate", "ca"))
    assert int(rows["total"][1]) == sum(fuzz.runs_for(n, 20000, len(fuzz.TARGETS)) for n in fuzz.TARGETS)
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.stem)
def test_found_crashes_now_end_in_typed_errors(path):
    target = path.name.split("-crash-")[0]
    assert fuzz.run_one(target, path.read_bytes()) is False


def test_seeds_are_valid_encodings():
    for name, target in fuzz.TARGETS.items():
        seeds = target.seeds()
        assert seeds, name
        assert all(fuzz.run_one(name, s) is True for s in seeds), name


def test_driver_reports_crash_hang_and_memory(monkeypatch, tmp_path):
    def buggy(data: bytes) -> bool:
        if data[:1] == b"\x00":
            raise IndexError("a parser bug")
        if data[:1] == b"\x01":
            while True:
                pass
        if data[:1] == b"\x02":
            bytearray(1 << 50)
        return True

    monkeypatch.setitem(fuzz.TARGETS, "buggy", fuzz.Target(buggy, lambda: [b"\x00a", b"\x01", b"\x02", b"\x03"]))
    assert fuzz.run_one("buggy", b"\x00") == "crash:IndexError"
    assert fuzz.run_one("buggy", b"\x01", timeout_s=0.2) == "hang"
    assert fuzz.run_one("buggy", b"\x02") == "memory"
    assert fuzz.run_one("buggy", b"\x03") is True
    stats = fuzz.fuzz("buggy", 4, timeout_s=0.2, artifacts=tmp_path)
    assert (stats.execs, stats.failures, stats.accepted) == (4, 3, 1)
    assert sorted(p.name.split("-")[1] for p in tmp_path.iterdir()) == ["crash", "hang", "memory"]


def test_mutator_is_deterministic_and_hits_length_fields():
    seed = fuzz.TARGETS["dg1"].seeds()[0]
    offsets = fuzz.length_offsets(seed)
    assert offsets == [1, 4]  # 61 L { 5F1F L mrz }
    node = tlv.parse(seed)[0]
    assert seed.startswith(b"\x61" + tlv.encode_length(len(node.value)) + b"\x5f\x1f")
    a = fuzz.Mutator([seed], fuzz.random.Random(1))
    b = fuzz.Mutator([seed], fuzz.random.Random(1))
    first = [a() for _ in range(200)]
    assert first == [b() for _ in range(200)]
    assert len(set(first)) > 150
    assert any(bomb in m for m in first for bomb in fuzz.LENGTH_BOMBS[:2])
