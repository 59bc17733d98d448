"""The gate's web application: kiosk page and event stream, officer console API,
integrator API (simulation only), health, readiness and metrics.

Routes are thin; the work is in `gate.station.Gate`. Pydantic models at the
edges make the OpenAPI schema the contract that the kiosk and console pages use.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import logging
import subprocess
from collections import Counter as Tally
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from gate.station import KIOSK_REFERRAL_NOTES, Gate, OverrideError, persona_from, save_upload
from gate.transaction import State
from gate.audit import AuditEvent, AuditUnavailable
from gate.web.auth import Session, Sessions, UserError, UserStore

log = logging.getLogger("gate.web")
STATIC = Path(__file__).parent / "static"
COOKIE = "egate_session"

# Every kiosk state with its bilingual instruction (and the tone the page uses).
KIOSK_MESSAGES: dict[str, dict[str, str]] = {
    State.WAITING.value: {"vi": "Vui lòng đặt thẻ lên đầu đọc", "en": "Please place your card on the reader",
                          "tone": "info"},
    State.CARD_DETECTED.value: {"vi": "Đang đọc thẻ, vui lòng không nhấc thẻ",
                                "en": "Reading your card, please do not remove it", "tone": "busy"},
    State.DOCUMENT_READ.value: {"vi": "Đang kiểm tra giấy tờ", "en": "Checking your document", "tone": "busy"},
    State.DOCUMENT_VERIFIED.value: {"vi": "Giấy tờ hợp lệ", "en": "Document checked", "tone": "busy"},
    State.FACE_CAPTURE.value: {"vi": "Vui lòng nhìn thẳng vào camera", "en": "Please look at the camera",
                               "tone": "info"},
    State.FACE_VERIFIED.value: {"vi": "Đang xác minh", "en": "Verifying", "tone": "busy"},
    State.IDENTITY_CHECKED.value: {"vi": "Đang xác minh", "en": "Verifying", "tone": "busy"},
    State.DECISION.value: {"vi": "Vui lòng chờ", "en": "Please wait", "tone": "busy"},
    State.BARRIER_OPEN.value: {"vi": "Mời qua cổng", "en": "Please proceed", "tone": "go"},
    State.PASSAGE.value: {"vi": "Mời qua cổng", "en": "Please proceed", "tone": "go"},
    State.CLOSED.value: {"vi": "Chúc quý khách thượng lộ bình an. Vui lòng lấy lại thẻ",
                         "en": "Have a safe journey. Please take your card", "tone": "go"},
    State.REFERRED.value: {"vi": "Vui lòng đến quầy kiểm soát", "en": "Please see an officer", "tone": "stop"},
}


# --- pydantic models at the edge -----------------------------------------------------------------

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SessionOut(BaseModel):
    authenticated: bool
    username: str | None = None
    role: str | None = None
    csrf: str
    can_override: bool = False


class OverrideIn(Strict):
    action: Literal["open", "deny"]
    reason: str = Field(min_length=3, max_length=500)


class UserIn(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: Literal["officer", "supervisor", "auditor"]


class UserOut(BaseModel):
    username: str
    role: str
    disabled: bool


class DisableIn(Strict):
    disabled: bool


class RoleIn(Strict):
    role: Literal["officer", "supervisor", "auditor"]


class PasswordIn(Strict):
    password: str = Field(max_length=1024)


class OwnPasswordIn(Strict):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class ReferralOut(BaseModel):
    id: str
    started_at: str
    reasons: list[str]
    resolved: str | None = None
    resolved_by: str | None = None
    document: dict | None = None
    face: dict | None = None
    identity: dict | None = None
    traveller: dict[str, str] = Field(default_factory=dict)
    earlier_referrals: list[dict] = Field(default_factory=list, description="document.repeat_attempt: the "
                                          "document's unresolved referrals (gate, time, reasons) that blocked it")
    has_chip_photo: bool = False
    has_live_photo: bool = False


class PastReferralOut(BaseModel):
    """A referral as the audit trail recorded it (no personal data but the face images,
    kept only when `audit.keep_face_images` is on, fetched one by one)."""
    record_id: int
    transaction_id: str | None
    occurred_at: str
    gate_id: str
    reasons: list[str]
    has_face_image: bool
    resolved: str | None = None
    resolved_by: str | None = None


class IdentityAnswerIn(Strict):
    document_number: str = Field(max_length=20)
    outcome: Literal["clear", "revoked", "lost_stolen", "exit_ban", "watch_list", "not_found", "unavailable"]
    reasons: list[str] = Field(default_factory=list)


class CameraIn(Strict):
    kind: Literal["images", "clip", "recorded"] = Field(
        "images", description="'recorded': the built-in recording of a live person (shared pad-dev data, "
                              "chip photo BalveerSinghYT/0001.png) who answers the kiosk's challenge; no paths")
    paths: list[str] = Field(default_factory=list, max_length=50)
    simulate_motion: bool = Field(True, description="images: play them with small head movements (a live "
                                                    "person); False plays them unchanged (a photo attack)")


class CardOut(BaseModel):
    card_id: str


class BarrierOut(BaseModel):
    state: str
    # [time, event] pairs; declared as lists because the tuple's OpenAPI form (an array as
    # `items`) is no valid Schema Object, which clients generated from the schema reject
    history: list[list[float | str]]


# --- the app -------------------------------------------------------------------------------------

def create_app(gate: Gate, users: UserStore, sessions: Sessions | None = None) -> FastAPI:
    s = gate.settings
    sessions = sessions or Sessions(users, idle_s=s.console.idle_timeout_s, absolute_s=s.console.absolute_timeout_s,
                                    max_failures=s.console.max_failures, lockout_base_s=s.console.lockout_base_s)
    app = FastAPI(title="e-gate", version="0.1.0",
                  description="Kiosk, officer console, integrator and operations API of one e-gate lane.")
    app.state.gate, app.state.users, app.state.sessions = gate, users, sessions

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' blob: data:; media-src 'self'; "
                                    "style-src 'self'; script-src 'self'; connect-src 'self'")
        if request.url.path.startswith(("/api/console", "/kiosk/camera")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(SQLAlchemyError)
    async def database_down(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        """The accounts' database is unreachable: nobody is signed in or let through (no 500)."""
        log.error("database unavailable", extra={"path": request.url.path, "error_type": type(exc).__name__})
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    app.include_router(_kiosk(gate))
    app.include_router(_console(gate, users, sessions))
    app.include_router(_operations(gate))
    if s.integrator_api and s.profile != "production" and hasattr(gate.lane, "issue"):
        app.include_router(_integrator(gate))   # simulated devices only
    return app


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC / name).read_text(encoding="utf-8"))


