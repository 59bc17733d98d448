"""EF.COM (ICAO 9303-10 §4.6.1): LDS version, Unicode version and the list of
data groups present: 60 { 5F01 'aabb', 5F36 'aabbcc', 5C tag-list }."""
from __future__ import annotations

from dataclasses import dataclass

from cardreader.lds import LDSError, tlv

TAG = 0x60
DG_TAGS = {1: 0x61, 2: 0x75, 3: 0x63, 4: 0x76, 5: 0x65, 6: 0x66, 7: 0x67, 8: 0x68,
           9: 0x69, 10: 0x6A, 11: 0x6B, 12: 0x6C, 13: 0x6D, 14: 0x6E, 15: 0x6F, 16: 0x70}
TAG_DGS = {t: n for n, t in DG_TAGS.items()}


class COMError(LDSError):
    """EF.COM is malformed."""


@dataclass(frozen=True)
class COM:
    lds_version: str  # e.g. "0108" = LDS 1.8
    unicode_version: str  # e.g. "040000"
    tags: tuple[int, ...]

    @property
    def data_groups(self) -> list[str]:
        """Names ('DG1', ...) of the data groups listed; unknown tags are left out."""
        return [f"DG{TAG_DGS[t]}" for t in self.tags if t in TAG_DGS]

    def as_dict(self) -> dict[str, object]:
        return {"lds_version": self.lds_version, "unicode_version": self.unicode_version,
                "data_groups": self.data_groups, "tags": [f"{t:02X}" for t in self.tags]}

    @classmethod
    def parse(cls, data: bytes) -> "COM":
        root = tlv.parse_one(data, TAG)
        try:
            lds = root.require(0x5F01).value.decode("ascii")
            uni = root.require(0x5F36).value.decode("ascii")
        except UnicodeDecodeError:
            raise COMError("version is not ASCII digits", "bad_version") from None
        if not (len(lds) == 4 and lds.isdigit() and len(uni) == 6 and uni.isdigit()):
            raise COMError("version fields are not 4 and 6 digits", "bad_version")
        return cls(lds, uni, tuple(root.require(0x5C).value))


def build_com(data_groups: list[int | str], lds_version: str = "0108",
              unicode_version: str = "040000") -> bytes:
    """EF.COM listing the given data groups (numbers or names like 'DG2')."""
    numbers = [int(str(d).removeprefix("DG")) for d in data_groups]
    tag_list = bytes(DG_TAGS[n] for n in numbers)
    return tlv.encode(TAG, tlv.encode(0x5F01, lds_version.encode()) + tlv.encode(0x5F36, unicode_version.encode())
                      + tlv.encode(0x5C, tag_list))
