"""The audit trail: append-only, tamper-evident, durable before the barrier moves.

Each record carries the SHA-256 of the previous one over a canonical JSON of
its fields, so a changed, deleted or reordered record breaks the chain at a
point `verify()` names. Appends are serialised on a single chain-head row
(`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so a
fleet of gates sharing one store never forks the chain.

Personal data never lands in clear: document numbers and persons become keyed
hashes (HMAC-SHA256) an auditor can still search by, and the face images (the
live capture and the chip photo) are kept only when configured, in one AES-GCM
envelope per record. The chain covers *digests* of that personal payload, so the
retention job can drop the payload and the chain still verifies.

The officer console's accounts and sessions live in this database too (their
models and reasons: `gate.web.auth`); the Alembic migrations here create both.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gate.identity import DocumentQuery, PersonQuery, normalise_document_number, normalise_name

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AuditUnavailable(Exception):
    """The record could not be committed; the transaction must refer, never open."""


class ChangeRefused(ValueError):
    """A change recorded together with its audit record was refused (bad input, not a
    storage failure): nothing was committed, and the caller sees this error as it is."""


# ---------------------------------------------------------------- storage model

class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""
    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class ChainHead(Base):
    """One row: the last sequence number and hash. Appends lock it."""
    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))


class Row(Base):
    __tablename__ = "audit_records"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(sa.String(32), index=True)
    gate_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    transaction_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    outcome: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    reason_codes: Mapped[str] = mapped_column(sa.Text)   # canonical JSON list
    checks: Mapped[str] = mapped_column(sa.Text)         # canonical JSON object
    actor: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    document_ref: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    person_ref: Mapped[str | None] = mapped_column(sa.String(64))
    personal_digest: Mapped[str] = mapped_column(sa.String(64))
    face_image: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    face_digest: Mapped[str] = mapped_column(sa.String(64))
    personal_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    face_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def personal_digest(document_ref: str | None, person_ref: str | None) -> str:
    return _sha256(canonical({"document_ref": document_ref, "person_ref": person_ref}))


def record_hash(r: Row) -> str:
    """SHA-256 over the canonical JSON of every chained field plus the previous hash."""
    return _sha256(canonical({
        "v": 1, "seq": r.seq, "occurred_at": _iso(r.occurred_at), "recorded_at": _iso(r.recorded_at),
        "event_type": r.event_type, "gate_id": r.gate_id, "transaction_id": r.transaction_id,
        "outcome": r.outcome, "reason_codes": r.reason_codes, "checks": r.checks, "actor": r.actor,
        "personal_digest": r.personal_digest, "face_digest": r.face_digest, "prev_hash": r.prev_hash,
    }))


# ---------------------------------------------------------------- keys

class AuditKeys:
    """Keyed hashing and image encryption keys, derived from one 32-byte secret.

    The secret lives in a file created 0600 on first start; a fleet sharing
    one store must share it, or searches by document number miss other gates.
    """

    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("audit secret must be at least 32 bytes")
        self.hmac_key = self._derive(secret, b"egate audit hmac")
        self.aead = AESGCM(self._derive(secret, b"egate audit face image"))

    @staticmethod
    def _derive(secret: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

    @classmethod
    def load_or_create(cls, path: Path) -> "AuditKeys":
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PermissionError(f"audit key file {path} is readable by others (mode {oct(mode & 0o777)})")
            return cls(path.read_bytes())
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
            f.flush()
            os.fsync(f.fileno())
        return cls(path.read_bytes())

    def _mac(self, label: str, value: str) -> str:
        return hmac.new(self.hmac_key, f"{label}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def document_ref(self, document_number: str) -> str:
        return self._mac("document", normalise_document_number(document_number))

    def person_ref(self, person: PersonQuery) -> str:
        dob = person.date_of_birth.isoformat() if person.date_of_birth else ""
        return self._mac("person", f"{normalise_name(person.surname)}|{normalise_name(person.given_names)}|{dob}")


# ---------------------------------------------------------------- API types

class AuditEvent(BaseModel):
    """What the gate asks to record (event types such as decision, referral,
    passage, override, officer_login, account, face_view, purge). `document`,
    `person` and the face images are personal: they are hashed or encrypted
    before storage, never stored clear."""
    model_config = ConfigDict(arbitrary_types_allowed=True)

    event_type: str = Field(pattern=r"^[a-z][a-z_]{1,31}$")
    gate_id: str
    transaction_id: str | None = None
    outcome: str | None = None
    reason_codes: list[str] = Field(default_factory=list)
    checks: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = None
    occurred_at: AwareDatetime | None = None
    document: DocumentQuery | None = None
    person: PersonQuery | None = None
    face_image: bytes | None = Field(default=None, repr=False)         # the live capture
    chip_face_image: bytes | None = Field(default=None, repr=False)    # the chip photo (DG2)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    seq: int
    occurred_at: datetime
    recorded_at: datetime
    event_type: str
    gate_id: str
    transaction_id: str | None
    outcome: str | None
    reason_codes: list[str]
    checks: dict[str, Any]
    actor: str | None
    document_ref: str | None
    person_ref: str | None
    has_face_image: bool
    personal_purged_at: datetime | None
    face_purged_at: datetime | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, r: Row) -> "AuditRecord":
        return cls(r.id, r.seq, r.occurred_at, r.recorded_at, r.event_type, r.gate_id, r.transaction_id,
                   r.outcome, json.loads(r.reason_codes), json.loads(r.checks), r.actor, r.document_ref,
                   r.person_ref, r.face_image is not None, r.personal_purged_at, r.face_purged_at,
                   r.prev_hash, r.hash)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = _iso(v)
        return d


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    broken_id: int | None = None
    broken_seq: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class PurgeResult:
    faces: int
    references: int
    record: AuditRecord


# ---------------------------------------------------------------- engine

def make_engine(url: str) -> Engine:
    """An engine whose commits are durable: SQLite in WAL with synchronous=FULL
    and a busy timeout; write transactions on SQLite take the lock up front."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None   # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("egate_write") else "BEGIN")

    return engine


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (Alembic `upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect().execution_options(egate_write=True) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


# ---------------------------------------------------------------- the store

class AuditStore:
    def __init__(self, database_url: str, keys: AuditKeys, *, keep_face_images: bool = False,
                 retention: timedelta = timedelta(days=90), face_retention: timedelta = timedelta(days=1),
                 clock: Clock = utcnow, migrate: bool = True):
        self.engine = make_engine(database_url)
        self.keys = keys
        self.keep_face_images = keep_face_images
        self.retention = retention
        self.face_retention = face_retention
        self.clock = clock
        if migrate:
            upgrade(self.engine)

    @classmethod
    def from_settings(cls, settings, *, clock: Clock = utcnow) -> "AuditStore":
        a = settings.audit
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        keys = AuditKeys.load_or_create(a.key_file or settings.data_dir / "audit.key")
        return cls(a.database_url, keys, keep_face_images=a.keep_face_images,
                   retention=timedelta(days=a.retention_days),
                   face_retention=timedelta(days=a.face_retention_days), clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def _write(self) -> Session:
        """A session whose transactions take the write lock at BEGIN (SQLite)."""
        return Session(self.engine.execution_options(egate_write=True))

    def _lock_head(self, s: Session) -> ChainHead:
        return s.execute(sa.select(ChainHead).where(ChainHead.id == 1).with_for_update()).scalar_one()

    def append(self, ev: AuditEvent, change: Callable[[Session], None] | None = None) -> AuditRecord:
        """Commit one record and return it; returns only once the database has
        committed it durably. Any failure raises `AuditUnavailable`.

        `change`, when given, runs in the same database transaction (e.g. an officer
        account changed by a supervisor), so the change and its record commit
        together or not at all; a `ChangeRefused` it raises reaches the caller."""
        now = self.clock()
        doc_ref = self.keys.document_ref(ev.document.document_number) if ev.document else None
        person_ref = self.keys.person_ref(ev.person) if ev.person else None
        try:
            with self._write() as s, s.begin():
                if self.engine.dialect.name == "postgresql":   # durable even if the server default says otherwise
                    s.execute(sa.text("SET LOCAL synchronous_commit = on"))
                head = self._lock_head(s)
                if change is not None:
                    change(s)
                row = Row(seq=head.seq + 1, occurred_at=ev.occurred_at or now, recorded_at=now,
                          event_type=ev.event_type, gate_id=ev.gate_id, transaction_id=ev.transaction_id,
                          outcome=ev.outcome, reason_codes=canonical(ev.reason_codes),
                          checks=canonical(ev.checks), actor=ev.actor, document_ref=doc_ref,
                          person_ref=person_ref, personal_digest=personal_digest(doc_ref, person_ref),
                          prev_hash=head.hash)
                faces = {k: v for k, v in (("live", ev.face_image), ("chip", ev.chip_face_image)) if v}
                if faces and self.keep_face_images:
                    nonce = os.urandom(12)
                    row.face_image = nonce + self.keys.aead.encrypt(nonce, _pack_faces(faces), self._aad(row.seq))
                row.face_digest = _sha256(row.face_image or b"")
                row.hash = record_hash(row)
                s.add(row)
                head.seq, head.hash = row.seq, row.hash
                s.flush()
                record = AuditRecord.of(row)
        except ChangeRefused:
            raise
        except Exception as e:  # any storage failure: the caller must refer, not open
            log.error("audit append failed: %s", type(e).__name__)
            raise AuditUnavailable(f"audit record not committed: {type(e).__name__}") from e
        return record

    @staticmethod
    def _aad(seq: int) -> bytes:
        return f"egate-audit-face:{seq}".encode()

    def face_image(self, record_id: int, which: str = "live") -> bytes | None:
        """A record's decrypted face image, 'live' (the capture) or 'chip' (the DG2
        photo), if one was kept and not purged."""
        with Session(self.engine) as s:
            row = s.get(Row, record_id)
            if row is None or row.face_image is None:
                return None
            blob = row.face_image
            plain = self.keys.aead.decrypt(blob[:12], blob[12:], self._aad(row.seq))
        return _unpack_faces(plain).get(which)

    def get(self, record_id: int) -> AuditRecord | None:
        with Session(self.engine) as s:
            row = s.get(Row, record_id)
            return None if row is None else AuditRecord.of(row)

    def verify(self) -> VerifyResult:
        """Walk the chain in sequence order; report the first broken link.

        One snapshot (REPEATABLE READ on PostgreSQL; a WAL read transaction
        on SQLite), so gates appending meanwhile cannot make the records and
        the chain head disagree."""
        prev, expect_seq, n = GENESIS, 1, 0
        engine = self.engine
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        with Session(engine) as s, s.begin():
            rows = s.execute(sa.select(Row).order_by(Row.seq).execution_options(yield_per=500)).scalars()
            for r in rows:
                problem = None
                if r.seq != expect_seq:
                    problem = f"sequence gap: expected {expect_seq}, found {r.seq} (record deleted or reordered)"
                elif r.prev_hash != prev:
                    problem = "prev_hash does not match the previous record's hash (record deleted or reordered)"
                elif r.personal_purged_at is None and r.personal_digest != personal_digest(r.document_ref, r.person_ref):
                    problem = "personal references do not match their chained digest (modified)"
                elif r.personal_purged_at is not None and (r.document_ref or r.person_ref):
                    problem = "personal references present on a record marked purged (modified)"
                elif r.face_purged_at is None and r.face_digest != _sha256(r.face_image or b""):
                    problem = "face image does not match its chained digest (modified)"
                elif r.face_purged_at is not None and r.face_image is not None:
                    problem = "face image present on a record marked purged (modified)"
                elif r.hash != record_hash(r):
                    problem = "record hash does not match its contents (modified)"
                if problem:
                    return VerifyResult(False, n, r.id, r.seq, problem)
                prev, expect_seq, n = r.hash, expect_seq + 1, n + 1
            head = s.get(ChainHead, 1)
            if head is None or head.seq != n or head.hash != prev:
                return VerifyResult(False, n, None, n + 1,
                                    f"chain head says seq {head.seq if head else None} but the chain ends at {n} "
                                    "(records removed from the end)")
        return VerifyResult(True, n)

    def search(self, *, since: datetime | None = None, until: datetime | None = None,
               outcome: str | None = None, reason: str | None = None, gate_id: str | None = None,
               document_number: str | None = None, officer: str | None = None,
               event_type: str | None = None, transaction_id: str | None = None,
               limit: int | None = 1000, newest_first: bool = False) -> list[AuditRecord]:
        """Records matching every given filter, oldest first (or newest first). A
        document number is searched by its keyed hash, so it never reaches the database clear."""
        q = sa.select(Row).order_by(Row.seq.desc() if newest_first else Row.seq)
        if since:
            q = q.where(Row.occurred_at >= since)
        if until:
            q = q.where(Row.occurred_at < until)
        if reason:
            q = q.where(Row.reason_codes.contains(json.dumps(reason), autoescape=True))
        for col, val in ((Row.outcome, outcome), (Row.gate_id, gate_id), (Row.actor, officer),
                         (Row.event_type, event_type), (Row.transaction_id, transaction_id)):
            if val is not None:
                q = q.where(col == val)
        if document_number:
            q = q.where(Row.document_ref == self.keys.document_ref(document_number))
        if limit:
            q = q.limit(limit)
        with Session(self.engine) as s:
            records = [AuditRecord.of(r) for r in s.execute(q).scalars()]
        if reason:   # the LIKE pre-filter can match a substring of a longer code
            records = [r for r in records if reason in r.reason_codes]
        return records

    def unresolved_referrals(self, document_number: str, since: datetime, limit: int) -> list[AuditRecord]:
        """The document's referrals since `since`, newest first and at most `limit`, that no officer
        has allowed since, from every gate sharing this store (the repeat-attempt rule). An officer's
        allow (override `open`) of a referral settles it and every earlier referral of the document:
        the officer has seen the traveller. A deny settles nothing. Two indexed queries (document_ref
        and time; transaction_id), matched by the keyed hash, never the number in clear."""
        ref = self.keys.document_ref(document_number)
        with Session(self.engine) as s:
            rows = s.execute(sa.select(Row).where(Row.document_ref == ref, Row.outcome == "refer",
                                                  Row.occurred_at >= since)
                             .order_by(Row.seq.desc()).limit(limit)).scalars().all()
            ids = [r.transaction_id for r in rows if r.transaction_id]
            allowed = set(s.execute(sa.select(Row.transaction_id).where(
                Row.event_type == "override", Row.outcome == "open", Row.transaction_id.in_(ids))).scalars()
            ) if ids else set()
            out = []
            for r in rows:
                if r.transaction_id in allowed:
                    break
                out.append(AuditRecord.of(r))
        return out

    def purge(self, *, actor: str = "retention-job", gate_id: str = "audit") -> PurgeResult:
        """Drop face images and personal references past retention, then record
        the purge itself. Chained digests stay, so the chain still verifies."""
        now = self.clock()
        try:
            with self._write() as s, s.begin():
                faces = s.execute(sa.update(Row).where(
                    Row.face_image.is_not(None), Row.recorded_at < now - self.face_retention,
                ).values(face_image=None, face_purged_at=now)).rowcount
                refs = s.execute(sa.update(Row).where(
                    Row.personal_purged_at.is_(None), Row.recorded_at < now - self.retention,
                    sa.or_(Row.document_ref.is_not(None), Row.person_ref.is_not(None)),
                ).values(document_ref=None, person_ref=None, personal_purged_at=now)).rowcount
        except Exception as e:
            raise AuditUnavailable(f"purge failed: {type(e).__name__}") from e
        record = self.append(AuditEvent(
            event_type="purge", gate_id=gate_id, actor=actor, outcome="done",
            checks={"faces_purged": faces, "references_purged": refs,
                    "face_retention_days": self.face_retention / timedelta(days=1),
                    "retention_days": self.retention / timedelta(days=1)}))
        return PurgeResult(faces, refs, record)


def _pack_faces(faces: dict[str, bytes]) -> bytes:
    """The plaintext of a record's one encrypted face envelope: both images under one
    chained digest, so they are verified, and purged, together."""
    return canonical({k: base64.b64encode(v).decode() for k, v in faces.items()}).encode()


def _unpack_faces(plain: bytes) -> dict[str, bytes]:
    if not plain.startswith(b"{"):      # records written before the envelope: the live JPEG alone
        return {"live": plain}
    return {k: base64.b64decode(v) for k, v in json.loads(plain).items()}


def export_jsonl(records: Iterable[AuditRecord], out: TextIO) -> int:
    n = 0
    for r in records:
        out.write(canonical(r.to_json()) + "\n")
        n += 1
    return n


CSV_FIELDS = ("id", "seq", "occurred_at", "recorded_at", "event_type", "gate_id", "transaction_id", "outcome",
              "reason_codes", "checks", "actor", "document_ref", "person_ref", "has_face_image",
              "personal_purged_at", "face_purged_at", "prev_hash", "hash")


def export_csv(records: Iterable[AuditRecord], out: TextIO) -> int:
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    w.writeheader()
    n = 0
    for r in records:
        d = r.to_json()
        d["reason_codes"] = " ".join(r.reason_codes)
        d["checks"] = canonical(r.checks)
        w.writerow(d)
        n += 1
    return n


# ---------------------------------------------------------------- CLI: python -m gate audit ...

def _parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _cli(args) -> int:
    import sys

    from gate.config import Settings

    store = AuditStore.from_settings(Settings())
    try:
        if args.audit_cmd == "verify":
            result = store.verify()
            if result.ok:
                print(f"audit chain intact: {result.records} records")
                return 0
            print(f"audit chain BROKEN after {result.records} good records: record id {result.broken_id} "
                  f"(seq {result.broken_seq}): {result.problem}")
            return 1
        if args.audit_cmd == "purge":
            p = store.purge(actor=args.actor)
            print(f"purged {p.faces} face images and {p.references} personal references; "
                  f"recorded as seq {p.record.seq}")
            return 0
        if args.audit_cmd == "migrate":
            print("audit schema at head")
            return 0
        records = store.search(since=args.since and _parse_time(args.since),
                               until=args.until and _parse_time(args.until), outcome=args.outcome,
                               reason=args.reason, gate_id=args.gate, document_number=args.document_number,
                               officer=args.officer, event_type=args.event_type,
                               transaction_id=args.transaction, limit=args.limit)
        out = open(args.out, "w", newline="") if args.out else sys.stdout
        try:
            n = (export_csv if args.format == "csv" else export_jsonl)(records, out)
        finally:
            if args.out:
                out.close()
        print(f"{n} records", file=sys.stderr)
        return 0
    except AuditUnavailable as e:
        print(f"audit store unavailable: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()


def register(subparsers) -> None:
    p = subparsers.add_parser("audit", help="verify, search/export and purge the audit trail")
    sub = p.add_subparsers(dest="audit_cmd", required=True)
    sub.add_parser("verify", help="walk the hash chain; exit 1 at the first broken link")
    sub.add_parser("migrate", help="bring the audit schema to the newest migration")
    purge = sub.add_parser("purge", help="drop face images and personal references past retention")
    purge.add_argument("--actor", default="retention-job")
    for name, fmt in (("search", "jsonl"), ("export", "csv")):
        s = sub.add_parser(name, help=f"records matching the filters, as {fmt} unless --format says otherwise")
        s.add_argument("--since", help="ISO time, inclusive (UTC unless a zone is given)")
        s.add_argument("--until", help="ISO time, exclusive")
        s.add_argument("--outcome")
        s.add_argument("--reason")
        s.add_argument("--gate")
        s.add_argument("--document-number", help="searched by its keyed hash; never stored in clear")
        s.add_argument("--officer")
        s.add_argument("--event-type")
        s.add_argument("--transaction")
        s.add_argument("--limit", type=int, default=None)
        s.add_argument("--format", choices=("csv", "jsonl"), default=fmt)
        s.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=_cli)
