"""DG11, additional personal details (ICAO 9303-10 §4.7.11), and the
tagged-text layout it shares with DG12: a 5C tag list, then one primitive
per field, repeated names grouped under A0 { 02 count, ... }."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cardreader.lds import LDSError, tlv

TAG = 0x6B
# tag -> (field name, kind): text | list ('<'-separated) | date (YYYYMMDD) | binary
FIELDS = {
    0x5F0E: ("full_name", "text"),
    0x5F0F: ("other_names", "group"),
    0x5F10: ("personal_number", "text"),
    0x5F2B: ("full_date_of_birth", "date"),
    0x5F11: ("place_of_birth", "list"),
    0x5F42: ("permanent_address", "list"),
    0x5F12: ("telephone", "text"),
    0x5F13: ("profession", "text"),
    0x5F14: ("title", "text"),
    0x5F15: ("personal_summary", "text"),
    0x5F16: ("proof_of_citizenship", "binary"),
    0x5F17: ("other_valid_td_numbers", "list"),
    0x5F18: ("custody_information", "text"),
}
MAX_GROUP = 32


class TaggedTextError(LDSError):
    """DG11/DG12 malformed."""


def _decode(value: bytes, kind: str, tag: int) -> str | list[str]:
    if kind == "binary":
        return value.hex()
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise TaggedTextError(f"field {tag:X} is not UTF-8", "bad_encoding") from None
    if kind == "date" and not (len(text) == 8 and text.isdigit()):
        raise TaggedTextError(f"field {tag:X} is not YYYYMMDD", "bad_date")
    return text.split("<") if kind == "list" else text


def parse_tagged(data: bytes, root_tag: int, fields: dict[int, tuple[str, str]]) -> dict[str, object]:
    """Field name -> value for a DG11/DG12-style file."""
    root = tlv.parse_one(data, root_tag)
    root.require(0x5C)
    out: dict[str, object] = {}
    for child in root.children or ():
        if child.tag == 0x5C:
            continue
        if child.tag == 0xA0:  # A0 { 02 count, repeated primitive }
            count = child.require(0x02).value
            members = [c for c in child.children or () if c.tag != 0x02]
            if not members or len(members) > MAX_GROUP or int.from_bytes(count, "big") != len(members) \
                    or len({m.tag for m in members}) != 1 or members[0].tag not in fields:
                raise TaggedTextError("malformed name group", "bad_group")
            out[fields[members[0].tag][0]] = [_decode(m.value, "text", m.tag) for m in members]
            continue
        name, kind = fields.get(child.tag, (f"tag_{child.tag:X}", "binary"))
        if name in out:
            raise TaggedTextError(f"field {child.tag:X} appears twice", "duplicate_field")
        out[name] = _decode(child.value, kind, child.tag)
    return out


def build_tagged(values: dict[str, object], root_tag: int, fields: dict[int, tuple[str, str]]) -> bytes:
    """Encode the named values in the order of `fields` (unknown names are an error)."""
    by_name = {name: (tag, kind) for tag, (name, kind) in fields.items()}
    unknown = set(values) - set(by_name)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    e = tlv.encode
    body, tags = b"", b""
    for name, (tag, kind) in by_name.items():
        if name not in values:
            continue
        value = values[name]
        tags += tlv.encode_tag(tag)
        if kind == "group":
            items = list(value) if isinstance(value, list) else [value]
            body += e(0xA0, e(0x02, bytes([len(items)])) + b"".join(e(tag, v.encode()) for v in items))
        elif kind == "binary":
            body += e(tag, bytes.fromhex(value) if isinstance(value, str) else bytes(value))
        else:
            text = "<".join(value) if isinstance(value, list) else str(value)
            body += e(tag, text.encode("utf-8"))
    return e(root_tag, e(0x5C, tags) + body)


@dataclass(frozen=True, repr=False)
class TaggedTextFile:
    """A parsed DG11/DG12: field name -> value; subclasses set TAG and FIELDS."""

    fields: dict[str, object]
    TAG: ClassVar[int]
    FIELDS: ClassVar[dict[int, tuple[str, str]]]

    @classmethod
    def parse(cls, data: bytes):
        return cls(parse_tagged(data, cls.TAG, cls.FIELDS))

    def as_dict(self) -> dict[str, object]:
        return dict(self.fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fields={sorted(self.fields)}, <personal data hidden>)"


class DG11(TaggedTextFile):
    TAG = TAG
    FIELDS = FIELDS


def build_dg11(values: dict[str, object]) -> bytes:
    return build_tagged(values, TAG, FIELDS)
