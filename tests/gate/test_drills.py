"""Fault drills: the crash journal and start-up reconciliation, a quick SIGKILL
drill against a real forked gate process, and the injected-fault drill."""
from __future__ import annotations

import io

import pytest

from gate.audit import AuditEvent
from gate.barrier import BarrierState, SimulatedBarrier
from gate.drills import ClearIdentity, FileBarrier, ScriptedFace, fault_drill, open_store, sigkill_drill, simulated_lane
from gate.policy import Policy
from gate.transaction import Devices, OpenJournal, Transaction, reconcile


class DownAudit:
    def append(self, event):
        raise OSError("store unavailable")


def test_reconcile_closes_the_barrier_and_records_each_open_transaction(tmp_path):
    journal = OpenJournal(tmp_path / "open")
    journal.begin("tx-a")
    journal.begin("tx-b")
    barrier = FileBarrier(tmp_path / "barrier")
    barrier.open()                       # killed while the traveller was passing
    store = open_store(tmp_path)
    assert reconcile(journal, store, barrier, gate_id="g") == ["tx-a", "tx-b"]
    assert barrier.state() is BarrierState.CLOSED
    assert journal.pending() == []
    records = store.search(event_type="aborted")
    assert [(r.transaction_id, r.outcome, r.reason_codes) for r in records] == [
        ("tx-a", "refer", ["gate.restarted"]), ("tx-b", "refer", ["gate.restarted"])]
    assert store.verify().ok


def test_reconcile_keeps_what_it_could_not_record(tmp_path):
    journal = OpenJournal(tmp_path / "open")
    journal.begin("tx-a")
    barrier = SimulatedBarrier()
    barrier.open()
    assert reconcile(journal, DownAudit(), barrier, gate_id="g") == []
    assert barrier.state() is BarrierState.CLOSED      # closed even though nothing could be recorded
    assert journal.pending() == ["tx-a"]                # recorded at the next start


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    return simulated_lane(tmp_path_factory.mktemp("lane"))


def test_a_transaction_is_journalled_until_its_record_is_committed(tmp_path, lane):
    seen = []

    class Watching(OpenJournal):
        def begin(self, tx_id):
            super().begin(tx_id)
            seen.append(self.pending())

    journal = Watching(tmp_path / "open")
    store = open_store(tmp_path)
    devices = Devices(scanner=lane, reader=lane, face=ScriptedFace(), identity=ClearIdentity(), audit=store,
                      barrier=SimulatedBarrier(auto_pass_after=0.01))
    rec = Transaction(devices, Policy(), journal=journal).run()
    assert rec.outcome == "passed" and seen == [[rec.id]] and journal.pending() == []

    devices.audit = DownAudit()
    rec = Transaction(devices, Policy(), journal=journal).run()
    assert rec.outcome == "referred" and rec.reasons == ["audit.unavailable"]
    assert journal.pending() == [rec.id]       # no record yet: the next start records it as aborted


def test_sigkill_drill_quick(tmp_path):
    out = io.StringIO()
    figures = sigkill_drill(12, tmp_path, max_delay_s=0.5, seed=7, out=out)
    assert figures["problems"] == [], out.getvalue()
    assert figures["chain_ok"] and figures["committed_lost"] == 0 and figures["unrecorded_transactions"] == 0
    # kills landed inside running transactions (how many depends on the machine's load)
    assert figures["transactions_begun"] >= figures["records_by_type"].get("aborted", 0) >= 1
    assert figures["barrier_final"] == "closed"


def test_fault_drill_refers_every_fault_with_the_barrier_closed(tmp_path):
    out = io.StringIO()
    results = fault_drill(tmp_path, out=out)
    ran = [r for r in results if r["ok"] is not None]       # full disk is skipped where mount is refused
    assert len(ran) >= 12 and all(r["ok"] for r in ran), out.getvalue()
    assert all(not r["barrier_opened"] and r["outcome"] == "referred" for r in ran)
    by_name = {r["case"]: r for r in results}
    # a card swapped while presence never dropped: caught by the DG1 re-read before the decision
    assert by_name["card swapped between read and decision"]["reasons"] == ["card.swapped"]
    assert by_name["card swapped between read and decision"]["audit_records"] == [("referral", ["card.swapped"])]
    assert by_name["card pulled mid-read (DG2)"]["reasons"][0] == "document.read_failed:card_removed"
    assert by_name["identity malformed body"]["audit_records"] == [("decision", ["identity.unavailable"])]
    assert by_name["audit store locked"]["reasons"] == ["audit.unavailable"]


