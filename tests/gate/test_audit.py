"""The audit trail on SQLite and PostgreSQL: chain integrity, concurrency,
privacy, purge, search and export."""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import stat
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from gate import audit
from gate.audit import AuditEvent, AuditKeys, AuditStore, AuditUnavailable
from gate.identity import DocumentQuery, PersonQuery

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
DOC = DocumentQuery(document_number="C01X00T47", issuing_state="UTO", document_type="ID")
PERSON = PersonQuery(surname="Collins", given_names="Eileen Marie", date_of_birth=date(1956, 11, 19))
FACE = b"\xff\xd8\xff\xe0JFIF-face-image-bytes-" + bytes(range(256))
CHIP = b"\xff\xd8\xff\xe0JFIF-chip-photo-bytes-" + bytes(range(255, -1, -1))


class Clock:
    def __init__(self, t: datetime = T0):
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += timedelta(**kw)


@pytest.fixture
def keys(tmp_path) -> AuditKeys:
    return AuditKeys.load_or_create(tmp_path / "audit.key")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database_url, keys, clock):
    s = AuditStore(database_url, keys, keep_face_images=True, retention=timedelta(days=30),
                   face_retention=timedelta(days=1), clock=clock)
    yield s
    s.close()


def decision(i: int = 0, **kw) -> AuditEvent:
    base = dict(event_type="decision", gate_id="gate-01", transaction_id=f"tx-{i}", outcome="open",
                reason_codes=[], checks={"passive_authentication": "passed", "face": {"score": 0.71 + i / 1000}},
                document=DOC, person=PERSON)
    return AuditEvent(**{**base, **kw})


def fill(store, n: int) -> list:
    return [store.append(decision(i)) for i in range(n)]


def sql(store, statement: str, **params) -> None:
    with store.engine.begin() as c:
        c.execute(sa.text(statement), params)


# ---------------------------------------------------------------- chain

def test_appended_records_form_a_verified_chain(store):
    records = fill(store, 5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:]))
    result = store.verify()
    assert result.ok and result.records == 5


def test_append_returns_a_committed_record(store, database_url):
    rec = store.append(decision())
    other = sa.create_engine(database_url)         # another connection, as after a crash and restart
    try:
        with other.connect() as c:
            row = c.execute(sa.text("SELECT seq, hash FROM audit_records WHERE id = :i"), {"i": rec.id}).one()
            head = c.execute(sa.text("SELECT seq, hash FROM audit_chain_head")).one()
    finally:
        other.dispose()
    assert tuple(row) == tuple(head) == (rec.seq, rec.hash)


def test_event_times_must_carry_a_zone():
    with pytest.raises(ValueError):
        decision(occurred_at=datetime(2026, 11, 1, 8, 0))


def test_schema_comes_from_alembic_and_upgrade_is_idempotent(store, database_url, keys):
    fill(store, 1)
    again = AuditStore(database_url, keys)       # runs `upgrade head` on an up-to-date store
    try:
        with again.engine.connect() as c:
            assert c.execute(sa.text("SELECT version_num FROM audit_alembic_version")).scalar() == "0002"
        assert again.verify().ok and again.verify().records == 1
    finally:
        again.close()


def test_migrations_match_the_models(store):
    import gate.web.auth  # noqa: F401  (the console's accounts share the audit metadata)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with store.engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"version_table": "audit_alembic_version"})
        assert compare_metadata(ctx, audit.Base.metadata) == []


def test_modified_record_is_named(store):
    records = fill(store, 4)
    sql(store, "UPDATE audit_records SET outcome = 'refer' WHERE id = :id", id=records[2].id)
    result = store.verify()
    assert not result.ok
    assert (result.broken_id, result.broken_seq) == (records[2].id, 3)
    assert "modified" in result.problem


def test_modified_checks_are_detected(store):
    records = fill(store, 3)
    sql(store, "UPDATE audit_records SET checks = :c WHERE id = :id",
        c=json.dumps({"passive_authentication": "passed", "face": {"score": 0.99}}), id=records[1].id)
    assert store.verify().broken_id == records[1].id


