"""MRZ against the ICAO 9303 specimens (vectors/mrz_specimens.json)."""
import datetime as dt
import json
from pathlib import Path

import pytest

from cardreader.lds.mrz import (MRZError, MRZKey, build_td1, build_td2, build_td3, check_digit, parse_mrz,
                                to_mrz_chars)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "mrz_specimens.json").read_text())
TODAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize("case", VECTORS["check_digits"], ids=lambda c: c["input"])
def test_check_digit(case):
    assert check_digit(case["input"]) == case["digit"]


@pytest.mark.parametrize("spec", VECTORS["specimens"], ids=lambda s: s["name"])
@pytest.mark.parametrize("joiner", ["\n", "", "\r\n"])
def test_specimens_parse(spec, joiner):
    m = parse_mrz(joiner.join(spec["lines"]), today=TODAY)
    assert m.valid and all(m.checks.values()) and "composite" in m.checks
    for key in ("format", "document_code", "issuing_state", "document_number", "sex", "nationality",
                "primary_identifier", "secondary_identifier", "optional_data", "optional_data_2"):
        assert getattr(m, key) == spec[key], key
    assert m.date_of_birth == dt.date.fromisoformat(spec["date_of_birth"])
    assert m.date_of_expiry == dt.date.fromisoformat(spec["date_of_expiry"])
    assert m.lines == tuple(spec["lines"])


@pytest.mark.parametrize("spec", VECTORS["specimens"], ids=lambda s: s["name"])
def test_every_single_character_change_in_a_checked_field_is_caught(spec):
    """Changing any digit of a checked field must fail at least one check (never silently accepted)."""
    text = "".join(spec["lines"])
    caught = 0
    for i, c in enumerate(text):
        if not c.isdigit():
            continue
        changed = text[:i] + str((int(c) + 1) % 10) + text[i + 1:]
        m = parse_mrz(changed, today=TODAY)
        caught += not m.valid
    assert caught >= 20  # every digit sits in some checked field of these specimens
    m = parse_mrz(text.replace("7408122", "7408132"), today=TODAY)
    assert m.checks["date_of_birth"] is False and not m.valid


def test_repr_hides_personal_data():
    m = parse_mrz("\n".join(VECTORS["specimens"][0]["lines"]), today=TODAY)
    assert "ERIKSSON" not in repr(m) and "L898902C" not in repr(m)
    assert "L898902C" not in repr(m.bac_key())


def test_bac_key_seed_input_matches_9303_11_worked_example():
    v = VECTORS["bac_key_seed"]
    key = MRZKey(v["document_number"], v["date_of_birth"], v["date_of_expiry"])
    assert key.key_seed_input() == v["mrz_information"]


def test_bac_key_from_parsed_mrz():
    m = parse_mrz("\n".join(VECTORS["specimens"][0]["lines"]), today=TODAY)
    assert m.bac_key().key_seed_input() == "L898902C36" + "7408122" + "1204159"


def test_long_document_number_continues_in_optional_data():
    v = VECTORS["long_document_number"]
    line2 = "7408122F1204159UTO<<<<<<<<<<<"
    composite = check_digit(v["line1"][5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    m = parse_mrz(v["line1"] + "\n" + line2 + composite + "\nERIKSSON<<ANNA<MARIA<<<<<<<<<<", today=TODAY)
    assert m.document_number == v["document_number"] and m.valid
    assert m.optional_data == ""


def test_centuries_birth_in_past_expiry_in_window():
    mrz = build_td3(issuing_state="UTO", document_number="X1", date_of_birth="271231", sex="M",
                    date_of_expiry="351231", nationality="UTO", surname="A", given_names="B")
    m = parse_mrz(mrz, today=TODAY)
    assert m.date_of_birth == dt.date(1927, 12, 31)  # 2027-12-31 would be after today
    assert m.date_of_expiry == dt.date(2035, 12, 31)
    m = parse_mrz(mrz.replace("271231", "201231").replace("351231", "991231"), today=TODAY)
    assert m.date_of_birth == dt.date(2020, 12, 31) and m.date_of_expiry == dt.date(1999, 12, 31)


def test_all_filler_mrz_parses_but_is_invalid():
    m = parse_mrz("I<UTO" + "<" * 85, today=TODAY)
    assert m.format == "TD1" and not m.valid and m.date_of_birth is None


def test_impossible_date_reported_not_guessed():
    mrz = build_td1(issuing_state="UTO", document_number="AB1234567", date_of_birth="741332", sex="F",
                    date_of_expiry="310101", nationality="UTO", surname="X", given_names="Y")
    m = parse_mrz(mrz, today=TODAY)
    assert m.date_of_birth is None and "date_of_birth_invalid" in m.problems and not m.valid


@pytest.mark.parametrize("bad", ["", "P<UTO", "A" * 89, "I<UTO" + "<" * 86, "i<utoé" + "<" * 84])
def test_not_an_mrz_raises_typed_error(bad):
    with pytest.raises(MRZError):
        parse_mrz(bad)


@pytest.mark.parametrize("builder, fmt", [(build_td1, "TD1"), (build_td2, "TD2"), (build_td3, "TD3")])
def test_builders_round_trip(builder, fmt):
    mrz = builder(issuing_state="UTO", document_number="C01X00T47", date_of_birth=dt.date(1976, 11, 19),
                  sex="F", date_of_expiry=dt.date(2031, 11, 19), nationality="UTO",
                  surname="Nguyễn Đình", given_names="Thị Ánh-Hồng")
    m = parse_mrz(mrz, today=TODAY)
    assert m.format == fmt and m.valid
    assert m.primary_identifier == "NGUYEN DINH" and m.secondary_identifier == "THI ANH HONG"
    assert (m.date_of_birth, m.date_of_expiry) == (dt.date(1976, 11, 19), dt.date(2031, 11, 19))


def test_build_td1_long_number_round_trip():
    mrz = build_td1(issuing_state="UTO", document_number="D23145890734", date_of_birth="740812", sex="F",
                    date_of_expiry="120415", nationality="UTO", surname="ERIKSSON", given_names="ANNA MARIA")
    assert mrz.splitlines()[0] == VECTORS["long_document_number"]["line1"]
    assert parse_mrz(mrz, today=TODAY).document_number == "D23145890734"


def test_transliteration():
    assert to_mrz_chars("Đặng Thị Ngọc Hà") == "DANG<THI<NGOC<HA"
    assert to_mrz_chars("O'Brien-Smith") == "OBRIEN<SMITH"
