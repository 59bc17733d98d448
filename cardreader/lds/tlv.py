"""Strict, bounded BER-TLV (ISO/IEC 7816-4 / ICAO 9303-10 encoding of LDS files).

Card data is hostile input: every length is checked against the bytes that
are really there, nesting is limited, indefinite and over-long length
encodings are refused (ICAO 9303 files are DER-like), and bytes left over
after the last TLV are an error rather than silently ignored. Tags are kept
as the integer of their encoded bytes (0x5F1F, 0x7F61), the ICAO convention.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cardreader.lds import LDSError

MAX_DEPTH = 16
MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 4


class TLVError(LDSError):
    """Malformed BER-TLV (reason: truncated, trailing_bytes, indefinite_length,
    overlong_length, length_too_large, bad_tag, too_deep, missing_tag, wrong_tag)."""


@dataclass(frozen=True)
class TLV:
    """One data object; `children` is set for constructed tags only."""

    tag: int
    value: bytes = field(repr=False)
    children: tuple["TLV", ...] | None = None

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def find(self, tag: int) -> "TLV | None":
        """First direct child with this tag."""
        return next((c for c in self.children or () if c.tag == tag), None)

    def find_all(self, tag: int) -> list["TLV"]:
        return [c for c in self.children or () if c.tag == tag]

    def require(self, tag: int) -> "TLV":
        """Like `find`, but a missing child is a typed error."""
        child = self.find(tag)
        if child is None:
            raise TLVError(f"tag {tag:X} missing inside {self.tag:X}", "missing_tag")
        return child

    def __repr__(self) -> str:  # values may be personal data: show only sizes
        kids = f", children={len(self.children)}" if self.children is not None else ""
        return f"TLV(tag=0x{self.tag:X}, length={len(self.value)}{kids})"


def _is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("tag runs past the end", "truncated")
    first = data[pos]
    if first in (0x00, 0xFF):
        raise TLVError(f"invalid tag byte {first:02X}", "bad_tag")
    tag, pos = first, pos + 1
    if first & 0x1F != 0x1F:
        return tag, pos
    for n in range(MAX_TAG_BYTES - 1):
        if pos >= len(data):
            raise TLVError("tag runs past the end", "truncated")
        b = data[pos]
        if n == 0 and b == 0x80:
            raise TLVError("tag number has a leading zero group", "bad_tag")
        tag, pos = (tag << 8) | b, pos + 1
        if not b & 0x80:
            return tag, pos
    raise TLVError("tag longer than supported", "bad_tag")


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("length runs past the end", "truncated")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if first == 0x80:
        raise TLVError("indefinite length is not allowed", "indefinite_length")
    n = first & 0x7F
    if n > MAX_LENGTH_BYTES:
        raise TLVError(f"{n}-byte length field", "length_too_large")
    if pos + n > len(data):
        raise TLVError("length runs past the end", "truncated")
    length = int.from_bytes(data[pos:pos + n], "big")
    if length < 0x80 or data[pos] == 0:
        raise TLVError("length not in its shortest form", "overlong_length")
    return length, pos + n


def _parse(data: bytes, depth: int) -> list[TLV]:
    if depth > MAX_DEPTH:
        raise TLVError(f"nesting deeper than {MAX_DEPTH}", "too_deep")
    out: list[TLV] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if length > len(data) - pos:
            raise TLVError(f"tag {tag:X} claims {length} bytes, {len(data) - pos} left", "truncated")
        value = bytes(data[pos:pos + length])
        pos += length
        children = tuple(_parse(value, depth + 1)) if _is_constructed(tag) else None
        out.append(TLV(tag, value, children))
    return out


def parse(data: bytes) -> list[TLV]:
    """Parse a buffer that must consist exactly of whole TLVs."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("TLV data must be bytes")
    return _parse(bytes(data), 0)


def parse_one(data: bytes, expected_tag: int | None = None) -> TLV:
    """Parse a buffer holding exactly one TLV (an LDS file), optionally of a given tag."""
    data = bytes(data)
    tag, pos = _read_tag(data, 0)
    length, pos = _read_length(data, pos)
    if length > len(data) - pos:
        raise TLVError(f"tag {tag:X} claims {length} bytes, {len(data) - pos} left", "truncated")
    if pos + length != len(data):
        raise TLVError(f"{len(data) - pos - length} bytes after the TLV", "trailing_bytes")
    if expected_tag is not None and tag != expected_tag:
        raise TLVError(f"expected tag {expected_tag:X}, found {tag:X}", "wrong_tag")
    [tlv] = parse(data)
    return tlv


def peek_tag(data: bytes) -> int:
    """The tag of the TLV starting at data[0]."""
    return _read_tag(bytes(data), 0)[0]


def header_length(data: bytes) -> int:
    """Total size (header + value) of the TLV starting at data[0], from its first bytes.

    Used by readers that fetch the first few bytes of a file to learn its size.
    """
    tag, pos = _read_tag(bytes(data), 0)
    length, pos = _read_length(bytes(data), pos)
    return pos + length


def encode_tag(tag: int) -> bytes:
    if tag <= 0:
        raise ValueError("tag must be positive")
    return tag.to_bytes((tag.bit_length() + 7) // 8, "big")


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > MAX_LENGTH_BYTES:
        raise ValueError("value too long for BER-TLV")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, value: bytes) -> bytes:
    """DER-style TLV: minimal length encoding."""
    return encode_tag(tag) + encode_length(len(value)) + bytes(value)
