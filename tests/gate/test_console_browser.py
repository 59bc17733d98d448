"""The console's account management and past referrals in a real browser (Playwright +
Debian's chromium), on a gate that keeps face images: a supervisor changes an officer's
role and password; the officer sees a past referral (resolved, so gone from the queue)
with the chip photo and the live capture side by side; an auditor opens the same
images from the audit trail. Every view and change is in the audit trail."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from argon2 import PasswordHasher
from test_browser import CHROMIUM, PW, CameraFace, browser, free_port, shot, wait_js  # noqa: F401 (fixture)

from gate.config import Settings
from gate.station import Gate
from gate.web.app import create_app
from gate.web.auth import UserStore

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    from pathlib import Path
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium not installed")
    tmp = tmp_path_factory.mktemp("gate")
    settings = Settings(data_dir=tmp, models_dir=tmp / "no-models", audit={"keep_face_images": True},
                        transaction={"passage_s": 5.0, "card_wait_s": 0.05}, kiosk={"speech": False})
    gate = Gate(settings)
    gate.face = gate.devices.face = CameraFace(gate.camera, seconds=0.3)
    users = UserStore(gate.audit, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    for name, role in (("olga", "officer"), ("nora", "officer"), ("omar", "auditor"), ("ada", "auditor"), ("sam", "supervisor")):
        users.add(name, PW, role)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(gate, users), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.start()
    yield gate, f"http://127.0.0.1:{port}"
    gate.stop()
    srv.should_exit = True


def sign_in(page, base, user, password=PW):
    page.goto(f"{base}/console")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login-form button")
    page.wait_for_selector("#who:has-text('%s')" % user)


def test_supervisor_changes_a_role_and_a_password(server, browser, tmp_path):  # noqa: F811
    gate, base = server
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    sign_in(page, base, "sam")
    page.click("nav button[data-view=users]")
    row = page.locator("#user-table tr[data-user=omar]")
    row.wait_for()
    page.evaluate("window.rowBefore = document.querySelector('#user-table tr[data-user=omar]')")
    row.locator("select[name=role]").select_option("officer")
    # the table is drawn again from the server once the change is made
    wait_js(page, "document.querySelector('#user-table tr[data-user=omar]') !== window.rowBefore")
    row.locator("input[name=new-password]").fill("his new long passphrase")
    row.locator("button.set-password").click()
    wait_js(page, "!document.querySelector('#user-table tr[data-user=omar] input').value")
    assert page.locator("#user-table tr[data-user=sam] select").is_disabled()     # not their own account
    shot(page, tmp_path, "console-accounts")
    page.close()
    changes = [(r.actor, r.outcome, r.checks["username"]) for r in gate.audit.search(event_type="account")
               if r.actor == "sam"]
    assert changes == [("sam", "role_changed", "omar"), ("sam", "password_set", "omar")]
    page = browser.new_page()
    sign_in(page, base, "omar", "his new long passphrase")
    assert page.locator("nav button[data-view=referrals]").is_visible()       # now an officer
    page.close()


def test_an_officer_changes_her_own_password(server, browser, tmp_path):  # noqa: F811
    gate, base = server
    page = browser.new_page()
    sign_in(page, base, "nora")
    page.click("nav button[data-view=account]")
    page.fill("#password-form input[name=current]", PW)
    page.fill("#password-form input[name=new]", "she changed it herself")
    page.fill("#password-form input[name=again]", "a typo in the repeat!")
    page.click("#password-form button")
    page.wait_for_selector("#error:has-text('differ')")
    page.fill("#password-form input[name=again]", "she changed it herself")
    page.click("#password-form button")
    page.wait_for_selector("#password-done", state="visible")
    page.click("nav button[data-view=referrals]")
    page.wait_for_selector("#queue-count:has-text('(')")      # still signed in after the rotation
    shot(page, tmp_path, "console-own-password")
    page.close()
    page = browser.new_page()
    sign_in(page, base, "nora", "she changed it herself")
    page.close()
    assert [(r.actor, r.outcome) for r in gate.audit.search(event_type="account")
            if r.checks["username"] == "nora"][-1] == ("nora", "password_set")


def test_past_referral_shows_both_photos_to_the_officer_and_the_auditor(server, browser, tmp_path, demo_dir):  # noqa: F811
    gate, base = server
    api = httpx.Client(base_url=base)
    card = api.post("/integrator/cards", data={"persona": "demo"}).json()["card_id"]
    api.post("/integrator/camera", json={"paths": [str(demo_dir / "eileen_collins_nasa.png")]})
    gate.face.outcome = "no_match"
    api.post(f"/integrator/reader/insert/{card}")
    deadline = time.monotonic() + 20
    while not gate.open_referrals():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    api.post("/integrator/reader/remove")
    tx = gate.open_referrals()[0].record.id
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    sign_in(page, base, "olga")
    page.wait_for_selector("#queue li")
    page.click("#queue li")
    page.fill("textarea[name=reason]", "Escorted to the desk")
    page.click("button[value=deny]")
    page.wait_for_selector("#queue-count:has-text('(0)')")
    page.wait_for_selector("#past li:has-text('deny by olga')")
    page.click("#past li")
    wait_js(page, "document.getElementById('p-chip').naturalWidth > 0 && "
                  "document.getElementById('p-live').naturalWidth > 0")
    assert "face.no_match" in page.locator("#p-reasons").inner_text()
    shot(page, tmp_path, "console-past-referral")
    page.close()

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    sign_in(page, base, "ada")
    page.fill("#audit-form input[name=transaction_id]", tx)
    page.click("#audit-form button")
    page.click("#audit-table button.faces")
    wait_js(page, "document.getElementById('a-chip').naturalWidth > 0 && "
                  "document.getElementById('a-live').naturalWidth > 0")
    shot(page, tmp_path, "console-audit-faces")
    page.close()
    views = [(v.actor, v.outcome) for v in gate.audit.search(event_type="face_view", transaction_id=tx)]
    assert sorted(views) == [("ada", "chip"), ("ada", "live"), ("olga", "chip"), ("olga", "live")]
    assert gate.audit.verify().ok


def test_past_referrals_are_fetched_when_the_queue_changes_not_on_every_poll(server, browser):  # noqa: F811
    gate, base = server
    page = browser.new_page()
    fetched = []
    page.on("request", lambda r: fetched.append(r.url.split("?")[0].rsplit("/", 1)[-1])
            if "/api/console/" in r.url else None)
    page.clock.install()
    sign_in(page, base, "olga")
    page.wait_for_selector("#queue-count:has-text('(')")

    def polls(n):   # n queue polls on the page's clock, each given real time to finish
        for _ in range(n):
            page.clock.run_for(3_000)
            page.wait_for_timeout(150)

    polls(4)                                 # the queue unchanged
    assert fetched.count("referrals") >= 4
    assert fetched.count("history") == 1
    polls(8)                                 # 30 s on: a referral may have come and gone between polls
    assert fetched.count("history") == 2
    page.close()
