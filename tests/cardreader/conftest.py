"""cardreader fixtures: an issued demo document (cached per session) and, for `pcsc` tests,
a private pcscd with the vpcd virtual reader, started and stopped by PID."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cardreader.lds.dg1 import DG1


@pytest.fixture(scope="session")
def demo_persona():
    from cardreader.sim.persona import load_persona
    return load_persona("demo")


@pytest.fixture(scope="session")
def demo_document(demo_persona):
    from cardreader.sim.issuer import issue
    return issue(demo_persona)


@pytest.fixture(scope="session")
def bac_document(demo_persona):
    from cardreader.sim.issuer import issue
    return issue(demo_persona, pace=False)


@pytest.fixture(scope="session")
def demo_key(demo_document):
    return DG1.parse(demo_document.files["DG1"]).mrz.bac_key()


# --------------------------------------------------------------------------- pcscd + vpcd

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


@dataclass
class Pcscd:
    pid: int
    port: int  # vpcd slot 0 port; slot 1 is port + 1
    reader: str  # PC/SC name of slot 0
    log: Path


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port < 65535:
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair for vpcd")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory) -> Iterator[Pcscd]:
    """A pcscd of our own with one vpcd entry on a free port, stopped by PID at the end.

    As root it runs in a private mount namespace with its socket in a temp
    dir (PCSCLITE_CSOCK_NAME points pyscard there), so it never clashes with
    a system pcscd or a parallel test run. Readers are awaited by polling
    `smartcard.System.readers()`, never by a fixed sleep.
    """
    exe = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None)
    if exe is None or not VPCD_DRIVER.exists():
        pytest.skip("pcscd or the vpcd driver is not installed (apt-get install pcscd vsmartcard-vpcd)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the private pcscd needs root and unshare (mount namespace)")
    d = tmp_path_factory.mktemp("pcscd")
    (d / "run").mkdir()
    port = _free_port_pair()
    conf = d / "reader.conf"
    conf.write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{port:04X}\n'
                    f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n")
    Path("/run/pcscd").mkdir(parents=True, exist_ok=True)
    os.environ["PCSCLITE_CSOCK_NAME"] = str(d / "run" / "pcscd.comm")
    log = d / "pcscd.log"
    script = f"mount --bind {d / 'run'} /run/pcscd && exec {exe} -f -a -c {conf}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        from smartcard.System import readers
        deadline = time.monotonic() + 10
        names: list = []
        while not names:
            if proc.poll() is not None:
                pytest.fail(f"pcscd exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"pcscd showed no vpcd reader within 10 s: {log.read_text()[-2000:]}")
            try:
                names = [str(r) for r in readers()]
            except Exception:
                names = []
            time.sleep(0.01)
        yield Pcscd(proc.pid, port, names[0], log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def virtual_card(pcscd):
    """Place a `SimulatedChip` on the vpcd reader: `virtual_card(chip)`; taken away after the test,
    and the fixture waits until pcscd has seen the removal, so the next test starts with an empty reader."""
    from cardreader.sim.vpcd import VirtualCard
    from cardreader.transport import PcscTransport
    cards: list[VirtualCard] = []

    def place(chip):
        card = VirtualCard(chip, port=pcscd.port).start()
        cards.append(card)
        return card

    yield place
    for card in cards:
        card.stop()
    watcher = PcscTransport(pcscd.reader)
    try:
        assert watcher.wait_for_removal(10.0), "pcscd still sees the virtual card"
    finally:
        watcher.close()
