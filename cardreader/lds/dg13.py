"""DG13 of Vietnam's chip citizen ID card (CCCD): national data in UTF-8.

ICAO leaves DG13 to the issuing state. The layout below is the one public
readers of the CCCD describe: root 6D holding SEQUENCEs `30 { 02 01 NN, value }`
where NN numbers the field and the value is a UTF8String or PrintableString;
parents (13) and spouse (14) hold nested SEQUENCEs of strings. Public sources
disagree on whether 15 or 16 carries the old ID number, so both are named.
Entries are found wherever they sit under the root (some cards wrap them),
unknown numbers are kept, and diacritics stay intact (NFC).
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from cardreader.lds import LDSError, tlv

TAG = 0x6D
FIELDS = {1: "id_number", 2: "full_name", 3: "date_of_birth", 4: "sex", 5: "nationality",
          6: "ethnicity", 7: "religion", 8: "place_of_origin", 9: "place_of_residence",
          10: "identifying_marks", 11: "date_of_issue", 12: "date_of_expiry", 13: "parents",
          14: "spouse", 15: "old_id_number", 16: "previous_id_number"}
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x04: "utf-8", 0x1E: "utf-16-be"}
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
_PRINTABLE_FIELDS = {1, 3, 11, 15, 16}
MAX_FIELDS = 64


class DG13Error(LDSError):
    """DG13 does not follow the CCCD layout."""


@dataclass(frozen=True, repr=False)
class DG13:
    fields: dict[int, str | list[str]]  # field number -> value (list for nested names)

    def get(self, name: str) -> str | list[str] | None:
        number = next((n for n, f in FIELDS.items() if f == name), None)
        return self.fields.get(number) if number else None

    @property
    def father_name(self) -> str | None:
        return _nth(self.fields.get(13), 0)

    @property
    def mother_name(self) -> str | None:
        return _nth(self.fields.get(13), 1)

    @property
    def spouse_name(self) -> str | None:
        return _nth(self.fields.get(14), 0)

    def date(self, name: str) -> dt.date | None:
        """A dd/mm/yyyy field as a date; None when absent or not a date (e.g. 'Không thời hạn')."""
        value = self.get(name)
        if not isinstance(value, str):
            return None
        try:
            return dt.datetime.strptime(value.strip(), "%d/%m/%Y").date()
        except ValueError:
            return None

    def as_dict(self) -> dict[str, str | list[str]]:
        """Named fields (unknown numbers as 'field_NN'), parents split into father/mother."""
        out: dict[str, str | list[str]] = {}
        for n, value in sorted(self.fields.items()):
            name = FIELDS.get(n, f"field_{n}")
            if n == 13:
                out["father_name"] = self.father_name or ""
                out["mother_name"] = self.mother_name or ""
            elif n == 14:
                out["spouse_name"] = self.spouse_name or ""
            else:
                out[name] = value
        return out

    @classmethod
    def parse(cls, data: bytes) -> "DG13":
        root = tlv.parse_one(data, TAG)
        fields: dict[int, str | list[str]] = {}
        for entry in _entries(root):
            number = int.from_bytes(entry.children[0].value, "big")
            if number in fields:
                raise DG13Error(f"field {number} appears twice", "duplicate_field")
            if len(fields) >= MAX_FIELDS:
                raise DG13Error("too many fields", "too_many_fields")
            fields[number] = _value(entry.children[1:], number)
        if not fields:
            raise DG13Error("no numbered fields", "no_fields")
        return cls(fields)

    def __repr__(self) -> str:
        return f"DG13(fields={sorted(self.fields)}, <personal data hidden>)"


def _nth(value: str | list[str] | None, i: int) -> str | None:
    if isinstance(value, list):
        return value[i] if i < len(value) else None
    return value if i == 0 else None


def _is_entry(node: tlv.TLV) -> bool:
    kids = node.children or ()
    return (node.tag == 0x30 and len(kids) >= 1 and kids[0].tag == 0x02
            and len(kids[0].value) == 1 and kids[0].value[0] < 0x80)


def _entries(node: tlv.TLV) -> list[tlv.TLV]:
    """Numbered entries in document order, wherever they are nested."""
    out = []
    for child in node.children or ():
        if _is_entry(child):
            out.append(child)
        elif child.constructed:
            out.extend(_entries(child))
    return out


def _string(node: tlv.TLV, number: int) -> str:
    codec = _STRINGS.get(node.tag)
    if codec is None or node.constructed:
        raise DG13Error(f"field {number} holds tag {node.tag:X}, not a string", "bad_value")
    try:
        return unicodedata.normalize("NFC", node.value.decode(codec))
    except UnicodeDecodeError:
        raise DG13Error(f"field {number} is not valid {codec}", "bad_encoding") from None


def _value(nodes: tuple[tlv.TLV, ...], number: int) -> str | list[str]:
    """One string, or a list for nested SEQUENCEs of strings (parents, spouse)."""
    strings: list[str] = []
    nested = False
    for node in nodes:
        if node.tag == 0x30:
            nested = True
            strings.extend(_string(s, number) for s in node.children or ())
        else:
            strings.append(_string(node, number))
    if nested or len(strings) > 1:
        return strings
    return strings[0] if strings else ""


def build_dg13(fields: dict[int, str | list[str]]) -> bytes:
    """DG13 in the CCCD layout; lists become nested SEQUENCEs (parents, spouse)."""
    e = tlv.encode
    body = b""
    for number in sorted(fields):
        value = fields[number]
        if isinstance(value, list):
            content = b"".join(e(0x30, e(0x0C, v.encode("utf-8"))) for v in value)
        elif number in _PRINTABLE_FIELDS and _PRINTABLE.fullmatch(value):
            content = e(0x13, value.encode("ascii"))
        else:
            content = e(0x0C, unicodedata.normalize("NFC", value).encode("utf-8"))
        body += e(0x30, e(0x02, bytes([number])) + content)
    return e(TAG, body)
