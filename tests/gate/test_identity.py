"""The identity seam: the reference registry's answers, its HTTP API, and the
gate's HTTP client under timeouts, retries, refusals, garbage and mutual TLS."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient

from gate.identity import (DocumentQuery, HttpIdentityService, IdentityAnswer, IdentityService, PersonQuery,
                           normalise_document_number, normalise_name)
from gate.identity_service import PERSONAS, SEED_PEOPLE, IdentityRegistry, PersonIn, create_app

CHECKOUT = Path(__file__).resolve().parents[2]
TOKEN = "admin-secret-token"
# the answer each seeded person must get, by surname
EXPECTED = {"Eriksson": ("clear", []), "Nguyen": ("revoked", ["document_revoked"]),
            "Tran": ("lost_stolen", ["document_lost"]), "Le": ("lost_stolen", ["document_stolen"]),
            "Pham": ("exit_ban", ["exit_ban"]), "Hoang": ("watch_list", ["watch_list_hit"])}


def mrz_style(p) -> tuple[PersonQuery, DocumentQuery]:
    """Queries as the gate builds them from an MRZ: upper case, '<' fillers."""
    d = p.documents[0]
    return (PersonQuery(surname=p.surname.upper(), given_names=p.given_names.upper().replace(" ", "<"),
                        date_of_birth=p.date_of_birth, nationality="UTO"),
            DocumentQuery(document_number=d.number.ljust(9, "<"), issuing_state=d.issuing_state,
                          document_type=d.document_type, date_of_expiry=d.date_of_expiry))


def persona_queries(name: str) -> tuple[PersonQuery, DocumentQuery]:
    d = json.loads((PERSONAS / f"{name}.json").read_text())
    return (PersonQuery(surname=d["surname"], given_names=d["given_names"],
                        date_of_birth=date.fromisoformat(d["date_of_birth"])),
            DocumentQuery(document_number=d["document_number"], issuing_state=d["issuing_state"]))


@pytest.fixture
def registry(database_url):
    r = IdentityRegistry(database_url)
    r.seed()
    yield r
    r.close()


@pytest.fixture
def sqlite_registry(tmp_path):
    """For the network tests, where the database behind the registry is not the point."""
    r = IdentityRegistry(f"sqlite:///{tmp_path / 'identity.db'}")
    r.seed()
    yield r
    r.close()


# ---------------------------------------------------------------- the registry's logic

def test_normalisation():
    assert normalise_name("NGUYEN<<VAN<AN") == normalise_name("Nguyễn  Văn-An") == "NGUYEN VAN AN"
    assert normalise_name("Đặng Thị Ánh") == "DANG THI ANH"
    assert normalise_document_number("ud 4718-253<<") == "UD4718253"


@pytest.mark.parametrize("surname", list(EXPECTED))
def test_each_seeded_status_is_answered(registry, surname):
    person = next(p for p in registry.list_persons() if p.surname == surname)
    answer = registry.check(*mrz_style(person))
    assert (answer.outcome, answer.reasons) == EXPECTED[surname]


def test_seeded_demo_traveller_is_clear_and_seed_is_idempotent(registry):
    if not (PERSONAS / "demo.json").is_file():
        pytest.skip("demo persona not written yet")
    assert registry.check(*persona_queries("demo")) == IdentityAnswer(outcome="clear", reasons=[])
    before = len(registry.list_persons())
    assert registry.seed() == []
    assert len(registry.list_persons()) == before == len(list(PERSONAS.glob("*.json"))) + len(SEED_PEOPLE)


def test_names_cut_by_the_mrz_still_match(registry):
    registry.add_person(PersonIn(surname="Nguyen", given_names="Thi Ngoc Phuong Thao Anh",
                                 date_of_birth=date(1990, 4, 1), watch_list=True))
    cut = "NGUYEN<<THI<NGOC<PHUONG<THAO<A"            # TD1 line 3: 30 characters, truncated
    surname, given = cut.split("<<")
    doc = DocumentQuery(document_number="ZZ0000000", issuing_state="UTO")
    answer = registry.check(PersonQuery(surname=surname, given_names=given, date_of_birth=date(1990, 4, 1)), doc)
    assert answer.outcome == "watch_list"
    short = PersonQuery(surname="Nguyen", given_names="Thi", date_of_birth=date(1990, 4, 1))
    assert registry.check(short, doc).outcome == "not_found"   # an untruncated prefix is another person


def test_unknown_document_and_person(registry):
    answer = registry.check(PersonQuery(surname="Nobody", given_names="At All", date_of_birth=date(1990, 1, 1)),
                            DocumentQuery(document_number="ZZ0000000", issuing_state="UTO"))
    assert answer.outcome == "not_found" and answer.reasons == ["document_not_found", "person_not_found"]


def test_document_of_someone_else_is_a_holder_mismatch(registry):
    people = {p.surname: p for p in registry.list_persons()}
    eriksson_person, _ = mrz_style(people["Eriksson"])
    _, banned_doc = mrz_style(people["Pham"])
    answer = registry.check(eriksson_person, banned_doc)
    assert answer.outcome == "exit_ban"                 # the holder's own flags still count
    assert "holder_mismatch" in answer.reasons


def test_same_number_from_another_state_is_another_document(registry):
    person, doc = mrz_style(next(p for p in registry.list_persons() if p.surname == "Nguyen"))
    answer = registry.check(person, doc.model_copy(update={"issuing_state": "D"}))
    assert answer.outcome == "not_found" and "document_not_found" in answer.reasons


def test_person_flags_apply_even_with_an_unknown_document(registry):
    person, _ = mrz_style(next(p for p in registry.list_persons() if p.surname == "Hoang"))
    answer = registry.check(person, DocumentQuery(document_number="NEW000001", issuing_state="UTO"))
    assert answer.outcome == "watch_list"


def test_broken_registry_answers_unavailable(registry):
    person, doc = mrz_style(registry.list_persons()[0])
    with registry.engine.begin() as c:
        c.execute(sa.text("DROP TABLE documents"))
    assert registry.check(person, doc).outcome == "unavailable"


def test_queries_hide_personal_data():
    person, doc = persona_queries("demo") if (PERSONAS / "demo.json").is_file() else (
        PersonQuery(surname="Collins", given_names="Eileen"), DocumentQuery(document_number="UD4718253",
                                                                           issuing_state="UTO"))
    for text in (repr(person), str(person), repr(doc), f"{doc}"):
        assert "Collins" not in text and "UD4718253" not in text and "hidden" in text


# ---------------------------------------------------------------- the HTTP application

@pytest.fixture
def client(registry):
    return TestClient(create_app("", TOKEN, registry=registry))


def test_api_check_and_admin_round_trip(client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"person": {"surname": "Vo", "given_names": "Thi Sau", "date_of_birth": "1995-02-14"},
            "document": {"document_number": "N1234567", "issuing_state": "VNM"}}
    assert client.post("/v1/check", json=body).json()["outcome"] == "not_found"
    new = {"surname": "Võ", "given_names": "Thị Sáu", "date_of_birth": "1995-02-14", "nationality": "VNM",
           "documents": [{"number": "N1234567", "issuing_state": "VNM", "document_type": "ID"}]}
    r = client.post("/v1/admin/persons", json=new, headers=auth)
    assert r.status_code == 201
    person_id = r.json()["id"]
    assert client.post("/v1/check", json=body).json() == {"outcome": "clear", "reasons": []}
    assert client.post("/v1/admin/persons", json=new, headers=auth).status_code == 409
    r = client.post("/v1/admin/documents/status", headers=auth,
                    json={"number": "N1234567", "issuing_state": "VNM", "status": "stolen"})
    assert r.status_code == 200 and r.json()["documents"][0]["status"] == "stolen"
    assert client.post("/v1/check", json=body).json()["outcome"] == "lost_stolen"
    r = client.patch(f"/v1/admin/persons/{person_id}", json={"exit_ban": True}, headers=auth)
    assert r.json()["exit_ban"] is True
    assert client.post("/v1/check", json=body).json() == {"outcome": "lost_stolen",
                                                          "reasons": ["document_stolen", "exit_ban"]}
    assert client.patch("/v1/admin/persons/99999", json={"exit_ban": True}, headers=auth).status_code == 404
    assert any(p["id"] == person_id for p in client.get("/v1/admin/persons", headers=auth).json())


def test_admin_api_needs_the_token(client, registry):
    assert client.get("/v1/admin/persons").status_code == 401
    assert client.get("/v1/admin/persons", headers={"Authorization": "Bearer wrong"}).status_code == 401
    disabled = TestClient(create_app("", None, registry=registry))
    assert disabled.get("/v1/admin/persons", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_api_rejects_malformed_requests(client):
    assert client.post("/v1/check", json={"person": {}}).status_code == 422


# ---------------------------------------------------------------- the HTTP client against a real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The reference app under uvicorn in a thread, on a real socket."""

    def __init__(self, app, **ssl):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **ssl))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_client_gets_every_answer_from_the_running_service(sqlite_registry):
    registry = sqlite_registry
    with Served(create_app("", TOKEN, registry=registry)) as srv:
        svc = HttpIdentityService(f"http://127.0.0.1:{srv.port}", timeout_s=5)
        assert isinstance(svc, IdentityService)
        for p in registry.list_persons():
            if p.surname in EXPECTED:
                answer = svc.check(*mrz_style(p))
                assert (answer.outcome, answer.reasons) == EXPECTED[p.surname]
        svc.close()


