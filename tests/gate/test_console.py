"""Officer console: login (argon2, rotation, CSRF, lockout, expiry), roles, the
referral queue with photos, audited overrides, accounts, audit search/export, dashboard.
Accounts, sessions and lockouts live in the audit store's database: every test that
uses `env` runs on SQLite and on PostgreSQL, and a restart keeps them."""
from __future__ import annotations

import hashlib

import numpy as np
from argon2 import PasswordHasher
import pytest
from fastapi.testclient import TestClient
from test_transaction import Answer, Audit, Face, FakeFace, Identity, Reader, Scanner

from gate.audit import AuditKeys, AuditStore
from gate.barrier import SimulatedBarrier
from gate.config import Settings
from gate.station import Gate
from gate.transaction import Devices
from gate.web.app import COOKIE, create_app
from gate.web.auth import Sessions, UserStore

PW = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)   # argon2id, cheap for tests


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def console(tmp_path, database_url, clock, keep_face_images=False, repeat_limit=0):
    """A gate with fake devices and its console, over the audit store at `database_url`
    (calling it again on the same database is a restart). One fake card plays every traveller,
    so the repeat-attempt rule is off unless `repeat_limit` says otherwise."""
    settings = Settings(data_dir=tmp_path, integrator_api=False,
                        transaction={"passage_s": 0.5, "repeat_limit": repeat_limit},
                        audit={"database_url": database_url, "keep_face_images": keep_face_images})
    audit = AuditStore(database_url, AuditKeys.load_or_create(tmp_path / "audit.key"),
                       keep_face_images=keep_face_images)
    devices = Devices(scanner=Scanner(), reader=Reader(), face=Face(FakeFace(
        outcome="no_match", score=0.1, best_frame=np.full((40, 30, 3), 128, np.uint8))),
        identity=Identity(Answer("clear")), audit=audit, barrier=SimulatedBarrier(auto_pass_after=0.01))
    gate = Gate(settings, devices=devices)
    users = UserStore(audit, FAST)
    sessions = Sessions(users, idle_s=60, absolute_s=600, max_failures=3, lockout_base_s=30, clock=clock)
    return gate, audit, users, create_app(gate, users, sessions)


@pytest.fixture
def env(tmp_path, database_url):
    clock = Clock()
    gate, audit, users, app = console(tmp_path, database_url, clock)
    for name, role in (("olga", "officer"), ("sam", "supervisor"), ("ada", "auditor")):
        users.add(name, PW, role)
    yield gate, audit, users, clock, app
    audit.close()


def client(app) -> TestClient:
    return TestClient(app, base_url="http://testserver")


def login(c: TestClient, user: str, password: str = PW):
    csrf = c.get("/api/console/session").json()["csrf"]
    return c.post("/api/console/login", json={"username": user, "password": password},
                  headers={"X-CSRF-Token": csrf})


def token(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.get("/api/console/session").json()["csrf"]}


def test_login_rotates_the_session_and_sets_strict_cookies(env):
    *_, app = env
    c = client(app)
    pre = c.get("/api/console/session")
    assert pre.json()["authenticated"] is False
    cookie = pre.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    before = c.cookies[COOKIE]
    r = login(c, "olga")
    assert r.status_code == 200 and r.json()["role"] == "officer"
    assert c.cookies[COOKIE] != before          # no session fixation
    # the old id is dead
    stale = client(app)
    stale.cookies.set(COOKIE, before)
    assert stale.get("/api/console/session").json()["authenticated"] is False


def test_login_needs_the_csrf_token(env):
    *_, app = env
    c = client(app)
    c.get("/api/console/session")
    r = c.post("/api/console/login", json={"username": "olga", "password": PW})
    assert r.status_code == 403


def test_lockout_per_account_and_per_address_with_backoff(env):
    *_, clock, app = env
    c = client(app)
    for _ in range(3):
        assert login(c, "olga", "wrong password!").status_code == 401
    r = login(c, "olga")                     # right password, but locked
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 30
    assert login(c, "sam").status_code == 429  # the address is locked too
    clock.t += 31
    assert login(c, "olga").status_code == 200
    # a further failure after lockout doubles the wait
    c2 = client(app)
    for _ in range(3):
        login(c2, "sam", "nope nope nope")
    assert login(c2, "sam").status_code == 429      # refused while locked, not counted
    clock.t += 31
    assert login(c2, "sam", "nope nope nope").status_code == 401
    assert int(login(c2, "sam").headers["Retry-After"]) >= 60