def test_deleted_record_is_detected(store):
    records = fill(store, 5)
    sql(store, "DELETE FROM audit_records WHERE id = :id", id=records[2].id)
    result = store.verify()
    assert not result.ok and result.broken_id == records[3].id and "deleted" in result.problem


def test_reordered_records_are_detected(store):
    records = fill(store, 4)
    a, b = records[1], records[2]
    sql(store, "UPDATE audit_records SET seq = -1 WHERE id = :id", id=a.id)
    sql(store, "UPDATE audit_records SET seq = :s WHERE id = :id", s=a.seq, id=b.id)
    sql(store, "UPDATE audit_records SET seq = :s WHERE id = :id", s=b.seq, id=a.id)
    result = store.verify()
    assert not result.ok and result.broken_seq == 2 and "reordered" in result.problem


def test_records_cut_from_the_end_are_detected(store):
    records = fill(store, 3)
    sql(store, "DELETE FROM audit_records WHERE id = :id", id=records[-1].id)
    result = store.verify()
    assert not result.ok and result.records == 2 and "end" in result.problem


def test_a_recomputed_forgery_still_breaks_the_next_link(store):
    """Rewriting a record *and* its own hash does not help: the next record's prev_hash disagrees."""
    records = fill(store, 3)
    with audit.Session(store.engine) as s, s.begin():
        row = s.get(audit.Row, records[0].id)
        row.outcome = "refer"
        row.hash = audit.record_hash(row)
    result = store.verify()
    assert result.broken_id == records[1].id


def _append_many(url: str, key_path: str, worker: int, n: int) -> None:
    s = AuditStore(url, AuditKeys.load_or_create(Path(key_path)), migrate=False)
    try:
        for i in range(n):
            s.append(decision(i, gate_id=f"gate-{worker:02d}", transaction_id=f"w{worker}-{i}"))
    finally:
        s.close()


def test_concurrent_threads_keep_one_chain(store, database_url, tmp_path):
    workers, n = 6, 15
    errors: list[BaseException] = []

    def run(w):
        try:
            _append_many(database_url, str(tmp_path / "audit.key"), w, n)
        except BaseException as e:   # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = store.verify()
    assert result.ok and result.records == workers * n
    assert len(store.search(limit=None)) == workers * n
    assert {r.transaction_id for r in store.search(limit=None)} == {f"w{w}-{i}" for w in range(workers) for i in range(n)}


def test_concurrent_processes_keep_one_chain(store, database_url, tmp_path):
    workers, n = 4, 15
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(database_url, str(tmp_path / "audit.key"), w, n))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    result = store.verify()
    assert result.ok and result.records == workers * n
    assert len({r.transaction_id for r in store.search(limit=None)}) == workers * n


def test_verify_during_appends_sees_a_consistent_snapshot(store):
    fill(store, 20)
    stop = threading.Event()

    def writer():
        i = 100
        while not stop.is_set():
            store.append(decision(i))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        results = [store.verify() for _ in range(8)]
    finally:
        stop.set()
        t.join()
    assert all(r.ok for r in results), [r.problem for r in results if not r.ok]
    assert results[-1].records >= 20


def test_unreachable_store_raises_audit_unavailable(keys):
    s = AuditStore("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2", keys, migrate=False)
    with pytest.raises(AuditUnavailable):
        s.append(decision())


def test_broken_schema_raises_audit_unavailable(store):
    fill(store, 1)
    sql(store, "DROP TABLE audit_chain_head")
    with pytest.raises(AuditUnavailable):
        store.append(decision(1))


# ---------------------------------------------------------------- privacy

def test_keyed_hash_search_finds_by_document_number(store, tmp_path):
    fill(store, 2)
    other = DocumentQuery(document_number="B22222222", issuing_state="UTO")
    store.append(decision(9, document=other))
    found = store.search(document_number="c01x00t47")      # normalised like an MRZ read
    assert [r.transaction_id for r in found] == ["tx-0", "tx-1"]
    assert [r.transaction_id for r in store.search(document_number="B22222223")] == []
    assert [r.transaction_id for r in store.search(document_number="B2222222<2")] == ["tx-9"]  # MRZ filler
    # the reference is keyed: another deployment's key gives another reference
    assert AuditKeys.load_or_create(tmp_path / "other.key").document_ref("C01X00T47") != found[0].document_ref