# --- kiosk ---------------------------------------------------------------------------------------

def _kiosk(gate: Gate) -> APIRouter:
    r = APIRouter()

    @r.get("/", include_in_schema=False)
    def root() -> HTMLResponse:
        return HTMLResponse('<!doctype html><meta charset="utf-8"><title>e-gate</title>'
                            '<p><a href="/kiosk">Kiosk</a> · <a href="/console">Officer console</a>')

    @r.get("/kiosk", response_class=HTMLResponse, tags=["kiosk"])
    def kiosk_page() -> HTMLResponse:
        return _page("kiosk.html")

    @r.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        p = (STATIC / name).resolve()
        if p.parent != STATIC.resolve() or not p.is_file():
            raise HTTPException(404)
        return FileResponse(p)

    @r.get("/api/kiosk/messages", tags=["kiosk"])
    def messages() -> dict[str, dict[str, str]]:
        return KIOSK_MESSAGES

    @r.get("/api/kiosk/info", tags=["kiosk"])
    def info() -> dict[str, Any]:
        """The lane's profile and, on a demo gate, what is simulated (shown in the kiosk's footer)."""
        return {"profile": gate.settings.profile, "demo_note": gate.demo_note()}

    @r.get("/api/kiosk/state", tags=["kiosk"])
    def state() -> dict[str, Any]:
        return gate.bus.last

    @r.get("/kiosk/events", tags=["kiosk"])
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: one `data:` JSON object per state or guidance change."""
        sub = gate.bus.subscribe()

        async def stream():
            try:
                yield f"data: {json.dumps(gate.bus.last)}\n\n"
                while not await request.is_disconnected():
                    try:
                        msg = await asyncio.wait_for(sub[1].get(), timeout=15)
                        yield f"data: {json.dumps(msg)}\n\n"
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
            finally:
                gate.bus.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @r.get("/kiosk/camera.jpg", tags=["kiosk"], responses={200: {"content": {"image/jpeg": {}}}})
    def camera(request: Request) -> Response:
        """The current camera frame for the kiosk's face guide; answered to the kiosk's own
        machine only (loopback), never to the network."""
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            raise HTTPException(403, "camera preview is local to the kiosk")
        jpeg = gate.camera.preview_jpeg() if gate.camera is not None else None
        if jpeg is None:
            return Response(status_code=204)
        return Response(jpeg, media_type="image/jpeg")

    @r.get("/kiosk/speech/{state}/{lang}.wav", tags=["kiosk"], responses={200: {"content": {"audio/wav": {}}}})
    def speech(state: str, lang: Literal["vi", "en"]) -> Response:
        msg = KIOSK_MESSAGES.get(state)
        if msg is None:
            raise HTTPException(404)
        return spoken(msg[lang], lang)

    @r.get("/kiosk/speech/guidance/{code}/{lang}.wav", tags=["kiosk"],
           responses={200: {"content": {"audio/wav": {}}}})
    def guidance_speech(code: str, lang: Literal["vi", "en"]) -> Response:
        """The face pipeline's capture guidance, or the one referral the kiosk names, spoken."""
        from biometrics.pipeline import GUIDANCE
        g = GUIDANCE.get(code)
        if g is not None:
            return spoken(getattr(g, lang), lang)
        if code in KIOSK_REFERRAL_NOTES:
            return spoken(KIOSK_REFERRAL_NOTES[code][lang], lang)
        raise HTTPException(404)

    def spoken(text: str, lang: str) -> Response:
        if not gate.settings.kiosk.speech:
            raise HTTPException(404, "speech is switched off")
        path = speech_wav(gate.settings.data_dir, gate.settings.kiosk.espeak, text, lang)
        if path is None:
            raise HTTPException(503, "speech synthesiser unavailable")
        return FileResponse(path, media_type="audio/wav")

    return r