def test_idle_and_absolute_expiry(env):
    *_, clock, app = env
    c = client(app)
    login(c, "olga")
    clock.t += 59
    assert c.get("/api/console/referrals").status_code == 200
    clock.t += 61
    assert c.get("/api/console/referrals").status_code == 401
    login(c, "olga")
    for _ in range(12):
        clock.t += 55
        c.get("/api/console/referrals")
    assert c.get("/api/console/referrals").status_code == 401   # absolute 600 s passed


def test_referral_queue_shows_photos_and_override_is_audited(env):
    gate, audit, *_, app = env
    rec = gate.run_transaction()
    assert rec.outcome == "referred" and "face.no_match" in rec.reasons
    anon = client(app)
    assert anon.get("/api/console/referrals").status_code == 401
    assert anon.get(f"/api/console/referrals/{rec.id}/photo/chip").status_code == 401
    c = client(app)
    login(c, "olga")
    q = c.get("/api/console/referrals").json()
    assert [x["id"] for x in q] == [rec.id]
    assert q[0]["traveller"]["primary_identifier"] == "COLLINS" and q[0]["has_live_photo"]
    assert c.get(f"/api/console/referrals/{rec.id}/photo/live").headers["content-type"] == "image/jpeg"
    assert c.get(f"/api/console/referrals/{rec.id}/photo/chip").content == b"\xff\xd8chip"
    url = f"/api/console/referrals/{rec.id}/override"
    assert c.post(url, json={"action": "open", "reason": "checked passport by hand"}).status_code == 403
    assert c.post(url, json={"action": "open", "reason": ""}, headers=token(c)).status_code == 422
    r = c.post(url, json={"action": "open", "reason": "checked passport by hand"}, headers=token(c))
    assert r.status_code == 200 and r.json()["resolved"] == "open"
    overrides = audit.search(event_type="override")
    assert len(overrides) == 1 and overrides[0].actor == "olga" and overrides[0].outcome == "open"
    assert overrides[0].checks["reason"] == "checked passport by hand"
    assert "face.no_match" in overrides[0].reason_codes
    assert [e for _, e in gate.devices.barrier.history][:1] == ["open"]
    # resolved: personal data gone, queue empty, no second override
    assert rec.personal.chip_face_jpeg is None
    assert c.get("/api/console/referrals").json() == []
    assert c.post(url, json={"action": "deny", "reason": "again"}, headers=token(c)).status_code == 409


def test_role_separation(env):
    gate, *_, app = env
    rec = gate.run_transaction()
    auditor, officer, sup = client(app), client(app), client(app)
    login(auditor, "ada")
    login(officer, "olga")
    login(sup, "sam")
    url = f"/api/console/referrals/{rec.id}/override"
    assert auditor.post(url, json={"action": "open", "reason": "no"}, headers=token(auditor)).status_code == 403
    assert auditor.get("/api/console/referrals").status_code == 403
    assert officer.get("/api/console/audit").status_code == 403
    assert officer.get("/api/console/audit/export").status_code == 403
    assert sup.get("/api/console/audit/export").status_code == 403
    assert officer.get("/api/console/users").status_code == 403
    assert officer.get("/api/console/dashboard").status_code == 403
    assert auditor.get("/api/console/audit").status_code == 200


def test_supervisor_only_override_policy(tmp_path):
    settings = Settings(data_dir=tmp_path, integrator_api=False, policy={"override_role": "supervisor"})
    devices = Devices(scanner=Scanner(), reader=Reader(), face=Face(FakeFace(outcome="no_match", score=0.1)),
                      identity=Identity(), audit=Audit(), barrier=SimulatedBarrier(auto_pass_after=0.01))
    gate = Gate(settings, devices=devices)
    users = UserStore.in_dir(tmp_path, FAST)
    users.add("olga", PW, "officer")
    users.add("sam", PW, "supervisor")
    app = create_app(gate, users)
    rec = gate.run_transaction()
    officer, sup = client(app), client(app)
    assert login(officer, "olga").json()["can_override"] is False
    login(sup, "sam")
    url = f"/api/console/referrals/{rec.id}/override"
    assert officer.post(url, json={"action": "deny", "reason": "x y z"}, headers=token(officer)).status_code == 403
    assert sup.post(url, json={"action": "deny", "reason": "x y z"}, headers=token(sup)).status_code == 200
    assert gate.devices.barrier.history == []      # deny never touches the barrier