def test_the_gate_reconciles_at_start_what_a_crash_left_open(tmp_path):
    from gate.config import Settings
    from gate.station import Gate
    settings = Settings(data_dir=tmp_path, integrator_api=False)
    store = open_store(tmp_path)
    barrier = SimulatedBarrier()
    barrier.open()
    OpenJournal(tmp_path / "open-transactions").begin("tx-crashed")
    devices = Devices(scanner=None, reader=None, face=ScriptedFace(), identity=ClearIdentity(), audit=store,
                      barrier=barrier)
    gate = Gate(settings, devices=devices, lane=None)
    gate._loop = lambda: None      # no lane in this test: only start-up matters
    gate.start()
    gate.stop()
    assert barrier.state() is BarrierState.CLOSED
    assert [(r.transaction_id, r.reason_codes) for r in store.search(event_type="aborted")] == [
        ("tx-crashed", ["gate.restarted"])]
    assert gate.journal.pending() == []


@pytest.mark.postgres
def test_load_drill_quick_on_postgresql(tmp_path, postgres_url):
    out = io.StringIO()
    from gate.drills import load_drill
    f = load_drill(8, 3, postgres_url, tmp_path, out=out)
    assert f["transactions"] == 24 and f["lost"] == 0 and f["chain_ok"], out.getvalue()
    assert f["transactions_recorded"] == 24 and f["outcomes"].get("passed", 0) + f["outcomes"].get("referred", 0) == 24
    assert f["errors"] == {}, out.getvalue()
    assert f["transactions_per_second"] > 0 and f["latency_ms"]["p50"] <= f["latency_ms"]["p99"]


@pytest.mark.postgres
def test_postgresql_restarted_under_a_running_gate(tmp_path):
    """Own throw-away cluster (the session's server is shared): restarted mid-run, the
    transactions it catches are referred with audit.unavailable, later ones pass."""
    import os
    import shutil
    import subprocess

    from pathlib import Path

    from gate.drills import _free_port, pg_restart_drill
    PG_BIN = Path(os.environ.get("EGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="egate-pg-restart-"))   # the postgres user cannot enter tmp_path
    if run_as:
        shutil.chown(root, "postgres", "postgres")
    port, data = _free_port(), root / "data"
    ctl = [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60"]
    opts = ["-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"]
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*ctl, "start", *opts], check=True, capture_output=True, timeout=120)
    try:
        f = pg_restart_drill(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                             [*ctl, "-m", "fast", "restart", *opts], tmp_path, seconds=6.0, restart_after_s=1.5,
                             out=io.StringIO())
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    assert f["problems"] == [] and f["chain_ok"]
    assert f["passed"] > 0 and f["referred_audit_unavailable"] >= 1


def test_the_kiosk_preview_survives_broken_camera_frames():
    """Found by the camera drill: a camera yielding None crashed the gate's PreviewCamera (the face
    step then failed with AttributeError), and an empty or 5-channel frame made preview_jpeg raise."""
    import numpy as np

    from biometrics.camera import Frame
    from gate.drills import _Feed
    from gate.station import PreviewCamera
    good = np.full((48, 64, 3), 90, np.uint8)
    broken = [None, Frame(None, 0.0), Frame(np.zeros((0, 0, 3), np.uint8), 0.0),
              Frame(np.zeros((48, 64, 5), np.uint8), 0.0), Frame(b"\xff\xd8\xff", 0.0),
              Frame(good.astype(np.float32), 0.0)]
    preview = PreviewCamera(_Feed(lambda f: iter(broken), fps=1000.0, raw=True))
    assert list(preview.frames()) == broken      # passed on untouched: the face pipeline skips them
    assert preview.latest is None and preview.preview_jpeg() is None
    preview.set_source(_Feed(lambda f: iter([good, *[fr.image if fr else None for fr in broken]]), fps=1000.0))
    assert len(list(preview.frames())) == 7
    assert preview.latest is good and preview.preview_jpeg()[:2] == b"\xff\xd8"
