"""Hostile input: random and mutated encodings (flipped bytes, truncation,
lengths inflated to gigabytes) give only typed `LDSError`s, never another
exception, and every parse finishes quickly."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardreader.lds import LDSError, tlv
from cardreader.lds.com import COM, build_com
from cardreader.lds.dg1 import DG1, build_dg1
from cardreader.lds.dg2 import DG2, build_dg2, build_dg2_39794
from cardreader.lds.dg11 import DG11, build_dg11
from cardreader.lds.dg12 import DG12, build_dg12
from cardreader.lds.dg13 import DG13, build_dg13
from cardreader.lds.dg14 import DG14, build_card_access, build_dg14
from cardreader.lds.dg15 import DG15, build_dg15
from cardreader.lds.files import parse_file
from cardreader.lds.mrz import parse_mrz

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
TD1 = "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"


@functools.lru_cache(maxsize=None)
def samples() -> dict[str, tuple[bytes, object]]:
    img = np.random.default_rng(3).integers(0, 255, (40, 32, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    ca = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    return {
        "COM": (build_com([1, 2, 13, 14, 15]), COM.parse),
        "DG1": (build_dg1(TD1), DG1.parse),
        "DG2": (build_dg2(jpeg, 32, 40), DG2.parse),
        "DG2-39794": (build_dg2_39794(jpeg, 32, 40), DG2.parse),
        "DG11": (build_dg11({"full_name": "A<<B", "other_names": ["C", "D"], "place_of_birth": ["X", "Y"]}),
                 DG11.parse),
        "DG12": (build_dg12({"date_of_issue": "20200101", "issuing_authority": "Bộ Công an"}), DG12.parse),
        "DG13": (build_dg13({1: "001089012345", 2: "Nguyễn Văn An", 13: ["Bình", "Cúc"]}), DG13.parse),
        "DG14": (build_dg14(ca, aa_signature_algorithm="ecdsa-plain-SHA256"), DG14.parse),
        "DG15": (build_dg15(ca), DG15.parse),
        "CardAccess": (build_card_access(), parse_file),
    }


def _length_offsets(data: bytes, base: int = 0) -> list[int]:
    """Offsets of every length field in a minimal (DER) encoding."""
    out, pos = [], 0
    for node in tlv.parse(data):
        tag_len = len(tlv.encode_tag(node.tag))
        out.append(base + pos + tag_len)
        header = tag_len + len(tlv.encode_length(len(node.value)))
        if node.constructed:
            out += _length_offsets(node.value, base + pos + header)
        pos += header + len(node.value)
    return out


def _exercise(parser, data: bytes) -> None:
    """Parse (and, for faces, decode); only LDSError may escape."""
    try:
        parsed = parser(data)
    except LDSError:
        return
    for face in getattr(parsed, "faces", ()):
        try:
            face.decode()
        except LDSError:
            pass


@st.composite
def mutated(draw, name: str) -> bytes:
    data = bytearray(samples()[name][0])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "inflate", "delete"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 4))]
        elif op == "inflate":
            data[i:i + 1] = draw(st.sampled_from([b"\x84\x40\x00\x00\x00", b"\x84\x7F\xFF\xFF\xFF",
                                                  b"\x83\xFF\xFF\xFF", b"\x80", b"\x85\x01\x00\x00\x00\x00"]))
    return bytes(data)


@pytest.mark.parametrize("name", list(samples()))
def test_samples_are_valid(name):
    data, parser = samples()[name]
    assert parser(data) is not None
    assert parse_file(data) is not None


@pytest.mark.parametrize("name", list(samples()))
def test_every_length_inflated_to_gigabytes_is_refused(name):
    data, parser = samples()[name]
    offsets = _length_offsets(data)
    assert len(offsets) >= 2
    for off in offsets:
        for huge in (b"\x84\x40\x00\x00\x00", b"\x84\xFF\xFF\xFF\xFF"):
            length_len = 1 if data[off] < 0x80 else 1 + (data[off] & 0x7F)
            bad = data[:off] + huge + data[off + length_len:]
            with pytest.raises(LDSError):
                parser(bad)


@pytest.mark.parametrize("name", list(samples()))
@FUZZ
@given(data=st.data())
def test_mutations_give_only_typed_errors(name, data):
    blob = data.draw(mutated(name))
    _exercise(samples()[name][1], blob)
    _exercise(parse_file, blob)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(blob):
    _exercise(tlv.parse, blob)
    _exercise(parse_file, blob)
    for _, parser in samples().values():
        _exercise(parser, blob)


@FUZZ
@given(st.lists(st.sampled_from([0x30, 0x61, 0x7F61, 0x5F2E, 0xA1, 0x02, 0x0C]), min_size=1, max_size=40))
def test_deep_nesting(tags):
    data = b"\x01"
    for t in tags:
        data = tlv.encode(t, data)
    _exercise(tlv.parse, data)
    _exercise(parse_file, data)


@FUZZ
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<\n é", max_size=100))
def test_mrz_text(text):
    try:
        m = parse_mrz(text)
    except LDSError:
        return
    assert isinstance(m.valid, bool)


@FUZZ
@given(st.data())
def test_mrz_mutations(data):
    chars = list(TD1.replace("\n", ""))
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(chars) - 1))
        chars[i] = data.draw(st.sampled_from("ABZ09<"))
    m = parse_mrz("".join(chars))
    assert m.format == "TD1"
    if "".join(chars) != TD1.replace("\n", ""):
        assert isinstance(m.valid, bool)
