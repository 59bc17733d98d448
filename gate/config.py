"""One typed configuration for the gate.

Sources, highest first: environment (`EGATE_...`, nested with `__`), the TOML
file named by `EGATE_CONFIG`, then the embedded defaults below, which run a
complete demo gate on simulated devices. A production profile refuses the
simulation-only switches at start (validated, not merely documented).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict,
                               TomlConfigSettingsSource)

from gate.policy import Policy

CHECKOUT = Path(__file__).resolve().parent.parent
SHARED = CHECKOUT.parent / "shared"


class ReaderSettings(BaseModel):
    kind: Literal["simulated", "pcsc"] = "simulated"
    name: str | None = Field(None, description="PC/SC reader name (substring) or index")
    read_deadline_s: float = 20.0
    command_timeout_s: float = 3.0
    document_camera: str = Field("1", description="pcsc lanes: the document camera (OpenCV index or URL) "
                                                   "whose image gives the printed MRZ")
    trust_store: Path | None = Field(None, description="pcsc lanes: the CSCA trust store directory "
                                                      "(cardreader.pki.TrustStore)")
    mrz_source: Literal["printed", "ocr"] = Field(
        "printed", description="simulation: the access key from the card's printed MRZ as is, or read by "
                               "OCR from a rendered photograph of the card (cardreader.scanner)")
    demo_card: bool = Field(True, description="demo profile, simulated reader: once the face models are "
                                              "loaded, the demo persona's card is placed on the reader and "
                                              "taken back after the outcome was shown (one whole transaction)")


class CameraSettings(BaseModel):
    kind: Literal["images", "clip", "webcam", "recorded"] = Field(
        "images", description="'recorded': a person filmed live (shared pad-dev data) who answers the "
                               "kiosk's challenge prompts (biometrics.camera.RespondingCamera); source unused")
    source: str = str(SHARED / "data" / "demo" / "eileen_collins_nasa.png")
    fps: float = 15.0
    simulate_motion: bool = Field(True, description="simulated camera only: still images are played with "
                                                    "small head movements, as a person in front of a camera")


class IdentitySettings(BaseModel):
    url: str | None = Field(None, description="Identity service base URL; None runs the reference service in-process")
    timeout_s: float = 2.0
    retries: int = 2
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    service_database_url: str = Field("", description="reference identity service database; empty: identity.db in data_dir")
    admin_token: str | None = Field(None, description="bearer token for the reference service's admin API; None disables it")


class AuditSettings(BaseModel):
    database_url: str = ""  # filled from data_dir when empty
    keep_face_images: bool = False
    retention_days: int = 90
    face_retention_days: int = 1
    key_file: Path | None = Field(None, description="keyed-hash/encryption secret; None: audit.key in data_dir (created 0600)")


class FaceSettings(BaseModel):
    capture_window_s: float = Field(10.0, gt=0, description="the face capture; three challenge actions take 5-7 s of it, "
                                    "and slower travellers need the rest")
    challenge: bool = Field(True, description="ask for random actions during the capture, one after the other "
                                              "(blink, small head turn left or right, look up or down, at least one "
                                              "head movement; random order and times); unanswered, late, early or "
                                              "wrong refers the traveller")
    challenge_actions: int = Field(3, ge=1, le=4, description="actions per challenge: each started 0.2-1.7 s after "
                                   "its prompt with 0.3-1.0 s of rest between; 3 take about 5.3 s of the 10 s window")
    challenge_response_s: float = Field(3.0, gt=0, description="each action must be over (back at rest) this soon "
                                        "after its prompt")
    match_threshold: float | None = Field(
        None, description="cosine threshold; None takes the calibrated one from models/calibration.json")


class TransactionSettings(BaseModel):
    """Per-step timeouts (seconds): a device that takes longer refers the traveller."""

    model_config = {"extra": "forbid"}
    scan_s: float = Field(10.0, gt=0)
    read_s: float = Field(25.0, gt=0)
    face_s: float = Field(15.0, gt=0, description="face capture step, must exceed face.capture_window_s")
    identity_s: float = Field(5.0, gt=0)
    audit_s: float = Field(5.0, gt=0)
    barrier_s: float = Field(3.0, gt=0)
    passage_s: float = Field(15.0, gt=0)
    card_wait_s: float = Field(0.5, gt=0, description="poll interval while waiting for a card")
    referral_ttl_s: float = Field(1800.0, gt=0, description="personal data of an unresolved referral "
                                                            "is dropped after this")
    repeat_limit: int = Field(1, ge=0, le=100, description="refer a document at once (no face capture) when it has "
                              "this many referrals in repeat_window_s, at any gate sharing the audit store, that "
                              "no officer has allowed since; 0 disables the rule (integrator test rigs only: "
                              "the production profile refuses it)")
    repeat_window_s: float = Field(1800.0, gt=0, description="how far back the repeat-attempt rule looks")


class KioskSettings(BaseModel):
    model_config = {"extra": "forbid"}
    speech: bool = True
    espeak: str = "espeak-ng"


class ConsoleSettings(BaseModel):
    model_config = {"extra": "forbid"}
    idle_timeout_s: float = 15 * 60
    absolute_timeout_s: float = 8 * 3600
    max_failures: int = Field(5, ge=1, description="failed logins before lockout (per account and per address)")
    lockout_base_s: float = Field(30.0, gt=0, description="first lockout; doubles with each further failure")
    tls: bool = Field(False, description="served behind TLS: session cookies get the Secure flag")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EGATE_", env_nested_delimiter="__", extra="forbid")

    profile: Literal["demo", "production"] = "demo"
    gate_id: str = Field("gate-1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = CHECKOUT / "var"
    models_dir: Path = SHARED / "models"
    manifest: Path = CHECKOUT / "models" / "manifest.json"
    integrator_api: bool = True
    reader: ReaderSettings = ReaderSettings()
    camera: CameraSettings = CameraSettings()
    identity: IdentitySettings = IdentitySettings()
    audit: AuditSettings = AuditSettings()
    face: FaceSettings = FaceSettings()
    transaction: TransactionSettings = TransactionSettings()
    policy: Policy = Policy()
    kiosk: KioskSettings = KioskSettings()
    console: ConsoleSettings = ConsoleSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings,
                                   env_settings, dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("EGATE_CONFIG")
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"EGATE_CONFIG names {path}, which does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_is_real(self) -> "Settings":
        if self.profile == "production":
            problems = []
            if self.integrator_api:
                problems.append("integrator_api must be off")
            if self.reader.kind == "simulated":
                problems.append("reader.kind must be pcsc")
            if self.reader.trust_store is None:
                problems.append("reader.trust_store must name the CSCA trust store")
            if self.camera.kind != "webcam":
                problems.append("camera.kind must be webcam")
            if self.identity.url is None:
                problems.append("identity.url must name the real identity service")
            if not self.face.challenge:   # measured: without it, replays of unseen people pass (README)
                problems.append("face.challenge must be on: the passive liveness evidence alone lets "
                                "screen replays through")
            if self.transaction.repeat_limit == 0:   # else a video of the holder may retry until it passes
                problems.append("transaction.repeat_limit must be at least 1: without it a referred document "
                                "may retry the liveness challenge at once")
            if problems:
                raise ValueError("production profile: " + "; ".join(problems))
        if not self.audit.database_url:
            self.audit.database_url = f"sqlite:///{self.data_dir / 'audit.db'}"
        if not self.identity.service_database_url:
            self.identity.service_database_url = f"sqlite:///{self.data_dir / 'identity.db'}"
        return self


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Only the message and whitelisted context keys are
    written (transaction ids, states, reason codes), so personal data passed by
    mistake in `extra` never reaches the log."""

    KEYS = ("transaction_id", "state", "outcome", "reasons", "step", "error_type", "user", "role",
            "client", "action", "referral_id", "path", "status")

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k in self.KEYS:
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__  # the type only: messages may carry data
        return json.dumps(out, default=str)


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
