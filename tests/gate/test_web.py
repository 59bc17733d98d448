"""Kiosk endpoints, operations endpoints, OpenAPI and the integrator API (with the
real simulated card reader; the face step is a fake so no models are needed)."""
from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from test_transaction import Face, FakeFace

from gate.config import Settings
from gate.station import Gate
from gate.transaction import State
from gate.web.app import KIOSK_MESSAGES, create_app
from gate.web.auth import UserStore

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture
def gate(tmp_path):
    # no models here: the face step is a fake, and loading them would only cost CPU
    g = Gate(Settings(data_dir=tmp_path, models_dir=tmp_path / "no-models",
                      transaction={"passage_s": 1.0, "card_wait_s": 0.05}))
    g.devices.face = Face(FakeFace())
    g.face = g.devices.face
    yield g
    g.stop()


@pytest.fixture
def app(gate, tmp_path):
    return create_app(gate, UserStore.in_dir(tmp_path))


def test_kiosk_page_is_self_contained_and_bilingual(app):
    c = TestClient(app, client=LOCAL)
    page = c.get("/kiosk")
    assert page.status_code == 200
    assert "Vui lòng đặt thẻ lên đầu đọc" in page.text and "Please place your card on the reader" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("kiosk.js", "kiosk.css"):
        r = c.get(f"/static/{asset}")
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_every_state_has_a_vietnamese_and_english_message(app):
    msgs = TestClient(app).get("/api/kiosk/messages").json()
    assert set(msgs) == {s.value for s in State}
    assert all(m["vi"] and m["en"] and m["vi"] != m["en"] for m in msgs.values())
    assert msgs["barrier_open"]["vi"] == "Mời qua cổng" and msgs["referred"]["en"] == "Please see an officer"


def test_camera_preview_is_local_only(app, gate):
    assert TestClient(app, client=("192.0.2.7", 4000)).get("/kiosk/camera.jpg").status_code == 403
    local = TestClient(app, client=LOCAL)
    assert local.get("/kiosk/camera.jpg").status_code == 204      # no frame yet
    next(iter(gate.camera.frames()))
    r = local.get("/kiosk/camera.jpg")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8" and r.headers["cache-control"] == "no-store"


def test_spoken_prompts_are_rendered_once_and_cached(app, gate, tmp_path):
    c = TestClient(app)
    r = c.get("/kiosk/speech/referred/vi.wav")
    assert r.status_code == 200 and r.content[:4] == b"RIFF" and len(r.content) > 4000
    cached = list((tmp_path / "speech").glob("*.wav"))
    assert len(cached) == 1            # rendered once, then served from the cache
    mtime = cached[0].stat().st_mtime_ns
    assert c.get("/kiosk/speech/referred/vi.wav").content == r.content
    assert cached[0].stat().st_mtime_ns == mtime
    assert c.get("/kiosk/speech/referred/en.wav").content != r.content
    assert c.get("/kiosk/speech/nonsense/en.wav").status_code == 404
    g = c.get("/kiosk/speech/guidance/move_closer/vi.wav")
    assert g.status_code == 200 and g.content[:4] == b"RIFF"
    assert c.get("/kiosk/speech/guidance/dance/vi.wav").status_code == 404
    note = c.get("/kiosk/speech/guidance/document.repeat_attempt/en.wav")   # the one referral the kiosk names
    assert note.status_code == 200 and note.content[:4] == b"RIFF" and note.content != r.content
    gate.settings.kiosk.speech = False
    assert c.get("/kiosk/speech/referred/vi.wav").status_code == 404


def test_health_ready_metrics(app, gate):
    c = TestClient(app)
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz").json()
    assert r["checks"]["audit_store"] is True and r["checks"]["reader_present"] is True
    gate.audit.engine.dispose()
    gate.audit.engine = __import__("sqlalchemy").create_engine("sqlite:////nonexistent/dir/x.db")
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["audit_store"] is False
    m = c.get("/metrics")
    assert m.status_code == 200 and "egate_transactions_total" in m.text and "egate_step_seconds" in m.text