def test_nothing_personal_is_stored_in_clear(tmp_path, keys, clock):
    db = tmp_path / "audit.db"
    s = AuditStore(f"sqlite:///{db}", keys, keep_face_images=True, clock=clock)
    s.append(decision(face_image=FACE))
    s.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*")).upper()
    for secret in (b"C01X00T47", b"COLLINS", b"EILEEN", b"1956-11-19", b"JFIF-FACE-IMAGE"):
        assert secret not in raw


def test_face_images_are_encrypted_and_kept_only_when_configured(database_url, keys, clock):
    keep = AuditStore(database_url, keys, keep_face_images=True, clock=clock)
    rec = keep.append(decision(face_image=FACE, chip_face_image=CHIP))
    assert rec.has_face_image and keep.face_image(rec.id) == FACE and keep.face_image(rec.id, "chip") == CHIP
    live_only = keep.append(decision(1, face_image=FACE))
    assert keep.face_image(live_only.id, "chip") is None and keep.face_image(live_only.id) == FACE
    with keep.engine.connect() as c:
        blob = c.execute(sa.text("SELECT face_image FROM audit_records WHERE id = :i"), {"i": rec.id}).scalar()
    assert FACE[8:40] not in bytes(blob) and CHIP[8:40] not in bytes(blob)
    with keep.engine.begin() as c:   # the envelope is bound to its record: moved to another, it does not open
        c.execute(sa.text("UPDATE audit_records SET face_image = :b WHERE id = :i"), {"b": blob, "i": live_only.id})
    with pytest.raises(Exception):
        keep.face_image(live_only.id)
    keep.close()
    drop = AuditStore(database_url, keys, keep_face_images=False, clock=clock)
    rec2 = drop.append(decision(2, face_image=FACE, chip_face_image=CHIP))
    assert not rec2.has_face_image and drop.face_image(rec2.id) is None and drop.face_image(rec2.id, "chip") is None
    drop.close()


def test_a_0001_store_upgrades_in_place(database_url, keys, clock, monkeypatch):
    """A store made before the console's tables, holding a face image in the first
    envelope format (the live JPEG alone), upgrades at start and keeps its chain."""
    from alembic import command
    from alembic.config import Config
    engine = audit.make_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(audit.MIGRATIONS))
    with engine.connect().execution_options(egate_write=True) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    old = AuditStore(database_url, keys, keep_face_images=True, clock=clock, migrate=False)
    monkeypatch.setattr(audit, "_pack_faces", lambda faces: faces["live"])
    rec = old.append(decision(face_image=FACE))
    monkeypatch.undo()
    old.close()
    new = AuditStore(database_url, keys, keep_face_images=True, clock=clock)
    try:
        assert new.face_image(rec.id) == FACE and new.face_image(rec.id, "chip") is None
        assert new.verify().ok
        with new.engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM console_users")).scalar() == 0
    finally:
        new.close()


def test_event_repr_hides_personal_data():
    text = repr(decision(face_image=FACE))
    assert "C01X00T47" not in text and "Collins" not in text and "JFIF" not in text


def test_key_file_is_private_and_stable(tmp_path):
    path = tmp_path / "k"
    a = AuditKeys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AuditKeys.load_or_create(path).document_ref("X1") == a.document_ref("X1")
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        AuditKeys.load_or_create(path)


# ---------------------------------------------------------------- retention