def test_override_refused_when_the_audit_is_down(tmp_path):
    settings = Settings(data_dir=tmp_path, integrator_api=False)
    audit = Audit()
    devices = Devices(scanner=Scanner(), reader=Reader(), face=Face(FakeFace(outcome="no_match", score=0.1)),
                      identity=Identity(), audit=audit, barrier=SimulatedBarrier(auto_pass_after=0.01))
    gate = Gate(settings, devices=devices)
    users = UserStore.in_dir(tmp_path, FAST)
    users.add("olga", PW, "officer")
    app = create_app(gate, users)
    rec = gate.run_transaction()
    audit.fail_on = {"*"}
    c = client(app)
    login(c, "olga")
    r = c.post(f"/api/console/referrals/{rec.id}/override", json={"action": "open", "reason": "ok by me"},
               headers=token(c))
    assert r.status_code == 503
    assert gate.devices.barrier.history == []


def test_supervisor_manages_accounts(env):
    _, _, users, _, app = env
    sup = client(app)
    login(sup, "sam")
    r = sup.post("/api/console/users", json={"username": "nina", "password": "short", "role": "officer"},
                 headers=token(sup))
    assert r.status_code == 400
    r = sup.post("/api/console/users", json={"username": "nina", "password": PW, "role": "officer"},
                 headers=token(sup))
    assert r.status_code == 201
    nina = client(app)
    assert login(nina, "nina").status_code == 200
    r = sup.post("/api/console/users/nina/disabled", json={"disabled": True}, headers=token(sup))
    assert r.json()["disabled"] is True
    assert nina.get("/api/console/referrals").status_code == 401        # sessions dropped
    assert login(client(app), "nina").status_code == 401
    stored = users.engine.connect().exec_driver_sql("select password_hash from console_users").fetchall()
    assert all(h.startswith("$argon2id$") for (h,) in stored)


def test_auditor_searches_and_exports(env):
    gate, *_, app = env
    rec = gate.run_transaction()
    c = client(app)
    login(c, "ada")
    rows = c.get("/api/console/audit", params={"reason": "face.no_match"}).json()
    assert [r["transaction_id"] for r in rows] == [rec.id]
    assert c.get("/api/console/audit", params={"reason": "identity.revoked"}).json() == []
    by_doc = c.get("/api/console/audit", params={"document_number": "000123456"}).json()
    assert rec.id in {r["transaction_id"] for r in by_doc}
    csv = c.get("/api/console/audit/export", params={"format": "csv"})
    assert csv.status_code == 200 and rec.id in csv.text and "000123456" not in csv.text
    jl = c.get("/api/console/audit/export")
    assert rec.id in jl.text and "COLLINS" not in jl.text


def test_dashboard_counts_outcomes_and_reasons(env):
    gate, *_, app = env
    gate.run_transaction()
    gate.devices.face.result = FakeFace()
    gate.run_transaction()
    c = client(app)
    login(c, "sam")
    d = c.get("/api/console/dashboard").json()
    assert d["totals"]["transactions"] == 2 and d["totals"]["passed"] == 1 and d["totals"]["referred"] == 1
    assert d["reasons"] == {"face.no_match": 1}        # checks not reached after it are not counted
    assert sum(p["passed"] + p["referred"] for p in d["series"]) == 2


def test_console_page_is_self_contained(env):
    *_, app = env
    c = client(app)
    page = c.get("/console").text
    assert "http://" not in page and "https://" not in page
    assert c.get("/static/console.js").status_code == 200
    assert c.get("/static/../app.py").status_code == 404


# --- accounts, sessions and lockouts in the database ---------------------------------------------