def test_openapi_describes_the_api_and_integrator_only_when_enabled(tmp_path, app):
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    assert {"/integrator/cards", "/api/console/login", "/kiosk/events", "/readyz"} <= set(paths)
    # no models: a second gate loading them in the background only steals CPU from the next tests
    g = Gate(Settings(data_dir=tmp_path / "off", models_dir=tmp_path / "no-models", integrator_api=False))
    paths = TestClient(create_app(g, UserStore.in_dir(tmp_path / "off"))).get("/openapi.json").json()["paths"]
    assert not any(p.startswith("/integrator") for p in paths)
    assert TestClient(create_app(g, UserStore.in_dir(tmp_path / "off"))).post(
        "/integrator/reader/remove").status_code == 404
    g.stop()
    with pytest.raises(ValueError):
        Settings(profile="production", integrator_api=True)


def test_production_refuses_to_run_without_the_liveness_challenge(tmp_path):
    real = dict(profile="production", integrator_api=False, reader={"kind": "pcsc", "trust_store": tmp_path},
                camera={"kind": "webcam"}, identity={"url": "https://identity.example"}, data_dir=tmp_path)
    assert Settings(**real).face.challenge is True
    with pytest.raises(ValueError, match="face.challenge must be on"):
        Settings(**real, face={"challenge": False})


