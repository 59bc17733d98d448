"""Put the simulated chip behind the real PC/SC stack: pcscd's vpcd driver speaks to us over TCP.

Protocol (vsmartcard vpcd): every message is a 2-byte big-endian length and
a payload; a 1-byte payload is control (00 power off, 01 power on, 02 reset,
04 ATR request), anything longer is a command APDU to answer with the
response APDU. vpcd writes the length and the APDU in two sends, so without
TCP_NODELAY and TCP_QUICKACK every APDU waits ~40 ms for a delayed ACK.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from cardreader.transport import CardAbsent

log = logging.getLogger(__name__)

DEFAULT_PORT = 35963  # /etc/reader.conf.d/vpcd CHANNELID 0x8C7B → slot 'Virtual PCD 00 00'


def _atr() -> bytes:
    """A contactless-style ATR offering T=1 (PC/SC part 3 layout), with its TCK."""
    hist = b"\x80\x01\x80eMRTD"  # category 80, then a readable tag for pcsc_scan
    body = bytes((0x80 | len(hist), 0x80, 0x01)) + hist
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


ATR = _atr()
CONTROL_POWER_OFF, CONTROL_POWER_ON, CONTROL_RESET, CONTROL_ATR = 0, 1, 2, 4


class VirtualCard:
    """Serve one chip on one vpcd slot until `stop()` (or `remove()`).

    Removing the card closes the socket: pcscd then reports the card absent,
    as when a traveller lifts the document off a real reader.
    """

    def __init__(self, chip, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.chip = chip
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.apdus = 0

    # ------------------------------------------------------------------ lifecycle
    def connect(self, timeout: float = 5.0) -> None:
        """Connect to vpcd, retrying while pcscd is not yet listening; fail loudly after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"no vpcd listening on {self.host}:{self.port}: {e}") from e
                time.sleep(0.02)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(0.2)  # lets the loop notice stop() and card removal
        self._sock = sock

    def start(self, timeout: float = 5.0) -> "VirtualCard":
        self._stop.clear()
        self.connect(timeout)
        self._thread = threading.Thread(target=self.serve, name=f"vpcd-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._close()

    def remove(self) -> None:
        self.stop()

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # ------------------------------------------------------------------ protocol
    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            if self._stop.is_set() or self._sock is None:
                return None
            if hasattr(socket, "TCP_QUICKACK"):
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            try:
                chunk = self._sock.recv(n - len(buf))
            except socket.timeout:
                continue
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _send(self, payload: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def serve(self) -> None:
        """Answer vpcd until stopped, the link closes or the card is pulled (blocking)."""
        try:
            while not self._stop.is_set():
                head = self._recv_exact(2)
                if head is None:
                    break
                payload = self._recv_exact(int.from_bytes(head, "big"))
                if payload is None:
                    break
                if len(payload) == 1:
                    self._control(payload[0])
                    continue
                self.apdus += 1
                try:
                    out = self.chip.process(payload)
                except CardAbsent:
                    log.info("simulated card pulled")
                    break
                if out is not None:  # None: a mute card never answers
                    self._send(out)
        except OSError as e:
            log.info("vpcd link closed: %s", e)
        finally:
            self._close()

    def _control(self, code: int) -> None:
        if code in (CONTROL_POWER_OFF, CONTROL_POWER_ON, CONTROL_RESET):
            self.chip.reset()
        elif code == CONTROL_ATR:
            self._send(ATR)


VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
SYSTEM_SOCKET = Path("/run/pcscd/pcscd.comm")


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (vpcd's one entry opens two slots)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for vpcd")


class PrivatePcscd:
    """A pcscd of our own: one vpcd entry on a free port, its socket in `workdir`, stopped by PID.

    Runs in a private mount namespace (root + unshare) so it never clashes
    with a system pcscd or a parallel run; PCSCLITE_CSOCK_NAME is set for this
    process, which must happen before its first PC/SC call. Readers are
    awaited by polling `smartcard.System.readers()`, never a fixed sleep.
    The daemon is stopped by its PID (`unshare` and `sh` exec into pcscd).
    Since pcsc-lite reads the socket name once, a process can use only one
    PrivatePcscd in its lifetime: a second one is refused rather than left
    talking to the first daemon's reader. The same one may be stopped and
    started again (a pcscd restart, for the reader drill): same socket path,
    same vpcd port, so a `VirtualCard` reconnects to it.
    """

    _socket_in_process: Path | None = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.port = 0
        self.reader = ""
        self.log = self.workdir / "pcscd.log"
        self.proc: subprocess.Popen | None = None
        self.socket: Path | None = None   # where the first start put the daemon's socket

    @staticmethod
    def _namespace_possible() -> bool:
        return os.geteuid() == 0 and shutil.which("unshare") is not None

    @staticmethod
    def _system_socket_free() -> bool:
        run = Path("/run/pcscd")
        return not SYSTEM_SOCKET.exists() and os.access(run if run.exists() else run.parent, os.W_OK)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why a private pcscd cannot run here, or None."""
        if not (shutil.which("pcscd") or Path("/usr/sbin/pcscd").exists()) or not VPCD_DRIVER.exists():
            return "pcscd or the vpcd driver is not installed (apt-get install pcscd vsmartcard-vpcd)"
        if not cls._namespace_possible() and not cls._system_socket_free():
            return "a private pcscd needs root and unshare, or a free, writable /run/pcscd"
        return None

    def start(self, timeout: float = 10.0) -> "PrivatePcscd":
        """Start in a private mount namespace; where that is refused (no CAP_SYS_ADMIN), on the
        system socket path if no other pcscd holds it."""
        if self.proc is not None:
            raise RuntimeError("this pcscd is running")
        first = PrivatePcscd._socket_in_process
        if first is not None and first != self.socket:
            raise RuntimeError("this process already used a private pcscd: pcsc-lite keeps talking to the "
                               "first one, so share one PrivatePcscd per process")
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        run = self.workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        if self.socket is not None:   # a restart: the old socket file must not pass for the new daemon
            self.socket.unlink(missing_ok=True)
        self.port = self.port or free_port_pair()
        conf = self.workdir / "reader.conf"
        conf.write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{self.port:04X}\n'
                        f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{self.port:04X}\n")
        deadline = time.monotonic() + timeout
        if self._namespace_possible() and self.socket in (None, run / "pcscd.comm"):
            Path("/run/pcscd").mkdir(parents=True, exist_ok=True)
            script = f"mount --bind {run} /run/pcscd && exec {exe} -f -a -c {conf}"
            if self._launch(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            run / "pcscd.comm", deadline):
                return self._await_reader(deadline)
        if self.socket not in (None, SYSTEM_SOCKET):
            raise RuntimeError(f"pcscd did not restart in its namespace: {self.log.read_text()[-2000:]}")
        if not self._system_socket_free():
            raise RuntimeError(f"pcscd could not start privately and {SYSTEM_SOCKET} is taken: "
                               f"{self.log.read_text()[-2000:]}")
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)
        if not self._launch([exe, "-f", "-a", "-c", str(conf)], SYSTEM_SOCKET, deadline):
            raise RuntimeError(f"pcscd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return self._await_reader(deadline)

    def _launch(self, cmd: list[str], socket_path: Path, deadline: float) -> bool:
        """Start pcscd and wait for its socket file (before any PC/SC call, since pcsc-lite
        reads PCSCLITE_CSOCK_NAME once per process)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while not socket_path.exists():
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pcscd did not create its socket in time")
            time.sleep(0.01)
        os.environ["PCSCLITE_CSOCK_NAME"] = str(socket_path)
        PrivatePcscd._socket_in_process = self.socket = socket_path
        return True

    def _await_reader(self, deadline: float) -> "PrivatePcscd":
        from smartcard.System import readers
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                names = [str(r) for r in readers()]
            except Exception:  # pcscd not accepting connections yet
                names = []
            if names:
                self.reader = names[0]
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pcscd showed no vpcd reader in time")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> "PrivatePcscd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
