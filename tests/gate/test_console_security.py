"""Console security beyond test_console.py: logout and cross-session CSRF, and the
privacy check of a whole run: a real transaction with the demo card through the
simulated lane (PACE, secure messaging, passive authentication, the face models),
then an officer's login, referral view and override, with every log record
written at DEBUG through the production JSON formatter and grepped for the
traveller's name, document number, MRZ lines and DG13 values."""
from __future__ import annotations

import io
import logging
import time

import pytest
from fastapi.testclient import TestClient
from test_console import FAST, PW, client, env, login, token  # noqa: F401  (env is a fixture)

from gate.config import JsonFormatter, Settings
from gate.station import Gate, MovingImageCamera
from gate.web.app import COOKIE, create_app
from gate.web.auth import UserStore


def test_logout_needs_csrf_and_kills_the_session(env):  # noqa: F811
    *_, app = env
    c = client(app)
    login(c, "olga")
    sid = c.cookies[COOKIE]
    assert c.post("/api/console/logout").status_code == 403          # no token: still logged in
    assert c.get("/api/console/referrals").status_code == 200
    assert c.post("/api/console/logout", headers=token(c)).status_code == 204
    replay = client(app)
    replay.cookies.set(COOKIE, sid)
    assert replay.get("/api/console/referrals").status_code == 401   # the old id is dead, not just the cookie


def test_csrf_token_of_another_session_is_refused(env):  # noqa: F811
    gate, *_, app = env
    rec = gate.run_transaction()
    victim, attacker = client(app), client(app)
    login(victim, "olga")
    login(attacker, "sam")
    url = f"/api/console/referrals/{rec.id}/override"
    r = victim.post(url, json={"action": "open", "reason": "forged request"}, headers=token(attacker))
    assert r.status_code == 403
    assert gate.devices.barrier.history == []
    assert victim.post("/api/console/users", json={"username": "eve", "password": PW, "role": "supervisor"},
                       headers=token(attacker)).status_code == 403


def _secrets(persona, mrz_lines) -> list[str]:
    out = [persona.surname.upper(), persona.surname, persona.given_names, persona.given_names.upper(),
           persona.document_number, *mrz_lines]
    for value in persona.dg13.values():
        for v in value if isinstance(value, list) else [value]:
            if len(v) >= 6:   # 'Nữ' or 'Không' ('none') are words, not data about her
                out.append(v)
    return out


@pytest.mark.models
def test_a_full_run_logs_no_personal_data(models_dir, tmp_path, shared_dir):
    from cardreader.sim.persona import load_persona
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    gate = Gate(Settings(data_dir=tmp_path, models_dir=models_dir, integrator_api=False,
                         transaction={"passage_s": 1.0}))
    try:
        deadline = time.monotonic() + 60
        while not gate.face.ready and gate.face.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.face.ready, gate.face.error
        persona = load_persona("demo")
        card = gate.lane.issue(persona)
        gate.camera.set_source(MovingImageCamera([str(persona.face_image_path)]))
        gate.lane.insert(card)
        try:
            rec = gate.run_transaction()
        finally:
            gate.lane.remove()
        # a real read: PACE, PA valid; the portrait on the camera is a photo, so it is referred
        assert rec.evidence.document.pa_verdict == "valid"
        assert rec.outcome == "referred"
        users = UserStore.in_dir(tmp_path, FAST)
        users.add("olga", PW, "officer")
        app = create_app(gate, users)
        c = TestClient(app, base_url="http://testserver")
        assert login(c, "olga", "not her password").status_code == 401
        assert login(c, "olga").status_code == 200
        [ref] = c.get("/api/console/referrals").json()
        assert ref["traveller"]["primary_identifier"] == "COLLINS"     # the officer does see her
        assert c.get(f"/api/console/referrals/{rec.id}/photo/chip").status_code == 200
        r = c.post(f"/api/console/referrals/{rec.id}/override",
                   json={"action": "open", "reason": "compared the card with the traveller"}, headers=token(c))
        assert r.status_code == 200
        assert c.post("/api/console/logout", headers=token(c)).status_code == 204
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        gate.stop()
    text = stream.getvalue()
    assert rec.id in text and "login" in text and len(text.splitlines()) > 10   # the run did log
    mrz_lines = persona.mrz.splitlines()
    assert len(mrz_lines) == 3
    leaks = [s for s in _secrets(persona, mrz_lines) if s in text]
    assert leaks == []