def wait_for(fn, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_integrator_drives_a_whole_transaction(app, gate, demo_dir):
    gate.start()
    c = TestClient(app)
    photo = (demo_dir / "eileen_collins_chip_derived.jpg").read_bytes()
    r = c.post("/integrator/cards", data={"persona": "demo", "document_number": "UD1234567",
                                          "surname": "Tester", "dg13": json.dumps({"2": "Tester Eileen"})},
               files={"photo": ("face.jpg", photo, "image/jpeg")})
    assert r.status_code == 201, r.text
    card = r.json()["card_id"]
    assert c.post("/integrator/camera", json={"paths": [str(demo_dir / "eileen_collins_nasa.png")]}).status_code == 204
    assert c.post("/integrator/identity", json={"document_number": "UD1234567", "outcome": "clear"}).status_code == 204
    assert c.get("/integrator/barrier").json()["state"] == "closed"
    assert c.post(f"/integrator/reader/insert/{card}").status_code == 204
    wait_for(lambda: c.get("/integrator/barrier").json()["state"] == "open")
    assert c.post("/integrator/barrier/passage").status_code == 204
    rec = wait_for(lambda: [t for t in c.get("/integrator/transactions").json() if t["outcome"]])[0]
    assert rec["outcome"] == "passed" and rec["document"]["pa_verdict"] == "valid"
    assert "UD1234567" not in json.dumps(rec) and "Tester" not in json.dumps(rec)
    assert c.get(f"/integrator/transactions/{rec['id']}").json()["id"] == rec["id"]
    assert [e for _, e in c.get("/integrator/barrier").json()["history"]] == ["open", "close"]
    c.post("/integrator/reader/remove")
    # the same card, now reported stolen: referred, barrier untouched
    c.post("/integrator/identity", json={"document_number": "UD1234567", "outcome": "lost_stolen"})
    c.post(f"/integrator/reader/insert/{card}")
    rec2 = wait_for(lambda: [t for t in c.get("/integrator/transactions").json()
                             if t["id"] != rec["id"] and t["outcome"]])[0]
    assert rec2["outcome"] == "referred" and rec2["reasons"] == ["identity.lost_stolen"]
    assert len(c.get("/integrator/barrier").json()["history"]) == 2


def test_integrator_places_a_card_front_up(app, gate):
    """The scanner sees only the CAN: the chip opens with PACE-CAN, and with no printed MRZ
    to compare DG1 with, the traveller is referred (the default policy)."""
    gate.start()
    c = TestClient(app)
    card = c.post("/integrator/cards", data={"persona": "demo"}).json()["card_id"]
    assert c.post(f"/integrator/reader/insert/{card}", params={"side": "back"}).status_code == 422
    assert c.post(f"/integrator/reader/insert/{card}", params={"side": "front"}).status_code == 204
    rec = wait_for(lambda: [t for t in c.get("/integrator/transactions").json() if t["outcome"]])[0]
    assert rec["outcome"] == "referred" and "document.mrz_not_compared" in rec["reasons"]
    assert rec["document"]["access_key"] == "can" and rec["document"]["pa_verdict"] == "valid"
    assert c.get("/integrator/barrier").json()["history"] == []


def test_integrator_rejects_bad_input(app):
    c = TestClient(app)
    assert c.post("/integrator/cards", data={"persona": "nobody"}).status_code == 404
    assert c.post("/integrator/cards", data={"persona": "demo"},
                  files={"photo": ("x.png", b"\x89PNG....", "image/png")}).status_code == 400   # not decodable
    assert c.post("/integrator/cards", data={"persona": "demo", "dg13": "[1,2]"}).status_code == 400
    assert c.post("/integrator/cards", data={"persona": "demo", "document_number": "bad number!"}).status_code == 400
    assert c.post("/integrator/reader/insert/card-99").status_code == 404
    assert c.post("/integrator/camera", json={"paths": ["/no/such.png"]}).status_code == 400
    assert c.post("/integrator/identity", json={"document_number": "X", "outcome": "fine"}).status_code == 422


def test_chip_in_a_forged_document_is_referred_for_the_mrz_mismatch(gate):
    """The print carries the chip's key fields but another name: the chip opens, DG1 differs."""
    from cardreader.lds.mrz import parse_mrz
    from cardreader.sim.persona import load_persona
    from gate.station import persona_from
    demo = load_persona("demo")
    card = gate.lane.issue(demo)
    gate.lane.insert(card)
    gate.lane._printed = parse_mrz(persona_from(demo, surname="Smith").mrz)
    rec = gate.run_transaction()
    assert rec.evidence.document.pa_verdict == "valid"
    assert rec.reasons == ["document.mrz_mismatch", "missing.face", "missing.identity"]
    assert rec.evidence.document.mrz_mismatch_fields == ("primary_identifier",)
    assert gate.devices.barrier.history == []


def test_access_key_read_by_ocr_from_a_photo_of_the_card(gate):
    import shutil
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract-ocr not installed")
    from cardreader.sim.persona import load_persona
    gate.settings.reader.mrz_source = "ocr"
    gate.devices.barrier._auto = 0.01
    card = gate.lane.issue(load_persona("demo"))
    gate.lane.insert(card)
    rec = gate.run_transaction()
    assert rec.outcome == "passed", rec.reasons
    assert rec.evidence.document.mrz_mismatch_fields == ()
    gate.lane.remove()
    rec = gate.run_transaction()              # the card was taken away before the scan
    assert rec.reasons == ["scan.no_document"]


def test_a_lane_reads_the_access_key_from_its_document_scanner(tmp_path):
    """The real-lane path (used with PC/SC): a scanner image in, the MRZ by OCR out."""
    import shutil

    import cv2
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract-ocr not installed")
    from cardreader.scanner import FolderScanner, SimulatedDocumentScanner
    from cardreader.sim.persona import load_persona
    from gate.station import Lane
    from gate.transaction import DeviceRefusal
    demo = load_persona("demo")
    cv2.imwrite(str(tmp_path / "1.png"), SimulatedDocumentScanner(demo.mrz, level="clean").capture())
    cv2.imwrite(str(tmp_path / "2.png"), 255 * __import__("numpy").ones((600, 900, 3), "uint8"))
    lane = Lane(Settings(data_dir=tmp_path), transport=None, scanner=FolderScanner(tmp_path), trust_store=None)
    assert lane.scan().document_number == demo.document_number
    with pytest.raises(DeviceRefusal):     # a blank page: no MRZ
        lane.scan()


def test_demo_plays_one_traveller_and_says_what_is_simulated(app, gate):
    """The demo start: the demo card goes on the reader once, the transaction runs, the card is
    taken back; the kiosk's note names the simulated devices (and only on a demo gate)."""
    gate.devices.face.result = FakeFace(outcome="no_match", score=0.1)
    gate.start()
    t = gate.play_demo(show_s=0.2)
    t.join(timeout=20)
    assert not t.is_alive() and not gate.lane.card_present()
    assert len(gate.history) == 1 and list(gate.referrals.values())[0].resolved is None
    note = TestClient(app).get("/api/kiosk/info").json()["demo_note"]
    assert "simulated card reader" in note and "eileen_collins_nasa.png" in note and "liveness" in note
    gate.settings.reader.kind = "pcsc"
    assert gate.demo_note() is None