def test_sessions_and_lockouts_survive_a_restart(tmp_path, database_url):
    clock = Clock()
    gate, audit, users, app = console(tmp_path, database_url, clock)
    users.add("olga", PW, "officer")
    users.add("ada", PW, "auditor")
    c = client(app)
    assert login(c, "olga").status_code == 200
    cookie = c.cookies[COOKIE]
    for _ in range(3):
        login(client(app), "ada", "not her password")
    audit.close()

    _, audit2, users2, app2 = console(tmp_path, database_url, clock)   # the restarted gate
    try:
        again = client(app2)
        again.cookies.set(COOKIE, cookie)
        assert again.get("/api/console/referrals").status_code == 200
        assert again.get("/api/console/session").json()["username"] == "olga"
        assert login(client(app2), "ada").status_code == 429          # still locked out
        with audit2.engine.connect() as db:
            stored = [h for (h,) in db.exec_driver_sql("SELECT token_hash FROM console_sessions")]
        assert stored == [hashlib.sha256(cookie.encode()).hexdigest()]   # only the token's hash
        clock.t += 61                                                  # idle expiry holds across restarts
        assert again.get("/api/console/referrals").status_code == 401
        assert login(client(app2), "ada").status_code == 200           # the lockout has passed
        assert [(r.actor, r.outcome) for r in audit2.search(event_type="officer_login")] == [
            ("olga", "officer"), ("ada", "auditor")]
    finally:
        audit2.close()


def test_visitors_leave_no_rows_and_old_failures_are_forgotten(env):
    _, audit, _, clock, app = env
    for _ in range(20):
        assert client(app).get("/api/console/session").json()["authenticated"] is False
    def rows(table):
        with audit.engine.connect() as db:
            return db.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
    assert rows("console_sessions") == 0
    c = client(app)
    c.cookies.set(COOKIE, "not-a-token")                  # a malformed cookie is replaced, not trusted
    r = c.get("/api/console/session")
    assert r.json()["authenticated"] is False and r.headers["set-cookie"].startswith(f"{COOKIE}=")
    for _ in range(2):
        login(client(app), "olga", "wrong password!")
    assert rows("console_login_failures") == 2            # the account and the address
    clock.t += 25 * 3600                                   # a day later, two failures are old news
    login(client(app), "sam", "wrong password!")
    login(client(app), "olga", "wrong password!")
    assert login(client(app), "olga").status_code == 200  # 1 + 1 failures, not 3: not locked


def test_a_fleet_shares_accounts_sessions_and_lockouts(tmp_path, database_url):
    """Two gates on one database: what a supervisor does at one holds at the other at once."""
    clock = Clock()
    _, audit_a, users, app_a = console(tmp_path, database_url, clock)
    _, audit_b, _, app_b = console(tmp_path, database_url, clock)
    try:
        for name, role in (("olga", "officer"), ("omar", "officer"), ("sam", "supervisor")):
            users.add(name, PW, role)
        sup, olga_b, omar_b = client(app_a), client(app_b), client(app_b)
        login(sup, "sam")
        assert login(olga_b, "olga").status_code == 200 and login(omar_b, "omar").status_code == 200
        # a role change applies at the next request, at the other gate too
        assert sup.post("/api/console/users/olga/role", json={"role": "auditor"}, headers=token(sup)).status_code == 200
        assert olga_b.get("/api/console/referrals").status_code == 403
        assert olga_b.get("/api/console/audit").status_code == 200
        # disabled at gate A: the session at gate B ends, and so do logins there
        assert sup.post("/api/console/users/olga/disabled", json={"disabled": True},
                        headers=token(sup)).json()["disabled"] is True
        assert olga_b.get("/api/console/audit").status_code == 401
        assert login(client(app_b), "olga").status_code == 401
        # a new password ends every session of the account; the new password works
        assert sup.post("/api/console/users/omar/password", json={"password": "short"},
                        headers=token(sup)).status_code == 400
        r = sup.post("/api/console/users/omar/password", json={"password": "a brand new secret"}, headers=token(sup))
        assert r.status_code == 200
        assert omar_b.get("/api/console/referrals").status_code == 401
        assert login(client(app_b), "omar").status_code == 401
        assert login(client(app_b), "omar", "a brand new secret").status_code == 200
        # failures at gate A lock the account at gate B
        for _ in range(3):
            login(client(app_a), "omar", "wrong wrong wrong")
        assert login(client(app_b), "omar", "a brand new secret").status_code == 429
    finally:
        audit_a.close()
        audit_b.close()


