"""The holder and document a simulated chip is issued for.

A persona is data (JSON), so demo cards and test cards are edited without
touching code. Image paths may start with `{shared}`, the shared data folder
(`$EGATE_SHARED_DIR`, else the checkout's `../shared`), so the photos stay
outside the repository; other relative paths are relative to the JSON file.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PERSONAS_DIR = Path(__file__).resolve().parent / "personas"
CHECKOUT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    return Path(os.environ.get("EGATE_SHARED_DIR", CHECKOUT.parent / "shared"))


class Persona(BaseModel):
    """Everything printed on or stored in one document. Personal data: repr hidden."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_type: Literal["ID", "P"] = "ID"  # ID: TD1 card; P: TD3 passport
    issuing_state: str = Field(pattern=r"^[A-Z<]{3}$")
    document_number: str = Field(pattern=r"^[A-Z0-9]{1,22}$")
    surname: str
    given_names: str
    nationality: str = Field(pattern=r"^[A-Z<]{3}$")
    date_of_birth: dt.date
    sex: Literal["M", "F", "X"]
    date_of_expiry: dt.date
    date_of_issue: dt.date | None = None
    optional_data: str = ""
    face_image_path: Path
    can: str = Field(pattern=r"^[0-9]{6}$")
    dg13: dict[int, str | list[str]] = Field(default_factory=dict)  # Vietnam CCCD national data
    dg11: dict[str, str | list[str]] | None = None  # additional personal details (dg11.FIELDS names)
    dg12: dict[str, str | list[str]] | None = None  # additional document details (dg12.FIELDS names)

    @field_validator("dg13")
    @classmethod
    def _dg13_numbers(cls, v: dict[int, str | list[str]]) -> dict[int, str | list[str]]:
        if any(not 1 <= n <= 127 for n in v):
            raise ValueError("DG13 field numbers are 1..127")
        return v

    @property
    def mrz(self) -> str:
        """The MRZ text this document carries (TD1 for ID cards, TD3 for passports)."""
        from cardreader.lds.mrz import build_td1, build_td3

        common = dict(issuing_state=self.issuing_state, document_number=self.document_number,
                      date_of_birth=self.date_of_birth, sex=self.sex, date_of_expiry=self.date_of_expiry,
                      nationality=self.nationality, surname=self.surname, given_names=self.given_names,
                      optional_data=self.optional_data)
        if self.document_type == "ID":
            return build_td1(document_code="ID", **common)
        return build_td3(document_code="P", **common)

    def face_image_bytes(self) -> bytes:
        return self.face_image_path.read_bytes()

    def __repr__(self) -> str:
        return f"Persona(document_type={self.document_type}, issuing_state={self.issuing_state}, <personal data hidden>)"

    __str__ = __repr__


def _resolve(path: str, base: Path) -> Path:
    if path.startswith("{shared}"):
        return shared_dir() / path.removeprefix("{shared}").lstrip("/")
    p = Path(path)
    return p if p.is_absolute() else base / p


def load_persona(name_or_path: str | Path) -> Persona:
    """A persona by name ('demo', 'impostor') or from a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PERSONAS_DIR / f"{name_or_path}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["face_image_path"] = str(_resolve(raw["face_image_path"], path.parent))
    return Persona.model_validate(raw)