def test_connection_refused_is_unavailable_after_retries():
    sleeps: list[float] = []
    svc = HttpIdentityService(f"http://127.0.0.1:{_free_port()}", retries=2, sleep=sleeps.append, rng=lambda: 1.0)
    answer = svc.check(PersonQuery(surname="X"), DocumentQuery(document_number="1", issuing_state="UTO"))
    assert answer.outcome == "unavailable" and answer.reasons == ["connect_error", "attempts_3"]
    assert sleeps == [0.1, 0.2]


def test_silent_server_times_out_within_the_budget():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)                       # accepts connections, never answers
        svc = HttpIdentityService(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.3, retries=1,
                                  backoff_base_s=0.05)
        start = time.monotonic()
        answer = svc.check(PersonQuery(surname="X"), DocumentQuery(document_number="1", issuing_state="UTO"))
        took = time.monotonic() - start
    assert answer.outcome == "unavailable" and answer.reasons[0] == "timeout"
    assert 0.6 <= took < 2.0


# ---------------------------------------------------------------- the HTTP client's retry policy

Q = (PersonQuery(surname="Collins"), DocumentQuery(document_number="UD4718253", issuing_state="UTO"))


def scripted(*responses):
    """A transport that plays the given responses/exceptions in order and counts calls."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        r = responses[min(len(calls), len(responses)) - 1]
        if isinstance(r, Exception):
            raise r
        return r

    return httpx.MockTransport(handler), calls


def svc_with(transport, retries=3):
    sleeps: list[float] = []
    svc = HttpIdentityService("http://identity.test", retries=retries, transport=transport,
                              sleep=sleeps.append, rng=lambda: 1.0, backoff_base_s=0.1, backoff_max_s=0.3)
    return svc, sleeps


CLEAR = httpx.Response(200, json={"outcome": "clear", "reasons": []})


def test_5xx_is_retried_with_capped_exponential_backoff():
    transport, calls = scripted(httpx.Response(503), httpx.Response(500), httpx.Response(502), CLEAR)
    svc, sleeps = svc_with(transport)
    assert svc.check(*Q).outcome == "clear"
    assert len(calls) == 4 and sleeps == [0.1, 0.2, 0.3]


def test_persistent_5xx_gives_unavailable():
    transport, calls = scripted(httpx.Response(503))
    svc, sleeps = svc_with(transport, retries=2)
    answer = svc.check(*Q)
    assert answer.outcome == "unavailable" and answer.reasons == ["server_error_503", "attempts_3"]
    assert len(calls) == 3


def test_4xx_is_never_retried():
    transport, calls = scripted(httpx.Response(422, json={"detail": "bad"}), CLEAR)
    svc, sleeps = svc_with(transport)
    answer = svc.check(*Q)
    assert answer.outcome == "unavailable" and answer.reasons == ["rejected_422"]
    assert len(calls) == 1 and sleeps == []


def test_timeouts_and_connect_errors_are_retried():
    transport, calls = scripted(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), CLEAR)
    svc, sleeps = svc_with(transport)
    assert svc.check(*Q).outcome == "clear" and len(calls) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("body", [b"not json", b'{"outcome": "maybe"}', b"[]", b'{"reasons": []}'])
def test_malformed_body_is_unavailable(body):
    transport, calls = scripted(httpx.Response(200, content=body))
    svc, _ = svc_with(transport)
    assert svc.check(*Q) == IdentityAnswer(outcome="unavailable", reasons=["malformed_response"])
    assert len(calls) == 1


def test_jitter_stays_under_the_exponential_bound():
    svc = HttpIdentityService("http://identity.test", backoff_base_s=0.1, backoff_max_s=1.0)
    delays = [svc._backoff(a) for a in range(6) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays) and len(set(delays)) > 10


def test_request_carries_the_queries():
    transport, calls = scripted(CLEAR)
    svc, _ = svc_with(transport)
    svc.check(PersonQuery(surname="Collins", date_of_birth=date(1976, 11, 19)),
              DocumentQuery(document_number="UD4718253", issuing_state="UTO", date_of_expiry=date(2031, 11, 19)))
    sent = json.loads(calls[0].content)
    assert calls[0].url.path == "/v1/check"
    assert sent["person"]["date_of_birth"] == "1976-11-19" and sent["document"]["issuing_state"] == "UTO"


# ---------------------------------------------------------------- mutual TLS

def _cert(subject: str, key, issuer_cert=None, issuer_key=None, *, ca=False, server=False):
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer_cert.subject if issuer_cert else name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, cert, key=None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def test_mutual_tls(sqlite_registry, tmp_path):
    registry = sqlite_registry
    ca_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("Test identity CA", ca_key, ca=True)
    ca_pem = _write(tmp_path / "ca.pem", ca)
    srv_pem = _write(tmp_path / "server.pem", _cert("identity", srv_key, ca, ca_key, server=True), srv_key)
    cli_pem = _write(tmp_path / "client.pem", _cert("gate-01", cli_key, ca, ca_key), cli_key)
    import ssl
    app = create_app("", TOKEN, registry=registry)
    with Served(app, ssl_certfile=str(srv_pem), ssl_keyfile=str(srv_pem.with_suffix(".key")),
                ssl_ca_certs=str(ca_pem), ssl_cert_reqs=ssl.CERT_REQUIRED) as srv:
        url = f"https://127.0.0.1:{srv.port}"
        person = next(p for p in registry.list_persons() if p.surname == "Pham")
        good = HttpIdentityService(url, ca_bundle=ca_pem, client_cert=cli_pem,
                                   client_key=cli_pem.with_suffix(".key"), retries=0)
        anonymous = HttpIdentityService(url, ca_bundle=ca_pem, retries=0, timeout_s=2)
        untrusting = HttpIdentityService(url, client_cert=cli_pem, client_key=cli_pem.with_suffix(".key"),
                                         retries=0, timeout_s=2)
        try:
            assert good.check(*mrz_style(person)).outcome == "exit_ban"
            assert anonymous.check(*mrz_style(person)).outcome == "unavailable"
            assert untrusting.check(*mrz_style(person)).outcome == "unavailable"
        finally:
            for svc in (good, anonymous, untrusting):
                svc.close()


# ---------------------------------------------------------------- wiring

def test_connect_runs_the_seeded_registry_in_process(tmp_path, monkeypatch):
    from gate.config import Settings
    from gate.identity import connect
    monkeypatch.setenv("EGATE_DATA_DIR", str(tmp_path))
    svc = connect(Settings())
    assert isinstance(svc, IdentityRegistry) and isinstance(svc, IdentityService)
    assert (tmp_path / "identity.db").is_file()
    pham = next(p for p in svc.list_persons() if p.surname == "Pham")
    assert svc.check(*mrz_style(pham)).outcome == "exit_ban"
    monkeypatch.setenv("EGATE_IDENTITY__URL", "https://identity.example")
    assert isinstance(connect(Settings()), HttpIdentityService)


# ---------------------------------------------------------------- admin CLI

@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    env = {"EGATE_DATA_DIR": str(tmp_path), "EGATE_IDENTITY__ADMIN_TOKEN": TOKEN}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **env}


def identity_cli(capsys, *argv: str) -> tuple[int, str]:
    """`python -m gate identity ...`, parsed and run in this process."""
    import argparse

    from gate import identity_service
    parser = argparse.ArgumentParser()
    identity_service.register(parser.add_subparsers())
    args = parser.parse_args(["identity", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def test_admin_cli(cli_env, capsys):
    assert identity_cli(capsys, "seed")[0] == 0
    code, out = identity_cli(capsys, "add-person", "--surname", "Vo", "--given-names", "Thi Sau", "--dob",
                             "1995-02-14", "--document", "N1234567", "--issuing-state", "VNM", "--document-type", "ID")
    assert code == 0 and "VNM:N1234567:valid" in out
    person_id = out.split()[0]
    code, out = identity_cli(capsys, "set-status", "--document", "N1234567", "--issuing-state", "VNM",
                             "--status", "revoked")
    assert code == 0 and "VNM:N1234567:revoked" in out
    code, out = identity_cli(capsys, "set-flags", "--person-id", person_id, "--exit-ban", "yes")
    assert code == 0 and "exit_ban" in out
    assert identity_cli(capsys, "set-status", "--document", "NOPE", "--issuing-state", "VNM",
                        "--status", "lost")[0] == 1
    assert identity_cli(capsys, "add-person", "--surname", "Dup", "--document", "N1234567",
                        "--issuing-state", "VNM")[0] == 1
    listing = identity_cli(capsys, "list")[1]
    assert "Vo, Thi Sau" in listing and "Pham, Quoc Dung" in listing
    registry = IdentityRegistry(f"sqlite:///{Path(cli_env['EGATE_DATA_DIR']) / 'identity.db'}")
    answer = registry.check(PersonQuery(surname="VO", given_names="THI<SAU", date_of_birth=date(1995, 2, 14)),
                            DocumentQuery(document_number="N1234567<", issuing_state="VNM"))
    registry.close()
    assert answer == IdentityAnswer(outcome="revoked", reasons=["document_revoked", "exit_ban"])


def test_serve_command_answers_the_http_client(cli_env, capsys):
    assert identity_cli(capsys, "seed")[0] == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gate", "identity", "serve", "--port", str(port)],
                            env=cli_env, cwd=CHECKOUT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        svc = HttpIdentityService(f"http://127.0.0.1:{port}")
        answer = svc.check(PersonQuery(surname="HOANG", given_names="GIA<EM", date_of_birth=date(1983, 5, 30)),
                           DocumentQuery(document_number="W0000005E", issuing_state="UTO"))
        assert answer.outcome == "watch_list"
        listing = httpx.get(f"http://127.0.0.1:{port}/v1/admin/persons", headers={"Authorization": f"Bearer {TOKEN}"})
        assert listing.status_code == 200 and len(listing.json()) >= len(SEED_PEOPLE)
        svc.close()
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- schema and change log

def test_registry_schema_comes_from_its_own_migrations(registry):
    """Alembic, not create_all: its own version table (apart from the audit trail's), no drift."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gate.identity_service import Base
    with registry.engine.connect() as c:
        assert c.execute(sa.text("SELECT version_num FROM identity_alembic_version")).scalar() == "0002"
        assert "audit_alembic_version" not in sa.inspect(c).get_table_names()
        ctx = MigrationContext.configure(c, opts={"version_table": "identity_alembic_version"})
        assert compare_metadata(ctx, Base.metadata) == []


def test_a_registry_made_by_create_all_is_adopted(tmp_path):
    import sqlalchemy as sa

    from gate.identity_service import Base
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    Base.metadata.tables["persons"].create(old)
    Base.metadata.tables["documents"].create(old)
    old.dispose()
    r = IdentityRegistry(url)
    r.seed()
    assert r.list_persons() and r.changes()
    r.close()


def test_admin_changes_are_logged_with_actor_and_time(client):
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "officer.nguyen"}
    new = {"surname": "Vo", "given_names": "Thi Sau", "date_of_birth": "1995-02-14",
           "documents": [{"number": "N7654321", "issuing_state": "VNM", "document_type": "ID"}]}
    person_id = client.post("/v1/admin/persons", json=new, headers=auth).json()["id"]
    client.post("/v1/admin/documents/status", headers=auth,
                json={"number": "N7654321", "issuing_state": "VNM", "status": "lost"})
    client.patch(f"/v1/admin/persons/{person_id}", json={"watch_list": True},
                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert client.post("/v1/admin/persons", json=new, headers=auth).status_code == 409   # refused: not logged
    changes = client.get("/v1/admin/changes", headers=auth).json()
    assert client.get("/v1/admin/changes").status_code == 401
    mine = [c for c in changes if c["target"] == f"person:{person_id}"]
    assert [(c["actor"], c["action"]) for c in mine] == [
        ("admin-api", "update_person"), ("officer.nguyen", "set_document_status"), ("officer.nguyen", "add_person")]
    assert mine[0]["detail"] == "watch_list=True" and mine[1]["detail"].endswith("valid->lost")
    assert all(c["at"] for c in mine)
    assert "N7654321" not in json.dumps(changes) and "Vo" not in json.dumps(changes)