def test_account_management_is_audited_with_who_did_what_to_whom(env):
    _, audit, users, _, app = env
    sup = client(app)
    login(sup, "sam")
    assert sup.post("/api/console/users", json={"username": "nina", "password": PW, "role": "officer"},
                    headers=token(sup)).status_code == 201
    sup.post("/api/console/users/nina/role", json={"role": "supervisor"}, headers=token(sup))
    sup.post("/api/console/users/nina/password", json={"password": "another long one"}, headers=token(sup))
    sup.post("/api/console/users/nina/disabled", json={"disabled": True}, headers=token(sup))
    sup.post("/api/console/users/nina/disabled", json={"disabled": False}, headers=token(sup))
    nina = [(r.actor, r.outcome, {k: v for k, v in r.checks.items() if k != "username"})
            for r in audit.search(event_type="account") if r.checks["username"] == "nina"]
    assert nina == [("sam", "created", {"role": "officer"}),
                    ("sam", "role_changed", {"role": "supervisor", "old_role": "officer"}),
                    ("sam", "password_set", {}), ("sam", "disabled", {}), ("sam", "enabled", {})]
    assert all("another long one" not in str(r.checks) and PW not in str(r.checks)
               for r in audit.search(event_type="account"))
    assert audit.verify().ok
    # a supervisor does not demote, disable or reset themselves here (a fleet keeps its supervisor)
    for path, body in (("role", {"role": "officer"}), ("disabled", {"disabled": True}), ("password", {"password": PW})):
        assert sup.post(f"/api/console/users/sam/{path}", json=body, headers=token(sup)).status_code == 400
    assert sup.post("/api/console/users/nobody/role", json={"role": "officer"}, headers=token(sup)).status_code == 404
    assert users.get("sam").role == "supervisor"


def test_every_user_changes_their_own_password_after_proving_the_current_one(env):
    _, audit, users, clock, app = env
    desk, phone = client(app), client(app)
    login(desk, "olga")
    login(phone, "olga")
    url, NEW = "/api/console/password", "a brand new passphrase"
    assert desk.post(url, json={"current_password": PW, "new_password": NEW}).status_code == 403   # no CSRF
    assert desk.post(url, json={"current_password": "not my password", "new_password": NEW},
                     headers=token(desk)).status_code == 403
    for bad in (PW, "short one", "olga-is-my-name-here"):
        r = desk.post(url, json={"current_password": PW, "new_password": bad}, headers=token(desk))
        assert r.status_code == 400, bad
    before = desk.cookies[COOKIE]
    r = desk.post(url, json={"current_password": PW, "new_password": NEW}, headers=token(desk))
    assert r.status_code == 200 and r.json()["username"] == "olga"
    assert desk.cookies[COOKIE] != before                             # rotated: this session goes on
    assert desk.get("/api/console/referrals").status_code == 200
    assert phone.get("/api/console/referrals").status_code == 401      # every other session ended
    assert login(client(app), "olga").status_code == 401
    assert login(client(app), "olga", NEW).status_code == 200
    own = [(r.actor, r.outcome) for r in audit.search(event_type="account") if r.checks["username"] == "olga"]
    assert own[-1] == ("olga", "password_set")
    assert all(NEW not in str(r.checks) for r in audit.search())
    assert audit.verify().ok


def test_a_stolen_session_cannot_guess_the_current_password(env):
    *_, clock, app = env
    thief = client(app)
    login(thief, "olga")
    for _ in range(3):
        r = thief.post("/api/console/password", json={"current_password": "guess guess guess",
                                                      "new_password": "taken over for good"},
                       headers=token(thief))
        assert r.status_code == 403
    r = thief.post("/api/console/password", json={"current_password": PW, "new_password": "taken over for good"},
                   headers=token(thief))
    assert r.status_code == 429                                 # locked like a login, even with the right one
    assert login(client(app), "olga").status_code == 429         # and the account's logins are locked too
    clock.t += 31
    assert login(client(app), "olga").status_code == 200


def test_login_and_logout_are_audited(env):
    _, audit, *_, app = env
    c = client(app)
    login(c, "ada")
    assert c.post("/api/console/logout", headers=token(c)).status_code == 204
    c.post("/api/console/logout", headers=token(c))            # an anonymous logout records nothing
    events = [(r.event_type, r.actor, r.outcome) for r in audit.search()
              if r.event_type in ("officer_login", "officer_logout")]
    assert events == [("officer_login", "ada", "auditor"), ("officer_logout", "ada", "auditor")]


