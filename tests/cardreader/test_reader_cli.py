"""`python -m cardreader` starts and lists its subcommands, whatever helper modules have landed."""
from __future__ import annotations

import subprocess
import sys


def test_help_lists_the_protocol_subcommands():
    out = subprocess.run([sys.executable, "-m", "cardreader", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("read", "sim-card", "bench-read"):
        assert command in out.stdout


def test_read_requires_a_key():
    out = subprocess.run([sys.executable, "-m", "cardreader", "read", "--out", "x"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--mrz" in out.stderr
