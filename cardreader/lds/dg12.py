"""DG12, additional document details (ICAO 9303-10 §4.7.12); same layout as DG11."""
from __future__ import annotations

from cardreader.lds.dg11 import TaggedTextFile, build_tagged

TAG = 0x6C
FIELDS = {
    0x5F19: ("issuing_authority", "text"),
    0x5F26: ("date_of_issue", "date"),
    0x5F1A: ("other_persons", "group"),
    0x5F1B: ("endorsements", "text"),
    0x5F1C: ("tax_exit_requirements", "text"),
    0x5F1D: ("image_of_front", "binary"),
    0x5F1E: ("image_of_rear", "binary"),
    0x5F55: ("personalization_time", "text"),  # YYYYMMDDhhmmss
    0x5F56: ("personalization_device_serial", "text"),
}


class DG12(TaggedTextFile):
    TAG = TAG
    FIELDS = FIELDS


def build_dg12(values: dict[str, object]) -> bytes:
    return build_tagged(values, TAG, FIELDS)