def test_an_account_change_the_audit_cannot_record_is_not_made(env, monkeypatch):
    _, audit, users, _, app = env
    sup = client(app)
    login(sup, "sam")
    import gate.audit as audit_module

    def broken(row):
        raise OSError("disk full")
    monkeypatch.setattr(audit_module, "record_hash", broken)
    r = sup.post("/api/console/users/olga/role", json={"role": "supervisor"}, headers=token(sup))
    assert r.status_code == 503
    r = sup.post("/api/console/users", json={"username": "nina", "password": PW, "role": "officer"},
                 headers=token(sup))
    assert r.status_code == 503
    monkeypatch.undo()
    assert users.get("olga").role == "officer" and users.get("nina") is None


def test_users_cli_changes_are_audited(tmp_path, monkeypatch, capsys):
    import argparse
    import io

    from gate.web import auth
    monkeypatch.setenv("EGATE_DATA_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    auth.register(parser.add_subparsers(dest="command"))

    def run(*argv, stdin=""):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        args = parser.parse_args(["users", *argv])
        return args.func(args)
    assert run("add", "chief", "--role", "supervisor", stdin="a long enough secret\n") == 0
    assert run("role", "chief", "auditor") == 0
    assert run("disable", "chief") == 0
    assert run("role", "ghost", "auditor") == 1
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", AuditKeys.load_or_create(tmp_path / "audit.key"))
    try:
        assert [(r.outcome, r.actor.startswith("cli:")) for r in store.search(event_type="account")] == [
            ("created", True), ("role_changed", True), ("disabled", True)]
    finally:
        store.close()


def test_the_console_fails_closed_when_its_database_is_gone(tmp_path):
    db = tmp_path / "gone.db"
    _, audit, users, app = console(tmp_path, f"sqlite:///{db}", Clock())
    users.add("olga", PW, "officer")
    c = client(app)
    assert login(c, "olga").status_code == 200
    audit.engine.dispose()
    for p in tmp_path.glob("gone.db*"):
        p.unlink()
    assert c.get("/api/console/referrals").status_code == 503        # not signed in by default
    assert login(client(app), "olga").status_code == 503


def test_record_photos_are_for_the_right_roles_only(tmp_path, database_url):
    """keep_face_images on: officers see the images of this lane's referrals, not of
    passed travellers; auditors see both; nobody else; odd ids are refused cleanly."""
    gate, audit, users, app = console(tmp_path, database_url, Clock(), keep_face_images=True)
    try:
        for name, role in (("olga", "officer"), ("ada", "auditor")):
            users.add(name, PW, role)
        referred = gate.run_transaction()
        gate.devices.face.result = FakeFace(best_frame=np.full((40, 30, 3), 90, np.uint8))
        passed = gate.run_transaction()
        assert passed.outcome == "passed"
        [ref_rec] = audit.search(transaction_id=referred.id, event_type="decision")
        [pass_rec] = audit.search(transaction_id=passed.id, event_type="decision")
        assert ref_rec.has_face_image and pass_rec.has_face_image
        assert not any(r.has_face_image for r in audit.search(event_type="passage"))   # once per transaction
        officer, auditor = client(app), client(app)
        login(officer, "olga")
        login(auditor, "ada")
        url = "/api/console/records/{}/photo/{}"
        assert client(app).get(url.format(ref_rec.id, "chip")).status_code == 401
        assert officer.get(url.format(ref_rec.id, "chip")).content == b"\xff\xd8chip"
        assert officer.get(url.format(pass_rec.id, "live")).status_code == 403
        assert auditor.get(url.format(pass_rec.id, "live")).content[:2] == b"\xff\xd8"
        for odd in ("0", "-1", str(2**64), "abc"):
            assert officer.get(url.format(odd, "chip")).status_code == 422
        assert officer.get(url.format(10**6, "chip")).status_code == 404
        assert [(v.actor, v.outcome) for v in audit.search(event_type="face_view")] == [
            ("olga", "chip"), ("ada", "live")]
        assert [x["transaction_id"] for x in officer.get("/api/console/history").json()] == [referred.id]
    finally:
        audit.close()
