"""The LDS file directory: identifiers, and `parse_file` for any single file by its tag."""
from __future__ import annotations

import importlib
from typing import Any

from cardreader.lds import LDSError, tlv

FILE_IDS = {"EF.COM": 0x011E, "EF.SOD": 0x011D, "EF.CardAccess": 0x011C,
            **{f"DG{n}": 0x0100 + n for n in range(1, 17)}}
SFI = {"EF.COM": 0x1E, "EF.SOD": 0x1D, "EF.CardAccess": 0x1C, **{f"DG{n}": n for n in range(1, 17)}}

# tag -> (file name, module, parser attribute)
PARSERS: dict[int, tuple[str, str, str]] = {
    0x60: ("EF.COM", "cardreader.lds.com", "COM.parse"),
    0x61: ("DG1", "cardreader.lds.dg1", "DG1.parse"),
    0x75: ("DG2", "cardreader.lds.dg2", "DG2.parse"),
    0x6B: ("DG11", "cardreader.lds.dg11", "DG11.parse"),
    0x6C: ("DG12", "cardreader.lds.dg12", "DG12.parse"),
    0x6D: ("DG13", "cardreader.lds.dg13", "DG13.parse"),
    0x6E: ("DG14", "cardreader.lds.dg14", "DG14.parse"),
    0x6F: ("DG15", "cardreader.lds.dg15", "DG15.parse"),
    0x77: ("EF.SOD", "cardreader.lds.sod", "parse_sod"),
    0x31: ("EF.CardAccess", "cardreader.lds.security_infos", "parse_security_infos"),
}


class UnknownFileError(LDSError):
    """Bytes whose outer tag is no LDS file this reader knows."""


def file_name(data: bytes) -> str:
    """The LDS file name ('DG2', 'EF.SOD', ...) its outer tag says it is."""
    if not data:
        raise tlv.TLVError("empty file", "truncated")
    tag = tlv.peek_tag(data)
    if tag not in PARSERS:
        raise UnknownFileError(f"tag {tag:X} is no known LDS file", "unknown_file")
    return PARSERS[tag][0]


def _parser(tag: int):
    _, module, attr = PARSERS[tag]
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def parse_file(data: bytes) -> Any:
    """Parse one LDS file, recognised by its outer tag.

    Raises only `LDSError` subclasses: errors from parsers that report with
    their own types (EF.SOD, SecurityInfos) are wrapped, keeping the reason.
    """
    name = file_name(data)
    tag = tlv.peek_tag(data)
    try:
        return _parser(tag)(bytes(data))
    except LDSError:
        raise
    except (ValueError, TypeError, KeyError) as e:  # foreign parsers' typed errors
        raise LDSError(f"{name} malformed: {type(e).__name__}", getattr(e, "reason", "malformed")) from e


def describe(parsed: Any) -> dict[str, Any]:
    """A JSON-ready view of a parsed file (images summarised, never their bytes)."""
    if hasattr(parsed, "as_dict"):
        return parsed.as_dict()
    if hasattr(parsed, "dg_hashes"):  # EF.SOD
        return {"hash_algorithm": parsed.hash_algorithm, "lds_version": parsed.lds_version,
                "data_group_hashes": {f"DG{n}": h.hex() for n, h in sorted(parsed.dg_hashes.items())},
                "certificates": [c.subject.human_friendly for c in parsed.certificates]}
    if hasattr(parsed, "pace"):  # EF.CardAccess SecurityInfos
        return {"pace": [{"protocol": p.name, "parameter_id": p.parameter_id} for p in parsed.pace],
                "chip_authentication": [{"agreement": c.agreement, "cipher": c.cipher, "key_id": c.key_id}
                                        for c in parsed.chip_authentication],
                "unknown": parsed.unknown}
    raise TypeError(f"cannot describe {type(parsed).__name__}")


def register(subparsers) -> None:
    """`python -m cardreader parse FILE [--json]`."""
    p = subparsers.add_parser("parse", help="parse one LDS file (EF.COM, DGn, EF.SOD, EF.CardAccess) by its tag")
    p.add_argument("file", help="the file's bytes as read from the chip")
    p.add_argument("--json", action="store_true", help="print every field as JSON")
    p.set_defaults(func=_cli_parse)


def _cli_parse(args) -> int:
    import json
    from pathlib import Path

    data = Path(args.file).read_bytes()
    try:
        name, parsed = file_name(data), parse_file(data)
    except LDSError as e:
        print(json.dumps({"error": e.reason, "detail": str(e)}) if args.json else f"error: {e.reason}: {e}")
        return 2
    if args.json:
        print(json.dumps({"file": name, "size": len(data), **describe(parsed)}, ensure_ascii=False, indent=2))
    else:
        print(f"{name}: {len(data)} bytes, {parsed!r}")
    return 0
