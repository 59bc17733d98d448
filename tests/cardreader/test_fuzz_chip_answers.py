"""Hostile chip answers and scanner images, property-tested: whatever the chip sends
back to active authentication (the ISO 9796-2 signature, the r||s ECDSA signature,
its own DG15/DG14) and to chip authentication (its DG14 key, its secure-messaging
answers, validly MACed or not), and whatever image reaches the MRZ reader, the
result is a typed outcome, never another exception. The fuzz driver's targets
`aa`, `ca`, `scanner` run the same code paths for the long runs."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cardreader import fuzz
from cardreader.pki import iso9796_2
from cardreader.protocol.aa import verify_aa
from cardreader.scanner import MAX_PIXELS, read_mrz

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([0, 1]))
def test_any_aa_answer_is_a_result_and_never_passes_by_chance(response, which):
    doc = fuzz._aa_docs()[which]
    result = verify_aa(doc.files["DG15"], fuzz.AA_CHALLENGE, response, doc.files.get("DG14"))
    assert result.result in ("failed", "not_performed") and result.reasons


@FUZZ
@given(st.binary(min_size=1, max_size=128))
def test_iso9796_message_recovery_of_any_representative_signed_by_the_chip(f_bytes):
    """The chip holds its key, so it can make s^e mod n any representative F: recovery must
    refuse every F whose header, trailer or hash is wrong with an ISO9796Error."""
    key = fuzz._aa_docs()[0].aa_private_key
    n = key.private_numbers()
    f = int.from_bytes(f_bytes, "big") % n.public_numbers.n or 1
    sig = pow(f, n.d, n.public_numbers.n).to_bytes(key.key_size // 8, "big")
    try:
        recovered = iso9796_2.verify(key.public_key(), sig, fuzz.AA_CHALLENGE)
    except iso9796_2.ISO9796Error as e:
        assert e.reason.startswith("aa_")
    else:   # only a representative that hashes M1 || challenge right can pass
        assert recovered.digest in iso9796_2.TRAILER_IDS


@FUZZ
@given(st.binary(max_size=400))
def test_any_dg15_or_dg14_from_the_chip_gives_a_result(data):
    for mode in (3, 4):
        assert fuzz.run_one("aa", bytes([mode]) + data) in (True, False)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0x9000, 0x6982, 0x6987, 0x6A82, 0x6100, 0x6C10]),
                          st.binary(max_size=60)), max_size=4))
def test_any_chip_authentication_answers_end_in_typed_errors(answers):
    script = b"".join(bytes([flags]) + sw.to_bytes(2, "big") + bytes([len(p)]) + p for flags, sw, p in answers)
    assert fuzz.run_one("ca", b"\x01" + script) in (True, False)


@FUZZ
@given(st.binary(max_size=600))
def test_any_dg14_key_for_chip_authentication_ends_in_typed_errors(data):
    seed = fuzz._ca_seed_dg14s()[1]          # the DH one: most numbers to get wrong
    cut = len(data) % len(seed)
    assert fuzz.run_one("ca", b"\x00" + seed[:cut] + data[:40] + seed[cut + 40:]) in (True, False)
    assert fuzz.run_one("ca", b"\x00" + data) in (True, False)


ODD_ARRAYS = hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int8, np.bool_]),
                        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=230))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ODD_ARRAYS)
def test_any_array_from_the_document_camera_gives_a_scan_result(image):
    r = read_mrz(image)
    assert not r.ok and r.reason in ("corrupt_image", "image_too_small", "blank_image", "no_mrz_found",
                                     "unreadable", "low_confidence", "check_digit_failed")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_given_as_an_image_give_a_scan_result(data):
    for blob in (data, b"\x89PNG\r\n\x1a\n" + data, b"\xff\xd8\xff\xe0" + data):
        assert not read_mrz(blob).ok


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A black PNG of the given size (only `rows` rows of pixel data: the header is what counts)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\x00" + bytes(width)) for _ in range(height if rows is None else rows)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side,rows", [(8000, None), (40000, 10)])
def test_a_decompression_bomb_is_refused_before_decoding(side, rows):
    """Found by the scanner fuzz: a PNG declaring 40000x40000 escaped read_mrz as cv2.error, and a
    389 KB one of 20000x20000 was decoded (3.5 GB resident, 14 s) before being judged blank."""
    assert side * side > MAX_PIXELS
    r = read_mrz(_png(side, side, rows))
    assert not r.ok and r.reason == "image_too_large"


def test_a_huge_array_is_refused_without_ocr():
    big = np.zeros((7000, 6000), np.uint8)
    big[::7] = 255
    assert read_mrz(big).reason == "image_too_large"