def speech_wav(data_dir: Path, espeak: str, text: str, lang: str) -> Path | None:
    """Render `text` once with espeak-ng and cache the WAV under the data dir."""
    d = data_dir / "speech"
    d.mkdir(parents=True, exist_ok=True)
    p = d / (hashlib.sha256(f"{lang}|{text}".encode()).hexdigest()[:24] + ".wav")
    if p.is_file():
        return p
    tmp = p.with_suffix(".tmp")
    try:
        subprocess.run([espeak, "-v", lang, "-s", "150", "-w", str(tmp), text], check=True,
                       capture_output=True, timeout=20)
        tmp.replace(p)
    except (OSError, subprocess.SubprocessError):
        log.warning("speech synthesis failed")
        return None
    return p


# --- console -------------------------------------------------------------------------------------

def _console(gate: Gate, users: UserStore, sessions: Sessions) -> APIRouter:
    r = APIRouter()
    secure = gate.settings.console.tls
    override_roles = {"officer": ("officer", "supervisor"), "supervisor": ("supervisor",)}[
        gate.settings.policy.override_role]

    def set_cookie(resp: Response, sess: Session) -> None:
        resp.set_cookie(COOKIE, sess.id, httponly=True, samesite="strict", secure=secure, path="/")

    def current(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def csrf(request: Request) -> Session | None:
        sess = current(request)
        if not Sessions.csrf_ok(sess, request.headers.get("X-CSRF-Token")):
            raise HTTPException(403, "missing or wrong CSRF token")
        return sess

    def role(*allowed: str):
        def dep(request: Request) -> Session:
            sess = current(request)
            if sess is None or sess.user is None:
                raise HTTPException(401, "login required")
            if sess.user.role not in allowed:
                raise HTTPException(403, "your role may not do this")
            if request.method not in ("GET", "HEAD") and not Sessions.csrf_ok(
                    sess, request.headers.get("X-CSRF-Token")):
                raise HTTPException(403, "missing or wrong CSRF token")
            return sess
        return dep

    @r.get("/console", response_class=HTMLResponse, tags=["console"])
    def console_page() -> HTMLResponse:
        return _page("console.html")

    @r.get("/api/console/session", response_model=SessionOut, tags=["console"])
    def session(request: Request, response: Response) -> SessionOut:
        sess = current(request)
        if sess is None:
            sess = sessions.new()
            set_cookie(response, sess)
        u = sess.user
        return SessionOut(authenticated=u is not None, username=u and u.username, role=u and u.role,
                          csrf=sess.csrf, can_override=bool(u and u.role in override_roles))

    @r.post("/api/console/login", response_model=SessionOut, tags=["console"],
            responses={401: {}, 403: {}, 429: {}})
    def login(body: LoginIn, request: Request, response: Response) -> Any:
        old = csrf(request)
        client = client_of(request)
        user = password_attempt(request, body.username, body.password, "login")
        if user is None:
            raise HTTPException(401, "wrong user name or password")
        sess = sessions.login(old, user)
        set_cookie(response, sess)
        log.info("login", extra={"user": user.username, "role": user.role, "client": client})
        session_event("officer_login", user.username, user.role, client)
        return SessionOut(authenticated=True, username=user.username, role=user.role, csrf=sess.csrf,
                          can_override=user.role in override_roles)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def password_attempt(request: Request, username: str, password: str, what: str) -> Any:
        """The user if `password` is theirs, else None, under one lockout for logins and password
        changes alike (per account and per client address, `Sessions.failed`): while locked the
        answer is 429, even for the right password."""
        client = client_of(request)
        keys = (f"user:{username}", f"addr:{client}")
        wait = sessions.locked_for(*keys)
        if wait > 0:
            log.warning(f"{what} locked out", extra={"client": client})
            raise HTTPException(429, f"too many failed {what} attempts; try again in {int(wait) + 1} s",
                                headers={"Retry-After": str(int(wait) + 1)})
        user = users.verify(username, password)
        if user is None:
            sessions.failed(*keys)
            log.warning(f"{what} failed", extra={"client": client})
        else:
            sessions.succeeded(*keys)
        return user

    def session_event(event_type: str, username: str, outcome: str, client: str) -> None:
        """Who was signed in, from where, until when; what they did is audited on its own.
        Signing in and out never wait on the audit store: a lost record is logged loudly."""
        try:
            users.audit.append(AuditEvent(event_type=event_type, gate_id=gate.settings.gate_id,
                                          actor=username, outcome=outcome, checks={"client": client}))
        except AuditUnavailable:
            log.error("session event not recorded: audit unavailable",
                      extra={"user": username, "action": event_type})

    @r.post("/api/console/logout", status_code=204, tags=["console"])
    def logout(request: Request) -> Response:
        sess = csrf(request)
        sessions.drop(sess.id)
        if sess.user is not None:
            session_event("officer_logout", sess.user.username, sess.user.role, client_of(request))
        resp = Response(status_code=204)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @r.post("/api/console/password", response_model=SessionOut, tags=["console"],
            responses={400: {}, 403: {}, 429: {}, 503: {}})
    def own_password(body: OwnPasswordIn, request: Request, response: Response,
                     sess: Session = Depends(role("officer", "supervisor", "auditor"))) -> Any:
        """Any signed-in user changes their own password, proving the current one first
        (a stolen session alone cannot take the account over). Wrong current passwords
        count towards the same lockout as logins. Every other session of the account
        ends; this one continues under a new token."""
        user = sess.user
        if password_attempt(request, user.username, body.current_password, "password change") is None:
            raise HTTPException(403, "the current password is wrong")
        if body.new_password == body.current_password:
            raise HTTPException(400, "the new password must differ from the current one")
        try:
            users.set_password(user.username, body.new_password, actor=user.username)
        except UserError as e:
            raise HTTPException(400, str(e))
        except AuditUnavailable:
            raise HTTPException(503, "audit store unavailable: the password was not changed")
        fresh = sessions.login(None, user)     # set_password ended every session, this one too
        set_cookie(response, fresh)
        log.info("account changed", extra={"user": user.username, "action": "own_password"})
        return SessionOut(authenticated=True, username=user.username, role=user.role, csrf=fresh.csrf,
                          can_override=user.role in override_roles)

    def referral_out(ref: Any) -> ReferralOut:
        p = ref.record.public()
        personal = ref.record.personal
        return ReferralOut(id=p["id"], started_at=p["started_at"], reasons=p["reasons"], resolved=ref.resolved,
                           resolved_by=ref.resolved_by, document=p["document"], face=p["face"],
                           identity=p["identity"], traveller=personal.summary(),
                           earlier_referrals=p["earlier_referrals"],
                           has_chip_photo=personal.chip_face_jpeg is not None,
                           has_live_photo=personal.live_face_jpeg is not None)

    @r.get("/api/console/referrals", response_model=list[ReferralOut], tags=["console"])
    def referrals(_: Session = Depends(role("officer", "supervisor"))) -> list[ReferralOut]:
        return [referral_out(x) for x in sorted(gate.open_referrals(), key=lambda x: -x.created)]

    @r.get("/api/console/referrals/{rid}", response_model=ReferralOut, tags=["console"])
    def referral(rid: str, _: Session = Depends(role("officer", "supervisor"))) -> ReferralOut:
        ref = gate.referrals.get(rid)
        if ref is None:
            raise HTTPException(404)
        return referral_out(ref)

    @r.get("/api/console/referrals/{rid}/photo/{which}", tags=["console"],
           responses={200: {"content": {"image/jpeg": {}}}})
    def photo(rid: str, which: Literal["chip", "live"],
              _: Session = Depends(role("officer", "supervisor"))) -> Response:
        ref = gate.referrals.get(rid)
        data = None if ref is None else (ref.record.personal.chip_face_jpeg if which == "chip"
                                         else ref.record.personal.live_face_jpeg)
        if data is None:
            raise HTTPException(404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def audit_store() -> Any:
        if gate.audit is None or not hasattr(gate.audit, "search"):
            raise HTTPException(503, "audit store unavailable")
        return gate.audit

    @r.get("/api/console/history", response_model=list[PastReferralOut], tags=["console"], responses={503: {}})
    def history(limit: int = 50, _: Session = Depends(role("officer", "supervisor"))) -> list[PastReferralOut]:
        """This lane's latest referrals as the audit trail recorded them (they outlive a
        restart and the in-memory queue), newest first, with the officer's resolution."""
        store = audit_store()
        try:
            refs = store.search(outcome="refer", gate_id=gate.settings.gate_id, newest_first=True,
                                limit=min(max(limit, 1), 500))
            overrides = {o.transaction_id: o for o in store.search(
                event_type="override", gate_id=gate.settings.gate_id, since=refs[-1].occurred_at,
                limit=None)} if refs else {}
        except Exception as e:
            raise HTTPException(503, f"audit search failed: {type(e).__name__}")
        out = []
        for x in refs:
            o = overrides.get(x.transaction_id)
            out.append(PastReferralOut(record_id=x.id, transaction_id=x.transaction_id, occurred_at=x.to_json()[
                "occurred_at"], gate_id=x.gate_id, reasons=x.reason_codes, has_face_image=x.has_face_image,
                resolved=o and o.outcome, resolved_by=o and o.actor))
        return out

    @r.get("/api/console/records/{record_id}/photo/{which}", tags=["console"],
           responses={200: {"content": {"image/jpeg": {}}}, 403: {}, 404: {}, 503: {}})
    def record_photo(record_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)], which: Literal["chip", "live"],
                     sess: Session = Depends(role("officer", "supervisor", "auditor"))) -> Response:
        """A face image kept with an audit record (`audit.keep_face_images`): auditors see any,
        officers and supervisors this lane's referrals. Each view is itself audited."""
        store = audit_store()
        try:
            rec = store.get(record_id)
            allowed = rec is not None and (sess.user.role == "auditor" or (
                rec.outcome == "refer" and rec.gate_id == gate.settings.gate_id))
            data = store.face_image(record_id, which) if allowed else None
        except Exception as e:
            raise HTTPException(503, f"audit store failed: {type(e).__name__}")
        if rec is not None and not allowed:
            raise HTTPException(403, "officers see the face images of this lane's referrals only")
        if data is None:
            raise HTTPException(404)
        try:
            store.append(AuditEvent(event_type="face_view", gate_id=gate.settings.gate_id, actor=sess.user.username,
                                    transaction_id=rec.transaction_id, outcome=which,
                                    checks={"record_id": record_id}))
        except AuditUnavailable:
            raise HTTPException(503, "audit store unavailable: the view could not be recorded")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @r.post("/api/console/referrals/{rid}/override", response_model=ReferralOut, tags=["console"])
    def override(rid: str, body: OverrideIn, sess: Session = Depends(role(*override_roles))) -> ReferralOut:
        try:
            ref = gate.resolve(rid, body.action, body.reason, sess.user.username)
        except OverrideError as e:
            raise HTTPException(409, str(e))
        except Exception as e:   # the audit store or the barrier failed: nothing was opened unaudited
            log.error("override failed", extra={"referral_id": rid, "error_type": type(e).__name__})
            raise HTTPException(503, f"override not carried out: {type(e).__name__}")
        return referral_out(ref)

    @r.get("/api/console/users", response_model=list[UserOut], tags=["console"])
    def list_users(_: Session = Depends(role("supervisor"))) -> list[UserOut]:
        return [UserOut(username=u.username, role=u.role, disabled=u.disabled) for u in users.list()]

    def manage(action: str, sess: Session, change: Any, username: str | None = None) -> Any:
        """An account change by a supervisor: audited with the change itself, or not made."""
        if username == sess.user.username:
            raise HTTPException(400, "you cannot change your own account here")
        try:
            result = change()
        except UserError as e:
            raise HTTPException(404 if str(e) == "no such user" else 400, str(e))
        except AuditUnavailable:
            raise HTTPException(503, "audit store unavailable: the account was not changed")
        log.info("account changed", extra={"user": sess.user.username, "action": action})
        return result

    def user_out(username: str) -> UserOut:
        u = users.get(username)
        return UserOut(username=u.username, role=u.role, disabled=u.disabled)

    @r.post("/api/console/users", response_model=UserOut, status_code=201, tags=["console"],
            responses={400: {}, 503: {}})
    def add_user(body: UserIn, sess: Session = Depends(role("supervisor"))) -> UserOut:
        manage("user_add", sess, lambda: users.add(body.username, body.password, body.role,
                                                   actor=sess.user.username))
        return user_out(body.username)

    @r.post("/api/console/users/{username}/disabled", response_model=UserOut, tags=["console"],
            responses={400: {}, 404: {}, 503: {}})
    def disable_user(username: str, body: DisableIn, sess: Session = Depends(role("supervisor"))) -> UserOut:
        """Disabling ends the account's sessions at every gate sharing the database."""
        manage("user_disable", sess, lambda: users.set_disabled(username, body.disabled, actor=sess.user.username),
               username)
        return user_out(username)

    @r.post("/api/console/users/{username}/role", response_model=UserOut, tags=["console"],
            responses={400: {}, 404: {}, 503: {}})
    def set_role(username: str, body: RoleIn, sess: Session = Depends(role("supervisor"))) -> UserOut:
        manage("user_role", sess, lambda: users.set_role(username, body.role, actor=sess.user.username), username)
        return user_out(username)

    @r.post("/api/console/users/{username}/password", response_model=UserOut, tags=["console"],
            responses={400: {}, 404: {}, 503: {}})
    def set_password(username: str, body: PasswordIn, sess: Session = Depends(role("supervisor"))) -> UserOut:
        """A supervisor sets a new password; the account's sessions end everywhere."""
        manage("user_password", sess, lambda: users.set_password(username, body.password,
                                                                 actor=sess.user.username), username)
        return user_out(username)

    def audit_query(since: dt.datetime | None, until: dt.datetime | None, outcome: str | None,
                    reason: str | None, event_type: str | None, transaction_id: str | None,
                    document_number: str | None, limit: int) -> list[Any]:
        store = audit_store()
        try:
            return store.search(since=since, until=until, outcome=outcome or None, reason=reason or None,
                                event_type=event_type or None, transaction_id=transaction_id or None,
                                document_number=document_number or None, limit=limit)
        except Exception as e:
            raise HTTPException(503, f"audit search failed: {type(e).__name__}")

    @r.get("/api/console/audit", tags=["console"])
    def audit_search(since: dt.datetime | None = None, until: dt.datetime | None = None,
                     outcome: str | None = None, reason: str | None = None, event_type: str | None = None,
                     transaction_id: str | None = None, document_number: str | None = None,
                     limit: int = 200, sess: Session = Depends(role("auditor"))) -> list[dict[str, Any]]:
        recs = audit_query(since, until, outcome, reason, event_type, transaction_id, document_number,
                           min(max(limit, 1), 5000))
        log.info("audit search", extra={"user": sess.user.username, "action": "audit_search"})
        return [x.to_json() for x in recs]

    @r.get("/api/console/audit/export", tags=["console"])
    def audit_export(format: Literal["jsonl", "csv"] = "jsonl", since: dt.datetime | None = None,
                     until: dt.datetime | None = None, outcome: str | None = None, reason: str | None = None,
                     event_type: str | None = None, transaction_id: str | None = None,
                     sess: Session = Depends(role("auditor"))) -> Response:
        from gate.audit import export_csv, export_jsonl
        recs = audit_query(since, until, outcome, reason, event_type, transaction_id, None, 100000)
        buf = io.StringIO()
        (export_csv if format == "csv" else export_jsonl)(recs, buf)
        log.info("audit export", extra={"user": sess.user.username, "action": "audit_export"})
        return Response(buf.getvalue(), media_type="text/csv" if format == "csv" else "application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'})

    @r.get("/api/console/dashboard", tags=["console"])
    def dashboard(bucket_minutes: int = 5, _: Session = Depends(role("supervisor"))) -> dict[str, Any]:
        return dashboard_data(gate, max(1, min(bucket_minutes, 1440)))

    return r


def dashboard_data(gate: Gate, bucket_minutes: int) -> dict[str, Any]:
    """Throughput and outcomes per time bucket, and referral reasons, from this lane's
    recent history (reason codes only)."""
    buckets: dict[str, Tally] = {}
    reasons: Tally = Tally()
    seconds: list[float] = []
    for started, outcome, rs, took in list(gate.history):
        b = started.replace(minute=started.minute - started.minute % bucket_minutes, second=0, microsecond=0)
        buckets.setdefault(b.isoformat(), Tally())[outcome] += 1
        shown = [x for x in rs if not x.startswith("missing.")] or list(rs)   # not-reached checks are noise
        reasons.update(x.split(":")[0] for x in shown)
        seconds.append(took)
    return {"bucket_minutes": bucket_minutes,
            "series": [{"t": k, "passed": v.get("passed", 0), "referred": v.get("referred", 0)}
                       for k, v in sorted(buckets.items())],
            "reasons": dict(reasons.most_common(12)),
            "totals": {"transactions": len(seconds),
                       "passed": sum(v.get("passed", 0) for v in buckets.values()),
                       "referred": sum(v.get("referred", 0) for v in buckets.values()),
                       "mean_seconds": round(sum(seconds) / len(seconds), 3) if seconds else None},
            "open_referrals": len(gate.open_referrals())}


# --- operations ----------------------------------------------------------------------------------

def _operations(gate: Gate) -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz")
    def readyz() -> JSONResponse:
        rd = gate.readiness()
        return JSONResponse(rd, status_code=200 if rd["ready"] else 503)

    @r.get("/metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r


# --- integrator (simulated devices only) ---------------------------------------------------------

def as_jpeg(data: bytes) -> bytes:
    """The uploaded face photo as the JPEG a chip's DG2 holds; 400 for anything else."""
    import cv2
    import numpy as np
    if len(data) > 5_000_000:
        raise HTTPException(400, "photo larger than 5 MB")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None or min(img.shape[:2]) < 64:
        raise HTTPException(400, "photo must be a JPEG or PNG image of at least 64x64 pixels")
    if data.startswith(b"\xff\xd8"):
        return data
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def _integrator(gate: Gate) -> APIRouter:
    r = APIRouter(prefix="/integrator", tags=["integrator"])
    lane = gate.lane

    @r.post("/cards", response_model=CardOut, status_code=201)
    async def issue_card(persona: str = Form("demo", description="base persona name"),
                         document_number: str | None = Form(None), surname: str | None = Form(None),
                         given_names: str | None = Form(None), nationality: str | None = Form(None),
                         date_of_birth: dt.date | None = Form(None), date_of_expiry: dt.date | None = Form(None),
                         sex: Literal["M", "F", "X"] | None = Form(None),
                         dg13: str | None = Form(None, description="JSON object {tag number: text}"),
                         photo: UploadFile | None = File(None, description="face photo for DG2 (JPEG or PNG, stored as JPEG)")) -> CardOut:
        """Issue a simulated card signed by the simulation's test CSCA."""
        from cardreader.sim.persona import load_persona
        try:
            base = load_persona(persona)
        except Exception:
            raise HTTPException(404, "unknown persona")
        photo_path = None
        if photo is not None:
            photo_path = save_upload(gate.settings.data_dir, f"photo-{len(lane.issued) + 1}.jpg",
                                     as_jpeg(await photo.read()))
        try:
            dg13_fields = None if dg13 is None else {int(k): str(v) for k, v in json.loads(dg13).items()}
        except (ValueError, AttributeError):
            raise HTTPException(400, "dg13 must be a JSON object of tag number to text")
        p = persona_from(base, document_number=document_number, surname=surname, given_names=given_names,
                         nationality=nationality, date_of_birth=date_of_birth, date_of_expiry=date_of_expiry,
                         sex=sex, face_image_path=photo_path, dg13=dg13_fields)
        try:
            card_id = await asyncio.to_thread(lane.issue, p)
        except Exception as e:
            raise HTTPException(400, f"cannot issue the card: {type(e).__name__}")
        return CardOut(card_id=card_id)

    @r.post("/reader/insert/{card_id}", status_code=204)
    def insert(card_id: str, side: Literal["mrz", "front"] = Query(
            "mrz", description="the side the document scanner sees: the printed MRZ, or a chip ID "
                               "card's front with only the CAN (the chip is then opened with PACE-CAN)")) -> Response:
        if card_id not in lane.issued:
            raise HTTPException(404, "unknown card")
        lane.insert(card_id, side=side)
        return Response(status_code=204)

    @r.post("/reader/remove", status_code=204)
    def remove() -> Response:
        lane.remove()
        return Response(status_code=204)

    @r.post("/camera", status_code=204)
    def camera(body: CameraIn) -> Response:
        from gate.station import camera_from
        if body.kind != "recorded" and not body.paths:
            raise HTTPException(400, "paths: at least one image or clip")
        for p in body.paths:
            if not Path(p).is_file():
                raise HTTPException(400, "camera source file not found")
        from biometrics.camera import CameraError
        source = body.paths if body.kind == "images" else (body.paths or [""])[0]
        try:
            gate.camera.set_source(camera_from(body.kind, source, gate.settings.camera.fps, body.simulate_motion))
        except CameraError:
            raise HTTPException(400, "camera source unreadable") from None
        return Response(status_code=204)

    @r.post("/identity", status_code=204)
    def identity(body: IdentityAnswerIn) -> Response:
        from gate.identity import normalise_document_number
        scripted = gate.devices.identity
        if not hasattr(scripted, "answers"):
            raise HTTPException(409, "the identity service is not scriptable")
        scripted.answers[normalise_document_number(body.document_number)] = (body.outcome, body.reasons)
        return Response(status_code=204)

    @r.get("/barrier", response_model=BarrierOut)
    def barrier() -> BarrierOut:
        b = gate.devices.barrier
        return BarrierOut(state=b.state().value, history=list(getattr(b, "history", [])))

    @r.post("/barrier/passage", status_code=204)
    def passage() -> Response:
        b = gate.devices.barrier
        if not hasattr(b, "passage"):
            raise HTTPException(409, "not a simulated barrier")
        b.passage()
        return Response(status_code=204)

    @r.get("/transactions")
    def transactions(limit: int = 20) -> list[dict[str, Any]]:
        """The latest transaction records (no personal data), newest first."""
        return list(gate.recent)[::-1][:max(1, min(limit, 500))]

    @r.get("/transactions/{tid}")
    def transaction(tid: str) -> dict[str, Any]:
        for rec in gate.recent:
            if rec["id"] == tid:
                return rec
        raise HTTPException(404)

    return r
