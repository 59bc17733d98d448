"""Fault drills: prove the transaction stays safe when things go wrong.

`python -m gate drill sigkill` runs a real gate process (simulated lane, SQLite
audit, a barrier whose position survives the process) and kills it with SIGKILL
at random points, hundreds of times; after each restart it checks that the
barrier was commanded closed, and at the end that the audit chain verifies, no
committed record is lost and no transaction is left open without a record.
`python -m gate drill faults` runs one transaction per injected fault (identity
service down / slow / erroring / malformed, audit store locked / full / gone,
card pulled / mute / swapped) and checks each is referred with the barrier
closed and the reason in the audit trail. `python -m gate drill camera` does the
same for camera faults (no frames, a failing or hanging camera, broken frames, a
frozen feed, another person mid-capture) with the real face models on recorded
live people. `python -m gate drill reader` stops and restarts pcscd under a PC/SC
lane. `python -m gate drill pg-restart` restarts PostgreSQL under a running gate;
`python -m gate drill load` runs N simulated gates against one identity service
and one audit store and prints throughput and latencies.

Everything runs on loopback with bounded loops. Except in the camera drill, the
face station is a scripted fake returning a fixed FaceResult (said in the
output): those drills measure the gate, not the CPU-bound face models.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gate.barrier import BarrierState
from gate.transaction import Devices, OpenJournal, Timeouts, Transaction, reconcile

FACE_NOTE = "face station: scripted fake (FaceResult match, live) - the models are not measured here"


# --- devices for drills ---------------------------------------------------------------------------

@dataclass
class ScriptedFaceResult:
    outcome: str = "match"
    score: float | None = 0.9
    threshold: float | None = 0.58
    liveness: str = "live"
    liveness_score: float | None = 0.9
    quality_ok: bool = True
    quality_failures: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    frames_seen: int = 12
    best_frame: Any = None


class ScriptedFace:
    """A face station that answers with a fixed result after `delay_s`."""

    def __init__(self, result: ScriptedFaceResult | None = None, delay_s: float = 0.0):
        self.result = result or ScriptedFaceResult()
        self.delay_s = delay_s

    def reference(self, chip_image: Any) -> Any:
        return "reference"

    def verify(self, reference: Any, window_s: float, on_guidance: Any) -> Any:
        time.sleep(self.delay_s)
        return self.result


class ClearIdentity:
    def check(self, person: Any, document: Any) -> Any:
        from gate.identity import IdentityAnswer
        return IdentityAnswer(outcome="clear")


class FileBarrier:
    """A simulated barrier whose position lives in a file, as a real barrier stays
    where it is when its controller dies. Travellers pass `pass_after_s` after opening."""

    def __init__(self, path: Path, pass_after_s: float = 0.02):
        self.path = Path(path)
        self.pass_after_s = pass_after_s
        if not self.path.exists():
            self._set(BarrierState.CLOSED)

    def _set(self, state: BarrierState) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(state.value)
        os.replace(tmp, self.path)

    def open(self) -> None:
        self._set(BarrierState.OPEN)

    def close(self) -> None:
        self._set(BarrierState.CLOSED)

    def state(self) -> BarrierState:
        return BarrierState(self.path.read_text().strip())

    def wait_for_passage(self, timeout: float) -> bool:
        time.sleep(min(timeout, self.pass_after_s))
        return self.state() is BarrierState.OPEN


def simulated_lane(data_dir: Path) -> Any:
    """A simulated lane holding the demo card (printed MRZ as the access key)."""
    from cardreader.sim.persona import load_persona
    from gate.config import Settings
    from gate.station import SimulatedLane
    settings = Settings(data_dir=data_dir)
    settings.reader.mrz_source = "printed"
    lane = SimulatedLane(settings)
    lane.insert(lane.issue(load_persona("demo")))
    return lane


def open_store(directory: Path, url: str | None = None) -> Any:
    from gate.audit import AuditKeys, AuditStore
    return AuditStore(url or f"sqlite:///{directory / 'audit.db'}", AuditKeys.load_or_create(directory / "audit.key"))


# --- SIGKILL drill ----------------------------------------------------------------------------------

class _Announcing:
    """Writes each committed audit record (seq, hash) and each begun transaction to
    `fd` as whole lines, so the supervising drill knows what must survive a kill."""

    def __init__(self, store: Any, fd: int):
        self.store, self.fd = store, fd

    def append(self, event: Any) -> Any:
        rec = self.store.append(event)
        os.write(self.fd, f"committed {rec.seq} {rec.hash}\n".encode())
        return rec


class _AnnouncingJournal(OpenJournal):
    def __init__(self, directory: Path, fd: int):
        super().__init__(directory)
        self.fd = fd

    def begin(self, transaction_id: str) -> None:
        super().begin(transaction_id)
        os.write(self.fd, f"begun {transaction_id}\n".encode())


def _gate_process(d: Path, lane: Any, fd: int, transactions: int) -> None:
    """The body of one gate process: reconcile what a previous kill left, then run
    transactions until killed (or `transactions` are done)."""
    from gate.policy import Policy
    audit = _Announcing(open_store(d), fd)
    barrier = FileBarrier(d / "barrier")
    journal = _AnnouncingJournal(d / "open", fd)
    aborted = reconcile(journal, audit, barrier, gate_id="drill-gate")
    os.write(fd, f"ready {barrier.state().value} {len(aborted)}\n".encode())
    devices = Devices(scanner=lane, reader=lane, face=ScriptedFace(), identity=ClearIdentity(), audit=audit,
                      barrier=barrier)
    for _ in range(transactions):
        rec = Transaction(devices, Policy(), gate_id="drill-gate", journal=journal).run()
        os.write(fd, f"ended {rec.id} {rec.outcome}\n".encode())


def _spawn(d: Path, lane: Any, log: Path, transactions: int) -> int:
    """Fork a gate process (the drill's imports and simulated card are already loaded,
    so 200 restarts take minutes, not a quarter of an hour); its lines go to `log`."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            _gate_process(d, lane, fd, transactions)
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def sigkill_drill(kills: int, directory: Path, *, max_delay_s: float = 0.6, seed: int = 0,
                  out=sys.stdout) -> dict[str, Any]:
    """Kill a gate process `kills` times at random points; return the figures and problems."""
    rng = random.Random(seed)
    lane = simulated_lane(directory / "lane")
    committed: dict[int, str] = {}
    begun: set[str] = set()
    problems: list[str] = []
    open_at_kill = ended = 0
    log = directory / "process.log"
    t0 = time.monotonic()
    for i in range(kills + 1):
        final = i == kills    # a last start only reconciles
        log.unlink(missing_ok=True)
        pid = _spawn(directory, lane, log, 0 if final else 10_000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "ready" in log.read_text()):
            time.sleep(0.005)
        if not final:
            time.sleep(rng.uniform(0, max_delay_s))
            if (directory / "barrier").read_text().strip() == "open":
                open_at_kill += 1
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if final and os.waitstatus_to_exitcode(status) != 0:
            problems.append("the final start failed")
        lines = log.read_text().splitlines() if log.exists() else []
        if not any(line.startswith("ready") for line in lines):
            problems.append(f"start {i}: never ready")
        for line in lines:
            parts = line.split()
            if parts[0] == "ready" and parts[1] != "closed":
                problems.append(f"start {i}: barrier {parts[1]} after reconcile")
            elif parts[0] == "committed":
                committed[int(parts[1])] = parts[2]
            elif parts[0] == "begun":
                begun.add(parts[1])
            elif parts[0] == "ended":
                ended += 1
    elapsed = time.monotonic() - t0

    store = open_store(directory)
    verify = store.verify()
    records = store.search(limit=None)
    by_seq = {r.seq: r.hash for r in records}
    lost = [s for s, h in committed.items() if by_seq.get(s) != h]
    terminal: set[str] = set()
    for r in records:
        if r.event_type in ("referral", "passage", "aborted") or (r.event_type == "decision" and r.outcome == "refer"):
            terminal.add(r.transaction_id)
    unrecorded = sorted(begun - terminal)
    left_open = OpenJournal(directory / "open").pending()
    store.close()
    if not verify.ok:
        problems.append(f"audit chain broken: {verify.problem}")
    if lost:
        problems.append(f"{len(lost)} committed records lost")
    if unrecorded:
        problems.append(f"{len(unrecorded)} transactions without a final record")
    if left_open:
        problems.append(f"{len(left_open)} transactions still open in the journal")
    barrier_final = (directory / "barrier").read_text().strip()
    if barrier_final != "closed":
        problems.append(f"barrier {barrier_final} at the end")
    counts: dict[str, int] = {}
    for r in records:
        counts[r.event_type] = counts.get(r.event_type, 0) + 1
    figures = {"kills": kills, "seconds": round(elapsed, 1), "transactions_begun": len(begun),
               "transactions_completed": ended,
               "records": len(records), "records_by_type": counts, "committed_seen": len(committed),
               "committed_lost": len(lost), "unrecorded_transactions": len(unrecorded),
               "killed_with_barrier_open": open_at_kill, "chain_ok": verify.ok, "barrier_final": barrier_final,
               "problems": problems}
    print(json.dumps(figures, indent=2), file=out)
    return figures


