"""The reference identity service: the authority's record of persons and documents.

A separate FastAPI application (`create_app`) that the gate's HTTP client
calls, and the same logic in-process (`IdentityRegistry` is itself an
`IdentityService`) for the demo and tests. It knows documents (valid, revoked,
lost, stolen) and persons (exit ban, watch list). Document numbers are its own
data, but it never logs them.
"""
from __future__ import annotations

import datetime as dt
import enum
import getpass
import hmac
import json
import logging
from datetime import date
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from gate.identity import (DocumentQuery, IdentityAnswer, PersonQuery, normalise_document_number,
                           normalise_name)

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parent.parent
PERSONAS = CHECKOUT / "cardreader" / "sim" / "personas"
MIGRATIONS = Path(__file__).resolve().parent / "identity_migrations"


class DocumentStatus(str, enum.Enum):
    VALID = "valid"
    REVOKED = "revoked"
    LOST = "lost"
    STOLEN = "stolen"


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(primary_key=True)
    surname: Mapped[str] = mapped_column(sa.String(120))
    given_names: Mapped[str] = mapped_column(sa.String(120))
    surname_key: Mapped[str] = mapped_column(sa.String(120), index=True)
    given_names_key: Mapped[str] = mapped_column(sa.String(120))
    date_of_birth: Mapped[date | None] = mapped_column(sa.Date)
    nationality: Mapped[str | None] = mapped_column(sa.String(3))
    exit_ban: Mapped[bool] = mapped_column(default=False)
    watch_list: Mapped[bool] = mapped_column(default=False)
    documents: Mapped[list["Document"]] = relationship(back_populates="person", cascade="all, delete-orphan")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (sa.UniqueConstraint("number_key", "issuing_state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("persons.id"))
    number: Mapped[str] = mapped_column(sa.String(20))
    number_key: Mapped[str] = mapped_column(sa.String(20))
    issuing_state: Mapped[str] = mapped_column(sa.String(3))
    document_type: Mapped[str] = mapped_column(sa.String(2), default="P")
    date_of_expiry: Mapped[date | None] = mapped_column(sa.Date)
    status: Mapped[DocumentStatus] = mapped_column(sa.Enum(DocumentStatus, native_enum=False, length=10),
                                                   default=DocumentStatus.VALID)
    person: Mapped[Person] = relationship(back_populates="documents")


class Change(Base):
    """One administrative change to the registry: who, when, what (ids and flags only)."""

    __tablename__ = "identity_changes"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(32))
    target: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[str] = mapped_column(sa.String(200))


class ChangeOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: str


def upgrade(engine: sa.Engine) -> None:
    """Bring the registry's schema to the newest migration (its own Alembic history)."""
    from alembic import command
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        tables = sa.inspect(conn).get_table_names()
        if "persons" in tables and "identity_alembic_version" not in tables:
            command.stamp(cfg, "0001")     # a registry made before migrations existed (create_all)
        command.upgrade(cfg, "head")


# ---------------------------------------------------------------- admin payloads

class DocumentIn(BaseModel):
    number: str
    issuing_state: str
    document_type: str = "P"
    date_of_expiry: date | None = None
    status: DocumentStatus = DocumentStatus.VALID


class PersonIn(BaseModel):
    surname: str
    given_names: str = ""
    date_of_birth: date | None = None
    nationality: str | None = None
    exit_ban: bool = False
    watch_list: bool = False
    documents: list[DocumentIn] = []


class PersonPatch(BaseModel):
    exit_ban: bool | None = None
    watch_list: bool | None = None


class DocumentStatusChange(BaseModel):
    """In the body, not the path: document numbers must not reach access logs."""
    number: str
    issuing_state: str
    status: DocumentStatus


class DocumentOut(BaseModel):
    id: int
    number: str
    issuing_state: str
    document_type: str
    date_of_expiry: date | None
    status: DocumentStatus


class PersonOut(BaseModel):
    id: int
    surname: str
    given_names: str
    date_of_birth: date | None
    nationality: str | None
    exit_ban: bool
    watch_list: bool
    documents: list[DocumentOut]

    @classmethod
    def of(cls, p: Person) -> "PersonOut":
        return cls(id=p.id, surname=p.surname, given_names=p.given_names, date_of_birth=p.date_of_birth,
                   nationality=p.nationality, exit_ban=p.exit_ban, watch_list=p.watch_list,
                   documents=[DocumentOut(id=d.id, number=d.number, issuing_state=d.issuing_state,
                                          document_type=d.document_type, date_of_expiry=d.date_of_expiry,
                                          status=d.status) for d in p.documents])


class CheckRequest(BaseModel):
    person: PersonQuery
    document: DocumentQuery


# ---------------------------------------------------------------- the logic

_DOCUMENT_OUTCOME = {DocumentStatus.REVOKED: ("revoked", "document_revoked"),
                     DocumentStatus.LOST: ("lost_stolen", "document_lost"),
                     DocumentStatus.STOLEN: ("lost_stolen", "document_stolen")}
# most severe first: the answer's outcome is the worst finding, its reasons list every finding
_SEVERITY = ("lost_stolen", "revoked", "exit_ban", "watch_list", "not_found", "clear")


MRZ_NAME_FIELD = 30   # TD1's name line, the shortest: longer names arrive truncated


def _same_given_names(stored: str, query: str, surname: str) -> bool:
    """Exact, or a prefix when the query filled the MRZ name field and was cut."""
    truncated = len(surname) + 2 + len(query) >= MRZ_NAME_FIELD
    return stored == query or (truncated and bool(query) and stored.startswith(query))


class IdentityRegistry:
    """Persons and documents in SQL (SQLite or PostgreSQL), and the check itself."""

    def __init__(self, database_url: str):
        kw = {"connect_args": {"check_same_thread": False}} if database_url.startswith("sqlite") else {}
        self.engine = sa.create_engine(database_url, **kw)
        upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def _log(s: Session, actor: str, action: str, target: str, detail: str) -> None:
        s.add(Change(at=dt.datetime.now(dt.timezone.utc), actor=actor[:64], action=action, target=target,
                     detail=detail[:200]))

    def changes(self, limit: int = 100) -> list[ChangeOut]:
        with self.sessions() as s:
            rows = s.execute(sa.select(Change).order_by(Change.id.desc()).limit(limit)).scalars()
            return [ChangeOut(at=c.at, actor=c.actor, action=c.action, target=c.target, detail=c.detail)
                    for c in rows]

    @classmethod
    def open_local(cls, settings) -> "IdentityRegistry":
        """The in-process service of the demo gate, seeded on first use."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        registry = cls(settings.identity.service_database_url)
        if not registry.list_persons():
            registry.seed()
        return registry

    def close(self) -> None:
        self.engine.dispose()

    def check(self, person: PersonQuery, document: DocumentQuery) -> IdentityAnswer:
        try:
            return self._check(person, document)
        except sa.exc.SQLAlchemyError as e:
            log.error("identity registry failed: %s", type(e).__name__)
            return IdentityAnswer(outcome="unavailable", reasons=["registry_error"])

    def _check(self, person: PersonQuery, document: DocumentQuery) -> IdentityAnswer:
        findings: list[tuple[str, str]] = []
        surname, given = normalise_name(person.surname), normalise_name(person.given_names)
        with self.sessions() as s:
            doc = s.execute(sa.select(Document).where(
                Document.number_key == normalise_document_number(document.document_number),
                Document.issuing_state == document.issuing_state.upper())).scalar_one_or_none()
            people = [p for p in s.execute(sa.select(Person).where(
                Person.surname_key == surname, Person.date_of_birth == person.date_of_birth)).scalars()
                if _same_given_names(p.given_names_key, given, surname)]
            if doc is None:
                findings.append(("not_found", "document_not_found"))
            else:
                if doc.status in _DOCUMENT_OUTCOME:
                    findings.append(_DOCUMENT_OUTCOME[doc.status])
                if doc.person not in people:
                    findings.append(("not_found", "holder_mismatch"))
                    people.append(doc.person)   # the holder's own flags still count
            if not people:
                findings.append(("not_found", "person_not_found"))
            for p in people:
                if p.exit_ban:
                    findings.append(("exit_ban", "exit_ban"))
                if p.watch_list:
                    findings.append(("watch_list", "watch_list_hit"))
        if not findings:
            return IdentityAnswer(outcome="clear", reasons=[])
        outcome = min((f[0] for f in findings), key=_SEVERITY.index)
        return IdentityAnswer(outcome=outcome, reasons=list(dict.fromkeys(f[1] for f in findings)))

    # ---- administration

    def add_person(self, p: PersonIn, actor: str = "system") -> PersonOut:
        with self.sessions.begin() as s:
            person = Person(surname=p.surname, given_names=p.given_names, surname_key=normalise_name(p.surname),
                            given_names_key=normalise_name(p.given_names), date_of_birth=p.date_of_birth,
                            nationality=p.nationality, exit_ban=p.exit_ban, watch_list=p.watch_list)
            for d in p.documents:
                person.documents.append(self._document(d))
            s.add(person)
            s.flush()
            self._log(s, actor, "add_person", f"person:{person.id}",
                      f"documents={len(p.documents)} exit_ban={p.exit_ban} watch_list={p.watch_list}")
            return PersonOut.of(person)

    @staticmethod
    def _document(d: DocumentIn) -> Document:
        return Document(number=d.number, number_key=normalise_document_number(d.number),
                        issuing_state=d.issuing_state.upper(), document_type=d.document_type,
                        date_of_expiry=d.date_of_expiry, status=d.status)

    def add_document(self, person_id: int, d: DocumentIn, actor: str = "system") -> PersonOut:
        with self.sessions.begin() as s:
            person = s.get(Person, person_id)
            if person is None:
                raise KeyError(person_id)
            person.documents.append(self._document(d))
            s.flush()
            self._log(s, actor, "add_document", f"person:{person_id}", f"status={d.status.value}")
            return PersonOut.of(person)

    def update_person(self, person_id: int, patch: PersonPatch, actor: str = "system") -> PersonOut:
        with self.sessions.begin() as s:
            person = s.get(Person, person_id)
            if person is None:
                raise KeyError(person_id)
            changed = patch.model_dump(exclude_none=True)
            for k, v in changed.items():
                setattr(person, k, v)
            self._log(s, actor, "update_person", f"person:{person_id}",
                      " ".join(f"{k}={v}" for k, v in changed.items() if k in ("exit_ban", "watch_list"))
                      or "fields=" + ",".join(sorted(changed)))
            return PersonOut.of(person)

    def set_document_status(self, number: str, issuing_state: str, status: DocumentStatus,
                            actor: str = "system") -> PersonOut:
        with self.sessions.begin() as s:
            doc = s.execute(sa.select(Document).where(
                Document.number_key == normalise_document_number(number),
                Document.issuing_state == issuing_state.upper())).scalar_one_or_none()
            if doc is None:
                raise KeyError("document")
            old, doc.status = doc.status, status
            self._log(s, actor, "set_document_status", f"person:{doc.person_id}",
                      f"document:{doc.id} {old.value}->{status.value}")
            return PersonOut.of(doc.person)

    def list_persons(self) -> list[PersonOut]:
        with self.sessions() as s:
            return [PersonOut.of(p) for p in s.execute(sa.select(Person).order_by(Person.id)).scalars()]

    def seed(self, personas: Path = PERSONAS) -> list[PersonOut]:
        """The simulator's personas, all in good standing (read from their
        files, so the cards and the registry agree), and one person for every
        other answer."""
        files = sorted(personas.glob("*.json"))
        if not files:
            log.warning("no persona files in %s: the demo travellers are not seeded", personas)
        added = []
        for person in [*map(persona_person, files), *SEED_PEOPLE]:
            try:
                added.append(self.add_person(person, actor="seed"))
            except sa.exc.IntegrityError:   # seeded before: the document is registered already
                continue
        return added


def persona_person(path: Path) -> PersonIn:
    d = json.loads(path.read_text())
    return PersonIn(surname=d["surname"], given_names=d.get("given_names", ""),
                    date_of_birth=d.get("date_of_birth"), nationality=d.get("nationality"),
                    documents=[DocumentIn(number=d["document_number"], issuing_state=d["issuing_state"],
                                          document_type=d.get("document_type", "ID"),
                                          date_of_expiry=d.get("date_of_expiry"))])


def _seed(surname: str, given: str, dob: str, number: str, *, status: DocumentStatus = DocumentStatus.VALID,
          exit_ban: bool = False, watch_list: bool = False) -> PersonIn:
    return PersonIn(surname=surname, given_names=given, date_of_birth=date.fromisoformat(dob), nationality="UTO",
                    exit_ban=exit_ban, watch_list=watch_list,
                    documents=[DocumentIn(number=number, issuing_state="UTO", document_type="P",
                                          date_of_expiry=date(2031, 6, 30), status=status)])


# Fictitious people in ICAO's specimen state Utopia, one per answer.
SEED_PEOPLE = [
    _seed("Eriksson", "Anna Maria", "1974-08-12", "L898902C3"),
    _seed("Nguyen", "Van An", "1988-03-02", "R0000001A", status=DocumentStatus.REVOKED),
    _seed("Tran", "Thi Binh", "1991-11-23", "L0000002B", status=DocumentStatus.LOST),
    _seed("Le", "Minh Chau", "1979-01-15", "S0000003C", status=DocumentStatus.STOLEN),
    _seed("Pham", "Quoc Dung", "1965-07-04", "E0000004D", exit_ban=True),
    _seed("Hoang", "Gia Em", "1983-05-30", "W0000005E", watch_list=True),
]


# ---------------------------------------------------------------- the HTTP application

def create_app(database_url: str, admin_token: str | None = None,
               registry: IdentityRegistry | None = None) -> FastAPI:
    registry = registry or IdentityRegistry(database_url)
    app = FastAPI(title="Identity service (reference)", version="1")

    def admin(authorization: str = Header(default=""),
              x_actor: str = Header(default="admin-api", description="who makes the change (logged)")) -> str:
        if not admin_token:
            raise HTTPException(403, "admin API disabled: no admin token configured")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise HTTPException(401, "bad admin token", headers={"WWW-Authenticate": "Bearer"})
        return x_actor

    @app.get("/healthz")
    def healthz() -> dict[str, Literal["ok"]]:
        return {"status": "ok"}

    @app.post("/v1/check", response_model=IdentityAnswer)
    def check(req: CheckRequest) -> IdentityAnswer:
        answer = registry.check(req.person, req.document)
        if answer.outcome == "unavailable":
            raise HTTPException(503, "registry unavailable")
        return answer

    @app.get("/v1/admin/persons", response_model=list[PersonOut], dependencies=[Depends(admin)])
    def list_persons() -> list[PersonOut]:
        return registry.list_persons()

    @app.get("/v1/admin/changes", response_model=list[ChangeOut], dependencies=[Depends(admin)])
    def changes(limit: int = 100) -> list[ChangeOut]:
        return registry.changes(max(1, min(limit, 1000)))

    @app.post("/v1/admin/persons", response_model=PersonOut, status_code=201)
    def add_person(p: PersonIn, actor: str = Depends(admin)) -> PersonOut:
        try:
            return registry.add_person(p, actor)
        except sa.exc.IntegrityError:
            raise HTTPException(409, "document already registered") from None

    @app.patch("/v1/admin/persons/{person_id}", response_model=PersonOut)
    def update_person(person_id: int, patch: PersonPatch, actor: str = Depends(admin)) -> PersonOut:
        try:
            return registry.update_person(person_id, patch, actor)
        except KeyError:
            raise HTTPException(404, "no such person") from None

    @app.post("/v1/admin/persons/{person_id}/documents", response_model=PersonOut, status_code=201)
    def add_document(person_id: int, d: DocumentIn, actor: str = Depends(admin)) -> PersonOut:
        try:
            return registry.add_document(person_id, d, actor)
        except KeyError:
            raise HTTPException(404, "no such person") from None
        except sa.exc.IntegrityError:
            raise HTTPException(409, "document already registered") from None

    @app.post("/v1/admin/documents/status", response_model=PersonOut)
    def set_status(change: DocumentStatusChange, actor: str = Depends(admin)) -> PersonOut:
        try:
            return registry.set_document_status(change.number, change.issuing_state, change.status, actor)
        except KeyError:
            raise HTTPException(404, "no such document") from None

    return app


# ---------------------------------------------------------------- CLI: python -m gate identity ...

def _cli(args) -> int:
    from gate.config import Settings

    settings = Settings()
    if args.identity_cmd == "serve":
        import ssl

        import uvicorn
        app = create_app(settings.identity.service_database_url, settings.identity.admin_token)
        uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    ssl_ca_certs=args.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED if args.client_ca else ssl.CERT_NONE)
        return 0
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = IdentityRegistry(settings.identity.service_database_url)
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.identity_cmd == "changes":
            for c in registry.changes(args.limit):
                print(f"{c.at.isoformat()}  {c.actor}  {c.action}  {c.target}  {c.detail}")
            return 0
        if args.identity_cmd == "seed":
            people = registry.seed()
        elif args.identity_cmd == "add-person":
            docs = [DocumentIn(number=args.document, issuing_state=args.issuing_state,
                               document_type=args.document_type, date_of_expiry=args.expiry)] if args.document else []
            people = [registry.add_person(PersonIn(
                surname=args.surname, given_names=args.given_names, date_of_birth=args.dob,
                nationality=args.nationality, exit_ban=args.exit_ban, watch_list=args.watch_list, documents=docs),
                actor)]
        elif args.identity_cmd == "set-status":
            people = [registry.set_document_status(args.document, args.issuing_state, DocumentStatus(args.status),
                                                   actor)]
        elif args.identity_cmd == "set-flags":
            people = [registry.update_person(args.person_id, PersonPatch(exit_ban=args.exit_ban,
                                                                         watch_list=args.watch_list), actor)]
        else:
            people = registry.list_persons()
    except KeyError:
        print("no such record")
        return 1
    except sa.exc.IntegrityError:
        print("document already registered")
        return 1
    finally:
        registry.close()
    for p in people:
        flags = ",".join(f for f in ("exit_ban", "watch_list") if getattr(p, f)) or "-"
        docs = " ".join(f"{d.issuing_state}:{d.number}:{d.status.value}" for d in p.documents)
        print(f"{p.id:4d}  {p.surname}, {p.given_names}  {p.date_of_birth}  {flags}  {docs}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("identity", help="run and administer the reference identity service")
    sub = p.add_subparsers(dest="identity_cmd", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--tls-cert", help="server certificate (PEM); enables HTTPS")
    serve.add_argument("--tls-key")
    serve.add_argument("--client-ca", help="CA bundle; when given, clients must present a certificate")
    sub.add_parser("seed", help="add the demo traveller and one person per status")
    sub.add_parser("list", help="list persons and their documents")
    ch = sub.add_parser("changes", help="the latest administrative changes (who, when, what)")
    ch.add_argument("--limit", type=int, default=50)
    add = sub.add_parser("add-person", help="add a person, optionally with a document")
    add.add_argument("--surname", required=True)
    add.add_argument("--given-names", default="")
    add.add_argument("--dob", type=date.fromisoformat, help="YYYY-MM-DD")
    add.add_argument("--nationality")
    add.add_argument("--document", help="document number")
    add.add_argument("--issuing-state", default="UTO")
    add.add_argument("--document-type", default="P")
    add.add_argument("--expiry", type=date.fromisoformat)
    add.add_argument("--exit-ban", action="store_true")
    add.add_argument("--watch-list", action="store_true")
    st = sub.add_parser("set-status", help="set a document's status")
    st.add_argument("--document", required=True)
    st.add_argument("--issuing-state", required=True)
    st.add_argument("--status", required=True, choices=[s.value for s in DocumentStatus])
    fl = sub.add_parser("set-flags", help="set or clear a person's exit ban / watch-list flag")
    fl.add_argument("--person-id", type=int, required=True)
    fl.add_argument("--exit-ban", type=lambda v: v == "yes", choices=[True, False], metavar="yes|no")
    fl.add_argument("--watch-list", type=lambda v: v == "yes", choices=[True, False], metavar="yes|no")
    p.set_defaults(func=_cli)
