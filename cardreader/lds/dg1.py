"""DG1: the MRZ as stored on the chip (ICAO 9303-10 §4.7.1): 61 { 5F1F mrz }."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cardreader.lds import LDSError, tlv
from cardreader.lds.mrz import MRZ, MRZError, parse_mrz

TAG = 0x61
MRZ_TAG = 0x5F1F


class DG1Error(LDSError):
    """DG1 is not a well-formed MRZ data group."""


@dataclass(frozen=True, repr=False)
class DG1:
    mrz: MRZ

    @property
    def format(self) -> str:
        return self.mrz.format

    @classmethod
    def parse(cls, data: bytes, *, today: dt.date | None = None) -> "DG1":
        root = tlv.parse_one(data, TAG)
        raw = root.require(MRZ_TAG).value
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DG1Error("MRZ is not ASCII", "bad_character") from None
        if len(text) not in (90, 72, 88):
            raise DG1Error(f"MRZ of {len(text)} characters", "bad_layout")
        try:
            return cls(parse_mrz(text, today=today))
        except MRZError as e:
            raise DG1Error(str(e), e.reason) from None

    def as_dict(self) -> dict[str, object]:
        """Every MRZ field (personal data: for explicit output only, never logs)."""
        m = self.mrz
        out = {k: getattr(m, k) for k in (
            "format", "document_code", "issuing_state", "document_number", "sex", "nationality",
            "primary_identifier", "secondary_identifier", "optional_data", "optional_data_2")}
        out.update(date_of_birth=m.date_of_birth.isoformat() if m.date_of_birth else None,
                   date_of_expiry=m.date_of_expiry.isoformat() if m.date_of_expiry else None,
                   checks=m.checks, valid=m.valid, problems=list(m.problems), lines=list(m.lines))
        return out

    def __repr__(self) -> str:
        return f"DG1(format={self.mrz.format}, <personal data hidden>)"


def build_dg1(mrz_text: str) -> bytes:
    """DG1 from MRZ text (lines joined or separated by newlines)."""
    lines = "".join(mrz_text.split())
    parse_mrz(lines)  # refuse to encode something that is not an MRZ
    return tlv.encode(TAG, tlv.encode(MRZ_TAG, lines.encode("ascii")))
