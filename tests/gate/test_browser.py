"""The kiosk and the officer console in a real browser (Playwright + Debian's chromium).

The gate runs for real (uvicorn, simulated card reader, SQLite audit); only the face
step is a stand-in that reads the simulated camera for a moment and answers, so
these tests need no models. Screenshots go to the pytest tmp dir (and to
$EGATE_SCREENSHOTS when set) for a person to look at."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from gate.config import Settings
from gate.station import Gate
from gate.web.app import create_app
from gate.web.auth import UserStore

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
PW = "correct horse battery"


class CameraFace:
    """Looks at the simulated camera for `seconds`, asks the traveller to hold
    still, then (half way) to turn their head to the left, then (three quarters) to look up, then
    gives `outcome`."""

    def __init__(self, camera, seconds=3.0):
        self.camera, self.seconds, self.outcome = camera, seconds, "match"

    def reference(self, image):
        return "ref"

    def verify(self, ref, window_s, on_guidance):
        from test_transaction import FakeFace
        end = time.monotonic() + self.seconds
        guidance = type("G", (), {"code": "hold_still", "vi": "Vui lòng giữ yên", "en": "Please hold still"})()
        frames = self.camera.frames()
        on_guidance(guidance)
        from biometrics.quality import GUIDANCE
        best, prompts = None, [(self.seconds / 2, "challenge_turn_left"), (self.seconds / 4, "challenge_look_up")]
        for f in frames:
            best = f.image
            if prompts and time.monotonic() > end - prompts[0][0]:   # seconds left when asked
                on_guidance(GUIDANCE[prompts.pop(0)[1]])
            if time.monotonic() > end:
                break
        return FakeFace(outcome=self.outcome, score=0.8 if self.outcome == "match" else 0.1, best_frame=best)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium not installed")
    tmp = tmp_path_factory.mktemp("gate")
    settings = Settings(data_dir=tmp, models_dir=tmp / "no-models",
                        transaction={"passage_s": 20.0, "card_wait_s": 0.05}, kiosk={"speech": False})
    gate = Gate(settings)
    gate.face = gate.devices.face = CameraFace(gate.camera)
    users = UserStore.in_dir(tmp, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    users.add("olga", PW, "officer")
    users.add("ada", PW, "auditor")
    users.add("sam", PW, "supervisor")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(gate, users), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.start()
    yield gate, base
    gate.stop()
    srv.should_exit = True


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def wait_js(page, expression, timeout=15.0):
    """Poll an expression (wait_for_function would need 'unsafe-eval', which the CSP forbids)."""
    end = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < end, f"timed out waiting for {expression}"
        time.sleep(0.1)


def shot(page, tmp_path, name):
    out = Path(os.environ.get("EGATE_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"))


def test_kiosk_walks_a_passing_and_a_referred_traveller(server, browser, tmp_path, demo_dir):
    gate, base = server
    api = httpx.Client(base_url=base)
    card = api.post("/integrator/cards", data={"persona": "demo"}).json()["card_id"]
    api.post("/integrator/camera", json={"paths": [str(demo_dir / "eileen_collins_nasa.png")]})
    for size, name in (({"width": 1080, "height": 1920}, "portrait"), ({"width": 1920, "height": 1080}, "landscape")):
        page = browser.new_page(viewport=size)
        page.goto(f"{base}/kiosk")
        page.wait_for_selector("#msg-vi:has-text('Vui lòng đặt thẻ lên đầu đọc')")
        assert page.locator("#msg-en").inner_text() == "Please place your card on the reader"
        shot(page, tmp_path, f"kiosk-waiting-{name}")
        api.post(f"/integrator/reader/insert/{card}")
        page.wait_for_selector("#g-vi:has-text('Vui lòng giữ yên')")
        wait_js(page, "document.getElementById('preview').naturalWidth > 0")
        assert page.locator("#camera").is_visible()
        shot(page, tmp_path, f"kiosk-face-{name}")
        # the liveness challenge: shown as the one thing to do, larger and with its sign
        page.wait_for_selector("#guidance[data-challenge='turn_left']")
        assert page.locator("#g-en").inner_text() == "Please turn your head slightly to your left"
        assert page.locator("#g-vi").inner_text() == "Vui lòng quay đầu nhẹ sang trái"
        shot(page, tmp_path, f"kiosk-challenge-{name}")
        page.wait_for_selector("#guidance[data-challenge='look_up']")
        assert page.locator("#g-vi").inner_text() == "Vui lòng ngẩng đầu nhẹ lên"
        sign = "getComputedStyle(document.getElementById('guidance'), '::before').content"
        assert page.evaluate(sign) == '"⬆"'
        page.wait_for_selector("#msg-vi:has-text('Mời qua cổng')", timeout=15000)
        assert page.locator("#msg-en").inner_text() == "Please proceed"
        shot(page, tmp_path, f"kiosk-proceed-{name}")
        api.post("/integrator/barrier/passage")
        page.wait_for_selector("[data-state='closed']")
        api.post("/integrator/reader/remove")
        page.wait_for_selector("[data-state='waiting']")
        page.close()

    gate.face.outcome = "no_match"
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(f"{base}/kiosk")
    api.post(f"/integrator/reader/insert/{card}")
    page.wait_for_selector("#msg-vi:has-text('Vui lòng đến quầy kiểm soát')", timeout=15000)
    assert page.locator("#msg-en").inner_text() == "Please see an officer"
    assert "no_match" not in page.content()          # the traveller sees no reasons
    shot(page, tmp_path, "kiosk-referred")
    api.post("/integrator/reader/remove")
    assert api.get("/integrator/barrier").json()["state"] == "closed"
    page.close()


def test_console_login_override_with_reason_and_audit_search(server, browser, tmp_path):
    gate, base = server
    referral = gate.open_referrals()[0].record.id if gate.open_referrals() else None
    assert referral, "the kiosk test leaves one referral"
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{base}/console")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", "wrong password")
    page.click("#login-form button")
    page.wait_for_selector("#error:has-text('wrong user name or password')")
    page.fill("input[name=password]", PW)
    page.click("#login-form button")
    page.wait_for_selector("#queue li")
    page.click("#queue li")
    page.wait_for_selector("#d-reasons li:has-text('face.no_match')")
    wait_js(page, "document.getElementById('d-live').naturalWidth > 0 && "
                  "document.getElementById('d-chip').naturalWidth > 0")
    assert page.locator("#d-traveller").inner_text().count("COLLINS") == 1
    shot(page, tmp_path, "console-referral")
    page.fill("textarea[name=reason]", "Checked the card and the face by hand")
    page.click("button[value=deny]")
    page.wait_for_selector("#queue-count:has-text('(0)')")
    assert gate.referrals[referral].resolved == "deny"
    # the denied document tried again: referred at once (repeat attempt), the kiosk says why, the console too
    api = httpx.Client(base_url=base)
    kiosk = browser.new_page(viewport={"width": 1920, "height": 1080})
    kiosk.goto(f"{base}/kiosk")
    api.post(f"/integrator/reader/insert/{next(iter(gate.lane.issued))}")
    kiosk.wait_for_selector("#msg-vi:has-text('Vui lòng đến quầy kiểm soát')", timeout=15000)
    assert kiosk.locator("#g-vi").inner_text() == ("Giấy tờ này cần được cán bộ biên phòng kiểm tra trước khi "
                                                   "dùng lại cổng tự động. Vui lòng gặp cán bộ biên phòng.")
    assert "Please see a border officer" in kiosk.locator("#g-en").inner_text()
    shot(kiosk, tmp_path, "kiosk-repeat-attempt")
    kiosk.close()
    api.post("/integrator/reader/remove")
    page.wait_for_selector("#queue-count:has-text('(1)')", timeout=20000)
    page.click("#queue li")
    page.wait_for_selector("#d-reasons li:has-text('document.repeat_attempt')")
    assert "face.no_match" in page.locator("#d-checks").inner_text()      # the earlier referral it repeats
    page.fill("textarea[name=reason]", "Sent to the manual booth")
    page.click("button[value=deny]")
    page.wait_for_selector("#queue-count:has-text('(0)')")
    # a second referred traveller (another document), whom the officer lets through after a manual check
    gate.face.outcome = "no_match"
    card = api.post("/integrator/cards", data={"persona": "demo", "document_number": "UD5550002"}).json()["card_id"]
    opened_before = sum(e == "open" for _, e in api.get("/integrator/barrier").json()["history"])
    api.post(f"/integrator/reader/insert/{card}")
    page.wait_for_selector("#queue-count:has-text('(1)')", timeout=20000)
    second = gate.open_referrals()[0].record.id
    page.click("#queue li")
    page.wait_for_selector("#d-reasons li:has-text('face.no_match')")
    page.fill("textarea[name=reason]", "Face compared with the chip photo by hand: same person")
    page.click("button[value=open]")
    page.wait_for_selector("#queue-count:has-text('(0)')")
    assert gate.referrals[second].resolved == "open" and gate.referrals[second].resolved_by == "olga"
    history = api.get("/integrator/barrier").json()["history"]
    assert sum(e == "open" for _, e in history) == opened_before + 1
    api.post("/integrator/barrier/passage")
    api.post("/integrator/reader/remove")
    page.click("#logout")
    page.wait_for_selector("#login-form")

    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PW)
    page.click("#login-form button")
    page.wait_for_selector("#audit-form")
    page.select_option("select[name=event_type]", "override")
    page.click("#audit-form button")
    page.wait_for_selector("#audit-table tbody tr")
    rows = page.locator("#audit-table tbody tr").all_inner_texts()
    assert any("override" in r and "deny" in r and "olga" in r and "face.no_match" in r for r in rows)
    assert any("override" in r and "open" in r and "olga" in r for r in rows)
    assert page.locator("nav button[data-view=referrals]").is_hidden()
    shot(page, tmp_path, "console-audit")
    page.close()


def test_supervisor_dashboard_draws_its_charts(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server[1]}/console")
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", PW)
    page.click("#login-form button")
    page.click("nav button[data-view=dashboard]")
    page.wait_for_selector("#chart-series rect")
    totals = page.locator("#totals").inner_text()
    assert "5\nTransactions\n2\nPassed\n3\nReferred" in totals     # two passed and three referred above
    assert page.locator("#chart-reasons text", has_text="face.no_match").count() == 1
    assert page.locator("nav button[data-view=audit]").is_hidden()
    shot(page, tmp_path, "console-dashboard")
    page.close()