def _cmd_sigkill(args) -> int:
    with tempfile.TemporaryDirectory(prefix="egate-sigkill-") as tmp:
        d = Path(args.dir) if args.dir else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        print(f"SIGKILL drill: {args.kills} kills, random delay 0-{args.max_delay}s; {FACE_NOTE}", flush=True)
        figures = sigkill_drill(args.kills, d, max_delay_s=args.max_delay, seed=args.seed)
    return 1 if figures["problems"] else 0


# --- fault drill ------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    mode = "clear"
    delay_s = 0.0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(self.delay_s)
        status, body = {"clear": (200, b'{"outcome": "clear", "reasons": []}'),
                        "error": (503, b'{"detail": "down"}'),
                        "malformed": (200, b'{"outcome": "cle'),
                        "wrong_shape": (200, b'{"outcome": "maybe"}')}[self.mode]
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):   # the gate gave up waiting: as intended
            pass

    def log_message(self, *a: Any) -> None:
        pass


class FakeIdentityServer:
    """A loopback HTTP identity service that can be slow, erroring or malformed."""

    def __init__(self, mode: str, delay_s: float = 0.0):
        handler = type("H", (_Handler,), {"mode": mode, "delay_s": delay_s})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FaultCase:
    name: str
    expect: str                          # reason-code prefix the referral must carry
    setup: Any                           # (Devices) -> cleanup callable or None


def _identity_case(name: str, expect: str, mode: str | None, delay_s: float = 0.0):
    def setup(devs: Devices) -> Any:
        from gate.identity import HttpIdentityService
        server = FakeIdentityServer(mode, delay_s) if mode else None
        url = server.url if server else f"http://127.0.0.1:{_free_port()}"   # nothing listens: down
        devs.identity = HttpIdentityService(url, timeout_s=0.3, retries=1, backoff_base_s=0.01)
        return server.close if server else None
    return FaultCase(name, expect, setup)


