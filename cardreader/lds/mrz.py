"""Machine Readable Zone (ICAO 9303 parts 3-6): parse, check, build.

Check digits are reported per field in `MRZ.checks`, never silently
accepted or "corrected": the decision belongs to the caller. Two-digit years
are resolved against an injectable `today`: a birth date is the latest
century that is not in the future, an expiry date lies within
`EXPIRY_WINDOW_YEARS` ahead of today.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

from cardreader.lds import LDSError

EXPIRY_WINDOW_YEARS = 50
_WEIGHTS = (7, 3, 1)
_VALID = re.compile(r"[A-Z0-9<]*")
_LAYOUT = {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}


class MRZError(LDSError):
    """Text that cannot be an MRZ (wrong length, characters or layout)."""


def _char_value(c: str) -> int:
    if c.isdigit():
        return int(c)
    if "A" <= c <= "Z":
        return ord(c) - ord("A") + 10
    if c == "<":
        return 0
    raise MRZError("invalid MRZ character", "bad_character")


def check_digit(s: str) -> str:
    """ICAO 9303-3 §4.9: weights 7,3,1 over character values, modulo 10."""
    return str(sum(_char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(s)) % 10)


def _ok(field_: str, digit: str) -> bool:
    return digit.isdigit() and check_digit(field_) == digit


@dataclass(frozen=True, repr=False)
class MRZKey:
    """The document-number/birth/expiry triple that derives BAC/PACE keys."""

    document_number: str
    date_of_birth: str  # YYMMDD
    date_of_expiry: str  # YYMMDD

    def key_seed_input(self) -> str:
        """ICAO 9303-11 §9.7.1: docno (padded to 9) + cd + dob + cd + doe + cd."""
        docno = self.document_number.ljust(9, "<")
        return (docno + check_digit(docno) + self.date_of_birth + check_digit(self.date_of_birth)
                + self.date_of_expiry + check_digit(self.date_of_expiry))

    def __repr__(self) -> str:
        return "MRZKey(<personal data hidden>)"


@dataclass(frozen=True, repr=False)
class MRZ:
    format: str
    document_code: str
    issuing_state: str
    document_number: str
    date_of_birth: dt.date | None
    date_of_expiry: dt.date | None
    sex: str
    nationality: str
    primary_identifier: str
    secondary_identifier: str
    optional_data: str
    optional_data_2: str
    checks: dict[str, bool]
    lines: tuple[str, ...]
    raw_date_of_birth: str = ""
    raw_date_of_expiry: str = ""
    problems: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return all(self.checks.values()) and not self.problems

    def bac_key(self) -> MRZKey:
        return MRZKey(self.document_number, self.raw_date_of_birth, self.raw_date_of_expiry)

    def __repr__(self) -> str:
        return f"MRZ(format={self.format}, valid={self.valid}, <personal data hidden>)"


def _normalise(text: str) -> list[str]:
    if not isinstance(text, str):
        raise MRZError("MRZ must be text", "bad_type")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    joined = "".join(lines)
    for fmt, (n, width) in _LAYOUT.items():
        if (len(lines) == n and all(len(ln) == width for ln in lines)) or (
                len(lines) == 1 and len(joined) == n * width):
            return [joined[i * width:(i + 1) * width] for i in range(n)]
    raise MRZError(f"{len(lines)} line(s) of {[len(ln) for ln in lines]} characters is no MRZ layout",
                   "bad_layout")


def _date(raw: str, kind: str, today: dt.date) -> dt.date | None:
    if not raw.isdigit():
        return None
    yy, mm, dd = int(raw[:2]), int(raw[2:4]), int(raw[4:])
    if kind == "birth":
        year = 2000 + yy
        candidates = (year, year - 100)
        pick = next((y for y in candidates if _safe_date(y, mm, dd) and _safe_date(y, mm, dd) <= today), None)
    else:
        year = 2000 + yy
        pick = year if year <= today.year + EXPIRY_WINDOW_YEARS else year - 100
    return _safe_date(pick, mm, dd) if pick else None


def _safe_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _names(field_: str) -> tuple[str, str]:
    primary, _, secondary = field_.partition("<<")
    return primary.replace("<", " ").strip(), secondary.replace("<", " ").strip()


def _document_number(number: str, digit: str, optional: str) -> tuple[str, bool, str]:
    """(document number, its check, remaining optional data).

    ICAO 9303-5/6: a number longer than 9 characters continues in the optional
    data, followed by its check digit, with '<' in the check digit position."""
    if digit == "<" and optional and optional[0] != "<":
        ext, _, rest = optional.partition("<")
        if len(ext) >= 2:
            full = number + ext[:-1]
            return full, _ok(full, ext[-1]), rest
    return number.rstrip("<"), _ok(number, digit), optional


def parse_mrz(text: str, *, today: dt.date | None = None) -> MRZ:
    """Parse a TD1, TD2 or TD3 MRZ (lines separated by newlines or concatenated)."""
    lines = _normalise(text.upper() if isinstance(text, str) else text)
    if not all(_VALID.fullmatch(ln) for ln in lines):
        raise MRZError("characters outside A-Z 0-9 <", "bad_character")
    today = today or dt.date.today()
    fmt = next(f for f, (n, w) in _LAYOUT.items() if n == len(lines) and w == len(lines[0]))
    if fmt == "TD1":
        l1, l2, l3 = lines
        code, state, num, num_cd, opt1 = l1[0:2], l1[2:5], l1[5:14], l1[14], l1[15:30]
        dob, dob_cd, sex, doe, doe_cd, nat, opt2, comp = (
            l2[0:6], l2[6], l2[7], l2[8:14], l2[14], l2[15:18], l2[18:29], l2[29])
        name = l3
        composite_input = l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29]
        opt_cd = None
    else:
        l1, l2 = lines
        code, state, name = l1[0:2], l1[2:5], l1[5:]
        num, num_cd, nat, dob, dob_cd, sex, doe, doe_cd = (
            l2[0:9], l2[9], l2[10:13], l2[13:19], l2[19], l2[20], l2[21:27], l2[27])
        if fmt == "TD2":
            opt1, opt_cd, comp = l2[28:35], None, l2[35]
            composite_input = l2[0:10] + l2[13:20] + l2[21:35]
        else:
            opt1, opt_cd, comp = l2[28:42], l2[42], l2[43]
            composite_input = l2[0:10] + l2[13:20] + l2[21:43]
        opt2 = ""
    number, number_ok, opt1 = _document_number(num, num_cd, opt1)
    checks = {
        "document_number": number_ok,
        "date_of_birth": _ok(dob, dob_cd),
        "date_of_expiry": _ok(doe, doe_cd),
        "composite": _ok(composite_input, comp),
    }
    if opt_cd is not None:  # TD3 personal number: '<' check digit allowed when the field is empty
        checks["optional_data"] = _ok(opt1, opt_cd) or (opt_cd == "<" and set(opt1) <= {"<"})
    problems = []
    birth, expiry = _date(dob, "birth", today), _date(doe, "expiry", today)
    if birth is None and dob.isdigit():
        problems.append("date_of_birth_invalid")
    if expiry is None:
        problems.append("date_of_expiry_invalid")
    if sex not in "MFX<":
        problems.append("sex_invalid")
    primary, secondary = _names(name)
    return MRZ(format=fmt, document_code=code.rstrip("<"), issuing_state=state.rstrip("<"),
               document_number=number, date_of_birth=birth, date_of_expiry=expiry,
               sex="X" if sex == "<" else sex, nationality=nat.rstrip("<"),
               primary_identifier=primary, secondary_identifier=secondary,
               optional_data=opt1.rstrip("<"), optional_data_2=opt2.rstrip("<"),
               checks=checks, lines=tuple(lines), raw_date_of_birth=dob, raw_date_of_expiry=doe,
               problems=tuple(problems))


# --- building -------------------------------------------------------------------------------

_TRANSLIT = {"Đ": "D", "đ": "D", "Æ": "AE", "æ": "AE", "Ø": "OE", "ø": "OE", "ß": "SS",
             "Þ": "TH", "þ": "TH", "Œ": "OE", "œ": "OE", "Ł": "L", "ł": "L", "Ĳ": "IJ"}


def to_mrz_chars(text: str) -> str:
    """Transliterate to the MRZ alphabet (ICAO 9303-3 §6): drop diacritics,
    spaces, hyphens and apostrophes become fillers or vanish."""
    text = "".join(_TRANSLIT.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    text = re.sub(r"['’]", "", text)
    text = re.sub(r"[^A-Z0-9<]", "<", text)
    return text


def _field(value: str, width: int, what: str) -> str:
    value = to_mrz_chars(value)
    if len(value) > width:
        raise ValueError(f"{what} longer than {width} characters")
    return value.ljust(width, "<")


def _yymmdd(d: dt.date | str) -> str:
    if isinstance(d, dt.date):
        return d.strftime("%y%m%d")
    if not re.fullmatch(r"[0-9<]{6}", d):
        raise ValueError("date must be a date or YYMMDD")
    return d


def name_field(surname: str, given_names: str, width: int) -> str:
    """Primary<<secondary, truncated to the width (ICAO 9303-3 §4.6 truncation kept simple)."""
    name = to_mrz_chars(surname).strip("<") + "<<" + to_mrz_chars(given_names).strip("<")
    return name[:width].ljust(width, "<")


def _number_fields(number: str, optional: str, opt_width: int) -> tuple[str, str]:
    number = to_mrz_chars(number)
    if len(number) <= 9:
        num = number.ljust(9, "<")
        return num + check_digit(num), _field(optional, opt_width, "optional data")
    ext = number[9:] + check_digit(number)
    return number[:9] + "<", _field(ext + "<" + optional if optional else ext, opt_width, "optional data")


def build_td1(*, document_code: str = "I", issuing_state: str, document_number: str,
              date_of_birth: dt.date | str, sex: str, date_of_expiry: dt.date | str,
              nationality: str, surname: str, given_names: str,
              optional_data: str = "", optional_data_2: str = "") -> str:
    """Three 30-character lines with every check digit computed."""
    num, opt1 = _number_fields(document_number, optional_data, 15)
    l1 = _field(document_code, 2, "document code") + _field(issuing_state, 3, "state") + num + opt1
    dob, doe = _yymmdd(date_of_birth), _yymmdd(date_of_expiry)
    l2 = (dob + check_digit(dob) + (sex or "<") + doe + check_digit(doe)
          + _field(nationality, 3, "nationality") + _field(optional_data_2, 11, "optional data 2"))
    l2 += check_digit(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
    return "\n".join((l1, l2, name_field(surname, given_names, 30)))


def build_td2(*, document_code: str = "I", issuing_state: str, document_number: str,
              date_of_birth: dt.date | str, sex: str, date_of_expiry: dt.date | str,
              nationality: str, surname: str, given_names: str, optional_data: str = "") -> str:
    """Two 36-character lines."""
    l1 = _field(document_code, 2, "document code") + _field(issuing_state, 3, "state") \
        + name_field(surname, given_names, 31)
    num, opt = _number_fields(document_number, optional_data, 7)
    dob, doe = _yymmdd(date_of_birth), _yymmdd(date_of_expiry)
    l2 = (num + _field(nationality, 3, "nationality") + dob + check_digit(dob) + (sex or "<")
          + doe + check_digit(doe) + opt)
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:35])
    return "\n".join((l1, l2))


def build_td3(*, document_code: str = "P", issuing_state: str, document_number: str,
              date_of_birth: dt.date | str, sex: str, date_of_expiry: dt.date | str,
              nationality: str, surname: str, given_names: str, optional_data: str = "") -> str:
    """Two 44-character lines (passport); the personal number gets its own check digit."""
    l1 = _field(document_code, 2, "document code") + _field(issuing_state, 3, "state") \
        + name_field(surname, given_names, 39)
    num = _field(document_number, 9, "document number")
    dob, doe = _yymmdd(date_of_birth), _yymmdd(date_of_expiry)
    opt = _field(optional_data, 14, "personal number")
    opt_cd = check_digit(opt) if optional_data else "<"
    l2 = (num + check_digit(num) + _field(nationality, 3, "nationality") + dob + check_digit(dob)
          + (sex or "<") + doe + check_digit(doe) + opt + opt_cd)
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:43])
    return "\n".join((l1, l2))
