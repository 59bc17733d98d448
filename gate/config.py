"""One typed configuration for the gate.

Sources, highest first: environment (`EGATE_...`, nested with `__`), the TOML
file named by `EGATE_CONFIG`, then the embedded defaults below, which run a
complete demo gate on simulated devices. A production profile refuses the
simulation-only switches at start (validated, not merely documented).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict,
                               TomlConfigSettingsSource)

CHECKOUT = Path(__file__).resolve().parent.parent
SHARED = CHECKOUT.parent / "shared"


class ReaderSettings(BaseModel):
    kind: Literal["simulated", "pcsc"] = "simulated"
    name: str | None = Field(None, description="PC/SC reader name (substring) or index")
    read_deadline_s: float = 20.0
    command_timeout_s: float = 3.0


class CameraSettings(BaseModel):
    kind: Literal["images", "clip", "webcam"] = "images"
    source: str = str(SHARED / "data" / "demo" / "eileen_collins_nasa.png")
    fps: float = 15.0


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
    capture_window_s: float = 8.0
    match_threshold: float | None = Field(
        None, description="cosine threshold; None takes the calibrated one from models/calibration.json")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EGATE_", env_nested_delimiter="__", extra="forbid")

    profile: Literal["demo", "production"] = "demo"
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
            if self.identity.url is None:
                problems.append("identity.url must name the real identity service")
            if problems:
                raise ValueError("production profile: " + "; ".join(problems))
        if not self.audit.database_url:
            self.audit.database_url = f"sqlite:///{self.data_dir / 'audit.db'}"
        if not self.identity.service_database_url:
            self.identity.service_database_url = f"sqlite:///{self.data_dir / 'identity.db'}"
        return self
