"""`python -m gate`: help, the default command starting the gate with its embedded
defaults (both URLs printed and answering 200, the kiosk stream live), accounts."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gate(*args: str, data_dir: Path, env_extra: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "EGATE_DATA_DIR": str(data_dir), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "gate", *args], cwd=CHECKOUT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "gate", "--help"], cwd=CHECKOUT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("run", "users", "bench"):
        assert cmd in out.stdout


@pytest.fixture
def running(tmp_path):
    port = free_port()
    # Without the demo traveller, so the kiosk's first state is deterministic
    # (the demo traveller itself is covered in test_web).
    p = gate("--port", str(port), data_dir=tmp_path, env_extra={"EGATE_READER__DEMO_CARD": "false"})
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(x.startswith("Demo console account") for x in lines):
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
        yield port, lines
    finally:
        p.terminate()
        p.wait(timeout=20)


def test_default_command_starts_the_gate_and_prints_both_urls(running):
    port, lines = running
    assert f"Kiosk:   http://127.0.0.1:{port}/kiosk" in lines
    assert f"Console: http://127.0.0.1:{port}/console" in lines
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            kiosk = httpx.get(f"{base}/kiosk")
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert kiosk.status_code == 200 and httpx.get(f"{base}/console").status_code == 200
    with httpx.stream("GET", f"{base}/kiosk/events", timeout=10) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data:"))
    assert json.loads(first[5:])["state"] == "waiting"
    # the printed demo password works once, and only for the demo account
    account = next(x for x in lines if x.startswith("Demo console account"))
    user, password = account.split(": ", 1)[1].split("  ")[0].split(" / ")
    with httpx.Client(base_url=base) as c:
        csrf = c.get("/api/console/session").json()["csrf"]
        r = c.post("/api/console/login", json={"username": user, "password": password},
                   headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["role"] == "supervisor"


def test_users_add_and_list(tmp_path):
    env = {**os.environ, "EGATE_DATA_DIR": str(tmp_path)}
    add = subprocess.run([sys.executable, "-m", "gate", "users", "add", "chief", "--role", "supervisor"],
                         cwd=CHECKOUT, env=env, input="a long enough secret\n", capture_output=True, text=True,
                         timeout=60)
    assert add.returncode == 0, add.stdout + add.stderr
    short = subprocess.run([sys.executable, "-m", "gate", "users", "add", "x", "--role", "officer"],
                           cwd=CHECKOUT, env=env, input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "12 characters" in short.stdout
    ls = subprocess.run([sys.executable, "-m", "gate", "users", "list"], cwd=CHECKOUT, env=env,
                        capture_output=True, text=True, timeout=60)
    assert "chief\tsupervisor\tactive" in ls.stdout
    from gate.web.auth import UserStore
    assert UserStore.in_dir(tmp_path).verify("chief", "a long enough secret").role == "supervisor"