def test_purge_drops_personal_payload_and_keeps_chain_verifiable(store, clock):
    old = [store.append(decision(i, face_image=FACE, chip_face_image=CHIP)) for i in range(3)]
    clock.advance(days=2)
    recent = store.append(decision(10, face_image=FACE, chip_face_image=CHIP))
    first = store.purge()
    assert (first.faces, first.references) == (3, 0)
    assert store.face_image(old[0].id) is None and store.face_image(old[0].id, "chip") is None
    assert store.face_image(recent.id) == FACE and store.face_image(recent.id, "chip") == CHIP
    assert store.verify().ok
    clock.advance(days=29)
    second = store.purge()
    assert (second.faces, second.references) == (1, 3)
    assert store.search(document_number=DOC.document_number, event_type="decision") == [
        r for r in store.search(event_type="decision") if r.transaction_id == "tx-10"]
    purges = store.search(event_type="purge")
    assert [p.checks["references_purged"] for p in purges] == [0, 3]
    result = store.verify()
    assert result.ok and result.records == 6


def test_purge_marker_cannot_hide_a_changed_reference(store, clock):
    rec = store.append(decision())
    sql(store, "UPDATE audit_records SET personal_purged_at = recorded_at, document_ref = :r WHERE id = :id",
        r="0" * 64, id=rec.id)
    assert store.verify().broken_id == rec.id


# ---------------------------------------------------------------- search and export

def test_search_filters(store, clock):
    store.append(decision(0))
    clock.advance(hours=1)
    store.append(decision(1, outcome="refer", reason_codes=["face.no_match", "identity.watch_list"],
                          gate_id="gate-02"))
    clock.advance(hours=1)
    store.append(AuditEvent(event_type="override", gate_id="gate-02", transaction_id="tx-1", outcome="open",
                            actor="officer-7", reason_codes=["officer_override"]))
    assert [r.transaction_id for r in store.search(outcome="refer")] == ["tx-1"]
    assert [r.seq for r in store.search(reason="face.no_match")] == [2]
    assert store.search(reason="face") == []           # codes match whole, not by substring
    assert [r.seq for r in store.search(gate_id="gate-02")] == [2, 3]
    assert [r.seq for r in store.search(officer="officer-7")] == [3]
    assert [r.seq for r in store.search(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))] == [2]
    assert [r.seq for r in store.search(limit=2)] == [1, 2]


def test_export_csv_and_jsonl(store):
    fill(store, 3)
    records = store.search()
    buf = io.StringIO()
    assert audit.export_jsonl(records, buf) == 3
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [x["hash"] for x in lines] == [r.hash for r in records]
    assert lines[0]["checks"]["passive_authentication"] == "passed"
    buf = io.StringIO()
    assert audit.export_csv(records, buf) == 3
    rows = buf.getvalue().splitlines()
    assert rows[0].startswith("id,seq,occurred_at") and len(rows) == 4
    assert "C01X00T47" not in buf.getvalue()


# ---------------------------------------------------------------- CLI

def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    audit.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_verify_exit_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EGATE_DATA_DIR", str(tmp_path))
    assert _run_cli(["audit", "verify"]) == 0           # creates key, store, schema
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", AuditKeys.load_or_create(tmp_path / "audit.key"))
    recs = fill(s, 3)
    assert _run_cli(["audit", "verify"]) == 0
    assert "3 records" in capsys.readouterr().out
    sql(s, "UPDATE audit_records SET gate_id = 'gate-99' WHERE id = :id", id=recs[1].id)
    s.close()
    assert _run_cli(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"record id {recs[1].id}" in out and "modified" in out
    out_file = tmp_path / "export.csv"
    assert _run_cli(["audit", "export", "--document-number", DOC.document_number, "--out", str(out_file)]) == 0
    assert len(out_file.read_text().splitlines()) == 4
    assert _run_cli(["audit", "search", "--event-type", "decision", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2]


def test_cli_purge_records_itself(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EGATE_AUDIT__RETENTION_DAYS", "0")
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", AuditKeys.load_or_create(tmp_path / "audit.key"))
    fill(s, 2)
    assert _run_cli(["audit", "purge", "--actor", "auditor-1"]) == 0
    assert "2 personal references" in capsys.readouterr().out
    assert [r.actor for r in s.search(event_type="purge")] == ["auditor-1"]
    assert s.search(document_number=DOC.document_number) == [] and s.verify().ok
    s.close()