def fault_cases(directory: Path) -> list[FaultCase]:
    def locked(devs: Devices) -> Any:
        import sqlite3
        from gate.audit import AuditKeys, AuditStore
        path = directory / "locked.db"
        store = AuditStore(f"sqlite:///{path}", AuditKeys.load_or_create(directory / "audit.key"))
        store.engine.dispose()
        blocker = sqlite3.connect(path, isolation_level=None, timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")
        devs.audit = store
        return blocker.close

    def gone(devs: Devices) -> Any:
        import shutil
        from gate.audit import AuditKeys, AuditStore
        where = directory / "gone"
        where.mkdir(exist_ok=True)
        store = AuditStore(f"sqlite:///{where / 'audit.db'}", AuditKeys.load_or_create(directory / "audit.key"))
        store.engine.dispose()
        shutil.rmtree(where)    # the volume under the store went away
        devs.audit = store
        return None

    def full_disk(devs: Devices) -> Any:
        """SQLite on a 2 MB tmpfs, filled up before the transaction (needs mount rights)."""
        from gate.audit import AuditKeys, AuditStore
        mnt = directory / "small-disk"
        mnt.mkdir(exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
        if done.returncode != 0:
            raise _Skip(f"mount not permitted ({done.stderr.decode().strip() or done.returncode})")
        store = AuditStore(f"sqlite:///{mnt / 'audit.db'}", AuditKeys.load_or_create(directory / "audit.key"))
        with open(mnt / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        devs.audit = store

        def cleanup() -> None:
            store.close()
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return cleanup

    def card(faults: dict[str, Any]):
        def setup(devs: Devices) -> Any:
            from cardreader.sim.chip import Faults, SimulatedChip
            lane = devs.reader
            doc = next(iter(lane.issued.values()))
            lane.transport.insert(SimulatedChip(doc, faults=Faults(**faults)))
            devs.card_present, devs.same_card = lane.card_present, lane.same_card
            return lambda: lane.transport.insert(SimulatedChip(doc))
        return setup

    def swapped(devs: Devices) -> Any:
        """Between the read and the decision (during the face capture) the card on the
        reader is replaced by another traveller's card; presence never drops."""
        from cardreader.sim.chip import SimulatedChip
        from cardreader.sim.issuer import issue
        from cardreader.sim.persona import load_persona
        from gate.station import persona_from
        lane = devs.reader
        doc = next(iter(lane.issued.values()))
        other = issue(persona_from(load_persona("demo"), document_number="C98765432", surname="OTHER"))
        devs.card_present, devs.same_card = lane.card_present, lane.same_card

        class SwapDuringCapture(ScriptedFace):
            def verify(self, reference: Any, window_s: float, on_guidance: Any) -> Any:
                lane.transport.insert(SimulatedChip(other))
                return super().verify(reference, window_s, on_guidance)
        devs.face = SwapDuringCapture()
        return lambda: lane.transport.insert(SimulatedChip(doc))

    def pulled_during_capture(devs: Devices) -> Any:
        lane = devs.reader
        devs.card_present, devs.same_card = lane.card_present, lane.same_card

        class PullDuringCapture(ScriptedFace):
            def verify(self, reference: Any, window_s: float, on_guidance: Any) -> Any:
                chip = lane.transport._chip
                lane.transport.remove()
                self.put_back = chip
                return super().verify(reference, window_s, on_guidance)
        face = PullDuringCapture()
        devs.face = face
        return lambda: lane.transport.insert(face.put_back)

    return [
        FaultCase("card pulled mid-read (DG2)", "document.read_failed", card({"pull": True})),
        FaultCase("card stops answering mid-read", "document.read_failed", card({"mute": True})),
        FaultCase("card answers with a broken MAC", "document.read_failed", card({"bad_mac": True})),
        FaultCase("card pulled during the face capture", "card.", pulled_during_capture),
        FaultCase("card swapped between read and decision", "card.", swapped),
        _identity_case("identity down (nothing listening)", "identity.", None),
        _identity_case("identity slow beyond the timeout", "identity.", "clear", delay_s=2.0),
        _identity_case("identity HTTP 503", "identity.", "error"),
        _identity_case("identity malformed body", "identity.", "malformed"),
        _identity_case("identity body of the wrong shape", "identity.", "wrong_shape"),
        FaultCase("audit store locked", "audit.", locked),
        FaultCase("audit store gone", "audit.", gone),
        FaultCase("audit store on a full disk (2 MB tmpfs)", "audit.", full_disk),
    ]


class _Skip(Exception):
    """A drill case this machine cannot run (said in the output, never counted as passed)."""


def run_fault_case(case: FaultCase, directory: Path, lane: Any) -> dict[str, Any]:
    from gate.barrier import SimulatedBarrier
    from gate.policy import Policy
    store = open_store(directory, f"sqlite:///{directory / 'faults.db'}")
    devs = Devices(scanner=lane, reader=lane, face=ScriptedFace(), identity=ClearIdentity(), audit=store,
                   barrier=SimulatedBarrier(auto_pass_after=0.01))
    try:
        cleanup = case.setup(devs)
    except _Skip as e:
        store.close()
        return {"case": case.name, "ok": None, "skipped": str(e)}
    t0 = time.monotonic()
    try:
        tx = Transaction(devs, Policy(), timeouts=Timeouts(identity_s=1.5, audit_s=2.0, passage_s=0.5),
                         gate_id="drill-gate")
        rec = tx.run()
    finally:
        if cleanup:
            cleanup()
    took = time.monotonic() - t0
    recorded = [(r.event_type, r.reason_codes) for r in store.search(transaction_id=rec.id)]
    store.close()
    barrier = devs.barrier
    opened = any(e == "open" for _, e in barrier.history)
    reasons_ok = any(r.startswith(case.expect) for r in rec.reasons)
    record_ok = bool(recorded) and any(any(c.startswith(case.expect) for c in codes) for _, codes in recorded)
    if case.expect == "audit.":   # the store itself failed: no record is possible, the referral is local
        record_ok = not recorded
    ok = rec.outcome == "referred" and not opened and barrier.state() is BarrierState.CLOSED and reasons_ok and record_ok
    return {"case": case.name, "ok": ok, "outcome": rec.outcome, "reasons": rec.reasons,
            "audit_records": recorded, "barrier_opened": opened, "seconds": round(took, 2)}


def fault_drill(directory: Path, out=sys.stdout) -> list[dict[str, Any]]:
    lane = simulated_lane(directory / "lane")
    results = []
    for case in fault_cases(directory):
        r = run_fault_case(case, directory, lane)
        results.append(r)
        if r["ok"] is None:
            print(f"SKIP  {r['case']:<40} {r['skipped']}", file=out, flush=True)
            continue
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {r['case']:<40} {r['seconds']:>5}s  "
              f"{','.join(r['reasons'])}  audit={r['audit_records']}", file=out, flush=True)
    return results


def _cmd_faults(args) -> int:
    with tempfile.TemporaryDirectory(prefix="egate-faults-") as tmp:
        print(f"Fault drill; {FACE_NOTE}")
        results = fault_drill(Path(tmp))
    failed = [r for r in results if r["ok"] is False]
    ran = [r for r in results if r["ok"] is not None]
    print(f"{len(ran) - len(failed)}/{len(ran)} faults referred with the barrier closed and the reason recorded")
    return 1 if failed else 0


# --- load drill -------------------------------------------------------------------------------------

def _serve_identity(directory: Path) -> tuple[str, Any]:
    """The reference identity service (seeded) under uvicorn on a loopback port, in a thread."""
    import uvicorn
    from gate.identity_service import IdentityRegistry, create_app
    registry = IdentityRegistry(f"sqlite:///{directory / 'identity.db'}")
    registry.seed()
    server = uvicorn.Server(uvicorn.Config(create_app("", registry=registry), host="127.0.0.1", port=_free_port(),
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{server.config.port}", server


def load_drill(gates: int, per_gate: int, audit_url: str, directory: Path, *, identity_url: str | None = None,
               out=sys.stdout) -> dict[str, Any]:
    """`gates` simulated gates (one thread each, `per_gate` transactions in turn) against one
    identity service and one audit store; returns throughput, latency percentiles, errors."""
    from concurrent.futures import ThreadPoolExecutor

    from gate.barrier import SimulatedBarrier
    from gate.identity import HttpIdentityService
    from gate.policy import Policy
    server = None
    if identity_url is None:
        identity_url, server = _serve_identity(directory)
    identity = HttpIdentityService(identity_url, timeout_s=5.0, retries=1)
    store = open_store(directory, audit_url)
    first = simulated_lane(directory / "lane-0")
    lanes = [first]
    for i in range(1, gates):
        lane = type(first)(first.settings)
        card = next(iter(first.issued))
        lane.issued[card] = first.issued[card]
        lane.trust_store().add_csca(first.issued[card].pki.csca_cert)
        lane.insert(card)
        lanes.append(lane)

    def run_gate(i: int) -> list[tuple[str, float, str, list[str]]]:
        devices = Devices(scanner=lanes[i], reader=lanes[i], face=ScriptedFace(), identity=identity, audit=store,
                          barrier=SimulatedBarrier(auto_pass_after=0.0))
        done = []
        for _ in range(per_gate):
            t0 = time.perf_counter()
            rec = Transaction(devices, Policy(), gate_id=f"load-{i}",
                              timeouts=Timeouts(identity_s=15.0, audit_s=30.0, passage_s=1.0)).run()
            done.append((rec.id, time.perf_counter() - t0, rec.outcome or "referred", rec.reasons))
        return done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=gates) as pool:
        runs = [r for batch in pool.map(run_gate, range(gates)) for r in batch]
    elapsed = time.perf_counter() - t0
    ids = {r[0] for r in runs}
    recorded = {r.transaction_id for r in store.search(limit=None) if r.transaction_id in ids}
    chain = store.verify()
    store.close()
    identity.close()
    if server is not None:
        server.should_exit = True
    lat = sorted(r[1] for r in runs)
    pct = {f"p{p}": round(lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1000, 1) for p in (50, 95, 99)}
    outcomes: dict[str, int] = {}
    errors: dict[str, int] = {}
    for _, _, outcome, reasons in runs:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for reason in reasons:
            if reason.split(".")[0] in ("audit", "identity", "error", "read", "scan", "barrier", "card"):
                errors[reason] = errors.get(reason, 0) + 1
    figures = {"gates": gates, "transactions": len(runs), "seconds": round(elapsed, 2),
               "transactions_per_second": round(len(runs) / elapsed, 1), "latency_ms": pct,
               "outcomes": outcomes, "errors": errors, "audit_store": audit_url.split(":")[0],
               "transactions_recorded": len(recorded), "lost": len(ids - recorded), "chain_ok": chain.ok}
    print(json.dumps(figures), file=out, flush=True)
    return figures


def _cmd_load(args) -> int:
    print(f"Load drill; {FACE_NOTE}", flush=True)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="egate-load-") as tmp:
        for n in (int(x) for x in args.gates.split(",")):
            d = Path(tmp) / f"n{n}"
            d.mkdir()
            f = load_drill(n, args.per_gate, args.audit_url or f"sqlite:///{d / 'audit.db'}", d,
                           identity_url=args.identity_url)
            bad += f["lost"] + (not f["chain_ok"])
    return 1 if bad else 0


def pg_restart_drill(audit_url: str, restart: list[str], directory: Path, *, seconds: float = 8.0,
                     restart_after_s: float = 2.0, out=sys.stdout) -> dict[str, Any]:
    """One gate runs transactions for `seconds` against PostgreSQL while `restart` (e.g.
    pg_ctl restart -m fast) runs after `restart_after_s`: transactions caught by the restart
    must be referred with audit.unavailable, the barrier never left open, later ones pass."""
    from gate.barrier import SimulatedBarrier
    from gate.policy import Policy
    store = open_store(directory, audit_url)
    lane = simulated_lane(directory / "lane")
    barrier = SimulatedBarrier(auto_pass_after=0.0)
    devices = Devices(scanner=lane, reader=lane, face=ScriptedFace(), identity=ClearIdentity(), audit=store,
                      barrier=barrier)
    runs: list[tuple[float, str, list[str], bool]] = []
    t0 = time.monotonic()

    def drive() -> None:
        while time.monotonic() - t0 < seconds:
            rec = Transaction(devices, Policy(), gate_id="drill-gate",
                              timeouts=Timeouts(audit_s=3.0, passage_s=0.5)).run()
            runs.append((time.monotonic() - t0, rec.outcome or "referred", rec.reasons,
                         barrier.state() is BarrierState.CLOSED))

    driver = threading.Thread(target=drive)
    driver.start()
    time.sleep(restart_after_s)
    r0 = time.monotonic() - t0
    done = subprocess.run(restart, capture_output=True, timeout=120)
    r1 = time.monotonic() - t0
    driver.join()
    ids_passed = [r for r in runs if r[1] == "passed"]
    chain = store.verify()
    store.close()
    problems = []
    if done.returncode != 0:
        problems.append(f"restart command failed: {done.stderr.decode()[-200:]}")
    if not all(r[3] for r in runs):
        problems.append("barrier not closed after a transaction")
    bad = [r for r in runs if r[1] == "referred" and r[2] != ["audit.unavailable"]]
    if bad:
        problems.append(f"{len(bad)} referrals for another reason: {sorted({tuple(r[2]) for r in bad})}")
    if not any(r[0] > r1 + 1.0 and r[1] == "passed" for r in runs):
        problems.append("no transaction passed after the restart (store did not recover)")
    if not chain.ok:
        problems.append(f"chain: {chain.problem}")
    figures = {"transactions": len(runs), "passed": len(ids_passed), "referred_audit_unavailable":
               sum(r[1] == "referred" for r in runs) - len(bad), "restart_window_s": [round(r0, 2), round(r1, 2)],
               "chain_ok": chain.ok, "problems": problems}
    print(json.dumps(figures), file=out, flush=True)
    return figures


def _cmd_pg_restart(args) -> int:
    with tempfile.TemporaryDirectory(prefix="egate-pgrestart-") as tmp:
        f = pg_restart_drill(args.audit_url, args.restart_command.split(), Path(tmp), seconds=args.seconds)
    return 1 if f["problems"] else 0


# --- camera drill -----------------------------------------------------------------------------------

class _Feed:
    """A camera for the camera drill: yields what `make()` yields at `fps` (None, broken arrays,
    bytes, good frames...), wrapped as `Frame`s unless `raw`; may raise or block like a device."""

    def __init__(self, make: Any, fps: float = 15.0, raw: bool = False):
        self.make, self.fps, self.raw = make, fps, raw
        self.closed = threading.Event()

    def frames(self) -> Any:
        from biometrics.camera import Frame
        t0 = time.monotonic()
        for n, item in enumerate(self.make(self)):
            time.sleep(max(0.0, t0 + n / self.fps - time.monotonic()))
            yield item if self.raw else Frame(item, time.monotonic(), n)

    def close(self) -> None:
        self.closed.set()


def _live_people() -> dict[str, list[Path]]:
    """pad-dev's people filmed live by a webcam: name -> their live frames, in order."""
    import csv

    from gate.station import SHARED_DATA
    root = SHARED_DATA / "pad-dev"
    people: dict[str, list[Path]] = {}
    for row in csv.DictReader((root / "labels.csv").open()):
        if row["label"] == "live":
            people.setdefault(row["path"].split("/")[1], []).append(root / row["path"])
    return people


def camera_cases(holder: list[Any], other: list[Any], still: Any) -> list[tuple[str, str, Any, str | None]]:
    """(name, expected outcome, feed, face reason the referral must record) for one chip holder
    (`holder`: their live frames as arrays, the first is the chip photo), another person, and the
    frame to freeze on (the live control's best matching frame, so only liveness can refuse it)."""
    import numpy as np

    from biometrics.camera import CameraError, ImageSequenceCamera
    live = holder[1:]

    def loop(frames: list[Any], n: int = 10_000) -> Any:
        return lambda feed: (frames[i % len(frames)] for i in range(n))

    def broken(frames: list[Any], raw: bool = False) -> _Feed:
        """A second of broken frames at 30 fps, then the feed ends."""
        return _Feed(loop(frames, 30), fps=30.0, raw=raw)

    def unplugged(feed: Any) -> Any:
        yield from live[:3]
        raise CameraError("device unplugged")

    def hangs(feed: Any) -> Any:
        feed.closed.wait(60)       # a driver that never delivers (bounded so the thread ends)
        return iter(())

    noise = np.random.default_rng(0)
    jpeg = __import__("cv2").imencode(".jpg", still)[1].tobytes()
    switch = [*live[:3], *other[1:]]
    return [
        ("no frames (camera yields nothing)", "referred", _Feed(lambda f: iter(())), "no_frames"),
        ("camera unplugged after 3 frames", "referred", _Feed(unplugged), "camera_error"),
        ("camera never delivers a frame", "referred", _Feed(hangs), None),
        ("broken: None instead of frames", "referred", broken([None], raw=True), "unusable_frames"),
        ("broken: frames without an image", "referred", broken([None]), "unusable_frames"),
        ("broken: zero-size arrays", "referred", broken([np.zeros((0, 0, 3), np.uint8)]), "unusable_frames"),
        ("broken: float32 frames", "referred", broken([still.astype(np.float32)]), "unusable_frames"),
        ("broken: 5-channel frames", "referred", broken([np.zeros((480, 640, 5), np.uint8)]), "unusable_frames"),
        ("broken: truncated JPEG bytes", "referred", broken([jpeg[:len(jpeg) // 2]]), "unusable_frames"),
        ("frozen feed: one live frame repeated", "referred", ImageSequenceCamera([still], realtime=True),
         "no_natural_motion"),
        (FROZEN_NOISY, "referred", _Feed(lambda f: (np.clip(still + noise.normal(0, 2.0, still.shape), 0, 255)
                                                    .astype(np.uint8) for _ in range(10_000))), "liveness"),
        ("feed switches to another person mid-capture", "referred", ImageSequenceCamera(switch, realtime=True),
         "identity_switch"),
    ]


# A still frame with fresh sensor noise each time passes the landmark-motion cue (the detector's
# jitter on the noise reads as natural motion); it is refused because it cannot answer the challenge.
FROZEN_NOISY = "frozen feed: one frame with fresh sensor noise"
# Cases only liveness can refuse: shown only for a person whose live control passes.
LIVENESS_CASES = ("no_natural_motion", "identity_switch", "liveness")


class _Recording:
    """The face station, keeping its last result (the control's best frame becomes the frozen one)."""

    def __init__(self, inner: Any):
        self.inner, self.last = inner, None

    def reference(self, chip_image: Any) -> Any:
        return self.inner.reference(chip_image)

    def verify(self, reference: Any, window_s: float, on_guidance: Any) -> Any:
        self.last = self.inner.verify(reference, window_s, on_guidance)
        return self.last


def camera_drill(directory: Path, *, people: int = 1, window_s: float | None = None, models_dir: Path | None = None,
                 out=sys.stdout) -> list[dict[str, Any]]:
    """Camera faults with the real face models (the gate's `FaceStationAdapter` and `PreviewCamera`)
    against a recorded live person (pad-dev) whose first frame is the chip photo: a control that
    must pass, then no frames, a camera that fails or hangs, broken frames, a frozen feed and a feed
    that switches to another person. Each fault must be referred, barrier closed, with the face's
    reason in the audit record, and without an exception anywhere (no 'error.' or ':Type' reason)."""
    import cv2

    from biometrics.camera import PAD_DEV_PERSON, ImageSequenceCamera, RespondingCamera
    from cardreader.sim.persona import load_persona
    from gate.barrier import SimulatedBarrier
    from gate.config import Settings
    from gate.policy import Policy
    from gate.station import SHARED_DATA, FaceStationAdapter, PreviewCamera, persona_from
    overrides = {"models_dir": models_dir} if models_dir else {}
    settings = Settings(data_dir=directory / "gate", integrator_api=False, **overrides)
    window_s = window_s or settings.face.capture_window_s     # the gate's own window unless told
    preview = PreviewCamera(_Feed(lambda f: iter(())))
    adapter = FaceStationAdapter(settings, preview)
    deadline = time.monotonic() + 180
    while not adapter.ready and adapter.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not adapter.ready:
        raise RuntimeError(f"face models not loaded: {adapter.error}")
    face = _Recording(adapter)
    lane = simulated_lane(directory / "lane")
    crowd = sorted(_live_people().items())
    store = open_store(directory)
    results = []
    for k in range(min(people, len(crowd))):
        name, paths = crowd[k]
        holder = [cv2.imread(str(p)) for p in paths]
        other = [cv2.imread(str(p)) for p in crowd[(k + 1) % len(crowd)][1]]
        chip = directory / f"chip-{k}.jpg"
        cv2.imwrite(str(chip), holder[0], [cv2.IMWRITE_JPEG_QUALITY, 90])
        card = lane.issue(persona_from(load_persona("demo"), face_image_path=chip))
        lane.insert(card)
        # the gate asks for blinks and head turns: the recorded person who answers them is the control
        # where the holder is that person (RespondingCamera); other holders cannot answer a turn
        feed = (RespondingCamera.pad_dev(SHARED_DATA / "pad-dev", realtime=True)[1] if name == PAD_DEV_PERSON
                else ImageSequenceCamera(holder[1:], realtime=True))
        control = ("control: the chip holder, live", "passed", feed, None)
        cases, control_passed = [control], False
        while cases:
            case, want, feed, face_reason = cases.pop(0)
            preview.set_source(feed)
            barrier = SimulatedBarrier(auto_pass_after=0.01)
            devs = Devices(scanner=lane, reader=lane, face=face, identity=ClearIdentity(), audit=store,
                           barrier=barrier, card_present=lane.card_present, same_card=lane.same_card)
            t0 = time.monotonic()
            rec = Transaction(devs, Policy(), face_window_s=window_s, gate_id="drill-gate",
                              timeouts=Timeouts(face_s=window_s + 1.5, passage_s=0.5)).run()
            took = time.monotonic() - t0
            feed.close()
            try:
                preview.preview_jpeg()          # the kiosk's preview of whatever came last
                preview_ok = True
            except Exception:
                preview_ok = False
            face_ev = rec.evidence.face
            face_reasons = list(face_ev.reasons) if face_ev else []
            audit = store.search(transaction_id=rec.id)
            recorded = [(r.event_type, r.reason_codes, (r.checks.get("face") or {}).get("reasons", []))
                        for r in audit]
            opened = any(e == "open" for _, e in barrier.history)
            crashed = [r for r in rec.reasons + face_reasons if r.startswith("error.") or ":" in r
                       and r.split(":")[1][:1].isupper()]
            if want == "passed":   # the control: a person the models cannot pass proves less, said as such
                ok = None if rec.outcome != "passed" and not crashed else (rec.outcome == "passed" and opened)
            else:
                said = [c for _, codes, frs in recorded for c in [*frs, *(c.removeprefix("face.") for c in codes)]]
                ok = (rec.outcome == "referred" and not opened and bool(recorded) and all(codes for _, codes, _ in recorded)
                      and (face_reason is None or any(c.startswith(face_reason) for c in said)))
            ok = ok if ok is None else (ok and barrier.state() is BarrierState.CLOSED and not crashed and preview_ok)
            if face_reason in LIVENESS_CASES and not control_passed and ok is not None:
                ok = None   # referred anyway for what the control was (quality): liveness not shown
            row = {"person": k, "case": case, "ok": ok, "outcome": rec.outcome, "reasons": rec.reasons,
                   "face_reasons": face_reasons, "audit": [codes for _, codes, _ in recorded],
                   "barrier_opened": opened, "seconds": round(took, 2)}
            results.append(row)
            print(f"{'NOTE' if ok is None else 'PASS' if ok else 'FAIL'}  {case:<46} {took:5.1f}s  {rec.outcome:<8} "
                  f"{','.join(rec.reasons)}  face={','.join(face_reasons[:3])}", file=out, flush=True)
            if case is control[0]:
                control_passed = ok is True
                best = getattr(face.last, "best_frame", None)
                cases = camera_cases(holder, other, holder[1] if best is None else best)
        lane.remove()
    chain = store.verify()
    store.close()
    if not chain.ok:
        results.append({"case": "audit chain verifies", "ok": False, "problem": chain.problem})
    return results


def _cmd_camera(args) -> int:
    from gate.config import FaceSettings
    window = args.window or FaceSettings().capture_window_s
    print(f"Camera drill: real face models, pad-dev live people, capture window {window}s", flush=True)
    with tempfile.TemporaryDirectory(prefix="egate-camera-") as tmp:
        results = camera_drill(Path(tmp), people=args.people, window_s=window)
    controls = [r for r in results if r["case"].startswith("control")]
    faults = [r for r in results if not r["case"].startswith("control")]
    failed = [r for r in results if r["ok"] is False]
    print(f"faults: {sum(r['ok'] is True for r in faults)} referred as expected (barrier closed, reason recorded), "
          f"{sum(r['ok'] is False for r in faults)} FAIL, {sum(r['ok'] is None for r in faults)} not shown (liveness "
          f"cases of a person whose live control did not pass) of {len(faults)}; "
          f"live controls passed: {sum(r['ok'] is True for r in controls)}/{len(controls)}")
    for r in failed:
        print(f"FAILED: person {r.get('person')}: {r['case']} -> {r.get('outcome')} {r.get('reasons')}")
    return 1 if failed else 0


# --- reader drill -----------------------------------------------------------------------------------

class _TrapChip:
    """The simulated chip; when armed, its `armed_at`-th APDU after power-on signals `hit` and waits
    for `release` before answering, so the drill can stop pcscd with the read in flight."""

    def __init__(self, chip: Any):
        self.chip, self.armed_at, self.n = chip, None, 0
        self.hit, self.release = threading.Event(), threading.Event()

    def arm(self, at: int) -> None:
        self.armed_at = at
        self.hit.clear()
        self.release.clear()

    def process(self, apdu: bytes) -> bytes | None:
        self.n += 1
        if self.armed_at is not None and self.n >= self.armed_at:
            self.armed_at = None
            self.hit.set()
            self.release.wait(10)
        return self.chip.process(apdu)

    def reset(self) -> None:
        self.n = 0
        self.chip.reset()


def _next_outcome(gate: Any, seen: int, timeout_s: float) -> tuple[str, tuple[str, ...]] | None:
    """The (outcome, reasons) of the gate's next transaction after `seen`, or None in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(gate.history) > seen:
            _, outcome, reasons, _ = gate.history[seen]
            return outcome, reasons
        time.sleep(0.02)
    return None


def reader_drill(pcscd: Any, directory: Path, *, cycles: int = 3, down_s: float = 1.0, seed: int = 0,
                 out=sys.stdout) -> dict[str, Any]:
    """pcscd stopped and restarted under a running PC/SC lane (`gate.station.Lane.pcsc`): each cycle
    once while the lane waits for a card, once with a read in flight (at a random APDU). The read
    in flight must be referred (document.read_failed:reader_unavailable) with the barrier closed and
    the reason recorded; the lane thread must survive, reconnect when pcscd is back, and the next
    traveller's transaction pass. `pcscd` is a running `PrivatePcscd`; it is left running."""
    from cardreader.lds.mrz import parse_mrz
    from cardreader.pki import TrustStore
    from cardreader.sim.chip import SimulatedChip
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    from cardreader.sim.vpcd import VirtualCard
    from gate.barrier import SimulatedBarrier
    from gate.config import Settings
    from gate.station import Gate, Lane
    rng = random.Random(seed)
    doc = issue(load_persona("demo"))
    TrustStore(directory / "trust").add_csca(doc.pki.csca_cert)
    settings = Settings(data_dir=directory / "gate", integrator_api=False,
                        reader={"kind": "pcsc", "name": pcscd.reader, "trust_store": directory / "trust",
                                "document_camera": str(directory / "no-document-camera")},
                        transaction={"repeat_limit": 0})   # one card plays every traveller, referred or not
    lane = Lane.pcsc(settings)
    printed = parse_mrz(doc.persona.mrz)
    lane.scan = lambda: printed          # the document camera's OCR has its own drills and tests
    store = open_store(directory)
    barrier = SimulatedBarrier(auto_pass_after=0.01)
    devices = Devices(scanner=lane, reader=lane, face=ScriptedFace(), identity=ClearIdentity(), audit=store,
                      barrier=barrier, card_present=lane.card_present, same_card=lane.same_card)
    gate = Gate(settings, devices=devices, lane=lane)
    chip = _TrapChip(SimulatedChip(doc))
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    card: VirtualCard | None = None

    def place() -> VirtualCard:
        return VirtualCard(chip, port=pcscd.port).start()

    def expect(phase: str, want: str, t_back: float | None = None, reason: str | None = None) -> None:
        got = _next_outcome(gate, len(rows), 30.0)
        row = {"phase": phase, "outcome": got and got[0], "reasons": list(got[1]) if got else None,
               "reconnect_s": None if t_back is None or got is None else round(time.monotonic() - t_back, 2)}
        rows.append(row)
        if got is None:
            problems.append(f"{phase}: no transaction within 30 s")
        elif got[0] != want or (reason and reason not in got[1]):
            problems.append(f"{phase}: {got[0]} {list(got[1])}, expected {want} {reason or ''}")
        print(json.dumps(row), file=out, flush=True)

    t0 = time.monotonic()
    gate.start()
    try:
        for _ in range(cycles):
            # pcscd restarted while the lane waits for a card; the next traveller must pass
            time.sleep(0.3)
            pcscd.stop()
            time.sleep(down_s)
            if gate.readiness()["checks"]["reader_present"]:
                problems.append("readiness reported the reader present while pcscd was down")
            pcscd.start()
            t_back = time.monotonic()
            card = place()
            expect("restart while waiting, next traveller", "passed", t_back)
            if not gate.readiness()["checks"]["reader_present"]:
                problems.append("readiness did not report the reader back")
            card.stop()
            # pcscd stopped with a read in flight: referred; then the next traveller passes
            time.sleep(0.3)
            chip.arm(rng.randint(4, 12))
            card = place()
            if not chip.hit.wait(30):
                problems.append("the armed APDU never came")
            pcscd.stop()
            chip.release.set()
            expect("stopped during the read", "referred", reason="document.read_failed:reader_unavailable")
            card.stop()
            time.sleep(down_s)
            pcscd.start()
            t_back = time.monotonic()
            card = place()
            expect("after the restart, next traveller", "passed", t_back)
            card.stop()
    finally:
        if card is not None:
            card.stop()
        chip.release.set()
        if pcscd.proc is None:
            pcscd.start()
        alive = gate._thread is not None and gate._thread.is_alive()
        gate.stop()
        lane.transport.close()
    opened = [e for _, e in barrier.history].count("open")
    passed = sum(r["outcome"] == "passed" for r in rows)
    referred = [r for r in rows if r["outcome"] == "referred"]
    recorded = {r.transaction_id: r.reason_codes for r in store.search(limit=None)}
    reasons_recorded = sum(any(c.startswith("document.read_failed:reader_unavailable") for c in codes)
                           for codes in recorded.values())
    chain = store.verify()
    store.close()
    if not alive:
        problems.append("the lane thread died")
    if opened != passed:
        problems.append(f"barrier opened {opened} times for {passed} passed transactions")
    if reasons_recorded != len(referred):
        problems.append(f"{reasons_recorded} audit records say reader_unavailable for {len(referred)} referrals")
    if barrier.state() is not BarrierState.CLOSED:
        problems.append("barrier not closed at the end")
    if not chain.ok:
        problems.append(f"chain: {chain.problem}")
    back = [r["reconnect_s"] for r in rows if r["reconnect_s"] is not None]
    figures = {"cycles": cycles, "pcscd_restarts": 2 * cycles, "seconds": round(time.monotonic() - t0, 1),
               "transactions": len(rows), "passed": passed, "referred_reader_unavailable": len(referred),
               "audit_records_reader_unavailable": reasons_recorded, "barrier_opens": opened,
               "first_pass_after_restart_s": {"max": max(back, default=None),
                                              "median": sorted(back)[len(back) // 2] if back else None},
               "lane_alive": alive, "chain_ok": chain.ok, "problems": problems}
    print(json.dumps(figures), file=out, flush=True)
    return figures


def _cmd_reader(args) -> int:
    from cardreader.sim.vpcd import PrivatePcscd
    why = PrivatePcscd.unavailable()
    if why:
        print(f"reader drill not run: {why}")
        return 2
    print(f"Reader drill: pcscd restarted {2 * args.cycles} times under a PC/SC lane; {FACE_NOTE}", flush=True)
    with tempfile.TemporaryDirectory(prefix="egate-reader-") as tmp:
        with PrivatePcscd(Path(tmp) / "pcscd") as daemon:
            f = reader_drill(daemon, Path(tmp), cycles=args.cycles, down_s=args.down, seed=args.seed)
    return 1 if f["problems"] else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("drill", help="fault drills (SIGKILL, device and service faults)")
    sub = p.add_subparsers(dest="drill", metavar="DRILL", required=True)
    k = sub.add_parser("sigkill", help="kill a gate process at random points; check the audit trail and barrier")
    k.add_argument("--kills", type=int, default=200)
    k.add_argument("--max-delay", type=float, default=0.6, help="longest random delay before a kill (s)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--dir", help="keep the drill's files here (default: a temporary directory)")
    k.set_defaults(func=_cmd_sigkill)
    f = sub.add_parser("faults", help="one transaction per injected fault; each must be referred, barrier closed")
    f.set_defaults(func=_cmd_faults)
    ld = sub.add_parser("load", help="N simulated gates against one identity service and one audit store")
    ld.add_argument("--gates", default="8,32,128", help="comma-separated gate counts")
    ld.add_argument("--per-gate", type=int, default=10, help="transactions each gate runs")
    ld.add_argument("--audit-url", help="audit store (PostgreSQL URL); default: SQLite in a temporary directory")
    ld.add_argument("--identity-url", help="identity service; default: the reference service on loopback")
    ld.set_defaults(func=_cmd_load)
    cm = sub.add_parser("camera", help="camera faults (no frames, broken, frozen, another face) on the real models")
    cm.add_argument("--people", type=int, default=6, help="pad-dev live people to use as chip holders (1-6)")
    cm.add_argument("--window", type=float, help="face capture window (s); default: the gate's face.capture_window_s")
    cm.set_defaults(func=_cmd_camera)
    rd = sub.add_parser("reader", help="stop and restart pcscd under a PC/SC lane (waiting and mid-read)")
    rd.add_argument("--cycles", type=int, default=3, help="each cycle restarts pcscd twice")
    rd.add_argument("--down", type=float, default=1.0, help="seconds pcscd stays down")
    rd.add_argument("--seed", type=int, default=0)
    rd.set_defaults(func=_cmd_reader)
    pr = sub.add_parser("pg-restart", help="restart PostgreSQL under a running gate")
    pr.add_argument("--audit-url", required=True)
    pr.add_argument("--restart-command", required=True, help="e.g. 'pg_ctl -D DATA -m fast -w restart'")
    pr.add_argument("--seconds", type=float, default=8.0)
    pr.set_defaults(func=_cmd_pg_restart)
