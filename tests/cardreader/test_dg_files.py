"""Data groups and EF.COM: build → parse round trips, published layouts, refusals."""
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from PIL import Image

from cardreader.lds import LDSError, tlv
from cardreader.lds.com import COM, build_com
from cardreader.lds.dg1 import DG1, DG1Error, build_dg1
from cardreader.lds.dg2 import DG2, DG2Error, build_dg2, build_dg2_39794, build_face_record
from cardreader.lds.dg11 import DG11, build_dg11
from cardreader.lds.dg12 import DG12, build_dg12
from cardreader.lds.dg13 import DG13, DG13Error, build_dg13
from cardreader.lds.dg15 import DG15, DG15Error, build_dg15
from cardreader.lds.files import FILE_IDS, SFI, UnknownFileError, file_name, parse_file

VECTORS = Path(__file__).parent / "vectors"
SPECIMENS = json.loads((VECTORS / "mrz_specimens.json").read_text())["specimens"]


@pytest.fixture(scope="module")
def portrait(demo_dir) -> bytes:
    return (demo_dir / "eileen_collins_chip_derived.jpg").read_bytes()


def _jpeg(width=48, height=64, grey=False) -> bytes:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (height, width) if grey else (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


# --- EF.COM and identifiers ---------------------------------------------------------------

def test_com_round_trip_and_encoding():
    data = build_com(["DG1", 2, "DG13", 14, 15])
    com = COM.parse(data)
    assert com.lds_version == "0108" and com.unicode_version == "040000"
    assert com.data_groups == ["DG1", "DG2", "DG13", "DG14", "DG15"]
    assert data == bytes.fromhex("6017" "5F0104" "30313038" "5F3606" "303430303030" "5C05" "61756D6E6F")


def test_file_identifiers():
    assert FILE_IDS["EF.COM"] == 0x011E and FILE_IDS["DG15"] == 0x010F and FILE_IDS["EF.CardAccess"] == 0x011C
    assert SFI["EF.SOD"] == 0x1D and SFI["DG2"] == 0x02


# --- DG1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SPECIMENS, ids=lambda s: s["format"])
def test_dg1_round_trip(spec):
    data = build_dg1("\n".join(spec["lines"]))
    assert data[:1] == b"\x61" and tlv.parse_one(data).require(0x5F1F).value == "".join(spec["lines"]).encode()
    dg1 = DG1.parse(data)
    assert dg1.format == spec["format"] and dg1.mrz.document_number == spec["document_number"]
    assert "ERIKSSON" not in repr(dg1)


def test_dg1_refuses_non_mrz():
    with pytest.raises(DG1Error):
        DG1.parse(tlv.encode(0x61, tlv.encode(0x5F1F, b"X" * 89)))
    with pytest.raises(DG1Error):
        DG1.parse(tlv.encode(0x61, tlv.encode(0x5F1F, "Ä".encode() * 45)))
    with pytest.raises(LDSError):
        DG1.parse(tlv.encode(0x61, b""))


# --- DG2 -----------------------------------------------------------------------------------

def test_dg2_jpeg_round_trip(portrait):
    dg2 = DG2.parse(build_dg2(portrait, 240, 320))
    [face] = dg2.faces
    assert face.image_bytes == portrait and face.image_format == "jpeg"
    assert (face.width, face.height, face.record_format) == (240, 320, "ISO/IEC 19794-5")
    assert face.color_space == "rgb24" and face.source_type == "static_photo_digital_still"
    assert face.face_image_type == "full_frontal"
    assert face.header["format_owner"] == 0x0101 and face.header["format_type"] == 0x0008
    pixels = face.decode()
    assert pixels.shape == (320, 240, 3) and pixels.dtype == np.uint8
    assert "bytes" in repr(face) and portrait[:20].hex() not in repr(face)


@pytest.mark.parametrize("kind", ["jp2", "j2k"])
def test_dg2_jpeg2000_both_containers(kind):
    img = np.zeros((40, 30, 3), np.uint8)
    img[:, :, 2] = 200  # red in BGR
    buf = io.BytesIO()
    Image.fromarray(img[:, :, ::-1]).save(buf, "JPEG2000", irreversible=False, no_jp2=(kind == "j2k"))
    data = buf.getvalue()
    assert data[:4] == (bytes.fromhex("FF4FFF51") if kind == "j2k" else bytes.fromhex("0000000C"))
    face = DG2.parse(build_dg2(data, 30, 40)).faces[0]
    assert face.image_format == "jpeg2000" and face.image_header() == (30, 40)
    pixels = face.decode()
    assert pixels.shape == (40, 30, 3) and abs(int(pixels[..., 2].mean()) - 200) <= 2


def test_greyscale_decodes_to_three_channels():
    face = DG2.parse(build_dg2(_jpeg(grey=True), 48, 64)).faces[0]
    assert face.decode().shape == (64, 48, 3)


def test_dg2_39794_record(portrait):
    face = DG2.parse(build_dg2_39794(portrait, 240, 320)).faces[0]
    assert face.record_format == "ISO/IEC 39794-5" and face.image_format == "jpeg"
    assert (face.width, face.height) == (240, 320) and face.image_bytes == portrait
    assert face.decode().shape == (320, 240, 3)


def test_decompression_bomb_refused_before_decoding():
    img = _jpeg()
    sof = img.index(b"\xFF\xC0")
    bomb = img[:sof + 5] + (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big") + img[sof + 9:]
    face = DG2.parse(build_dg2(bomb, 48, 64)).faces[0]
    assert face.image_header() == (60000, 60000)
    with pytest.raises(DG2Error) as e:
        face.decode()
    assert e.value.reason == "image_too_large"


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r[:4] + b"030\x00" + r[8:], "unsupported_version"),
    (lambda r: r[:8] + (len(r) + 1).to_bytes(4, "big") + r[12:], "length_mismatch"),
    (lambda r: r[:12] + b"\x00\x00" + r[14:], "no_face"),
    (lambda r: r[:35] + b"\x01" + r[36:], "image_format_mismatch"),  # declares JPEG 2000
])
def test_dg2_malformed_record_refused(mutate, reason):
    record = mutate(build_face_record(_jpeg(), 48, 64))
    data = tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x01") + tlv.encode(
        0x7F60, tlv.encode(0xA1, tlv.encode(0x87, b"\x01\x01") + tlv.encode(0x88, b"\x00\x08"))
        + tlv.encode(0x5F2E, record))))
    with pytest.raises(DG2Error) as e:
        DG2.parse(data)
    assert e.value.reason == reason


def test_dg2_count_must_match():
    good = build_dg2(_jpeg(), 48, 64)
    bad = good.replace(bytes.fromhex("020101"), bytes.fromhex("020102"), 1)
    with pytest.raises(DG2Error) as e:
        DG2.parse(bad)
    assert e.value.reason == "count_mismatch"


def test_undecodable_image_is_typed_error():
    img = _jpeg()
    broken = img[:len(img) // 3]
    face = DG2.parse(build_dg2(broken, 48, 64)).faces[0]
    with pytest.raises(DG2Error):
        face.decode()


# --- DG11 / DG12 ------------------------------------------------------------------------------

def test_dg11_round_trip():
    values = {"full_name": "COLLINS<<EILEEN MARIE", "other_names": ["COLLINS<<EILEEN", "YOUNGS<<EILEEN"],
              "personal_number": "079176004218", "full_date_of_birth": "19761119",
              "place_of_birth": ["ELMIRA", "NEW YORK"], "permanent_address": ["Số 1 Tràng Tiền", "Hà Nội"],
              "telephone": "+84 24 0000 0000", "profession": "ASTRONAUT", "title": "COL",
              "custody_information": "none"}
    dg11 = DG11.parse(build_dg11(values))
    assert dg11.fields == values
    assert "COLLINS" not in repr(dg11)


def test_dg12_round_trip():
    values = {"issuing_authority": "Cục Cảnh sát QLHC về TTXH", "date_of_issue": "20211119",
              "other_persons": ["COLLINS<<BRIDGET"], "endorsements": "none",
              "personalization_time": "20211119101500", "personalization_device_serial": "SIM-0001",
              "image_of_front": "ffd8ff"}
    assert DG12.parse(build_dg12(values)).fields == values


def test_dg11_group_count_mismatch_refused():
    data = bytes(build_dg11({"other_names": ["A", "B"]}))
    bad = data.replace(bytes.fromhex("020102"), bytes.fromhex("020103"))
    with pytest.raises(LDSError):
        DG11.parse(bad)


# --- DG13 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["flat_hex", "wrapped_hex"])
def test_dg13_public_cccd_layout(variant):
    vec = json.loads((VECTORS / "dg13_cccd.json").read_text(encoding="utf-8"))
    dg13 = DG13.parse(bytes.fromhex(vec[variant]))
    assert dg13.as_dict() == vec["expected"]
    assert dg13.father_name == "Nguyễn Văn Bình" and dg13.mother_name == "Trần Thị Cúc"
    assert dg13.date("date_of_birth").isoformat() == "1989-02-01"
    assert dg13.fields[42] == "giá trị lạ"  # unknown numbers kept
    assert "Nguyễn" not in repr(dg13)


def test_dg13_round_trip_keeps_diacritics():
    fields = {1: "079176004218", 2: "Trần Thị Ánh Hồng", 4: "Nữ", 12: "Không thời hạn",
              13: ["Trần Văn Đức", "Lê Thị Ngọc"], 14: ["Phạm Minh Quân"]}
    dg13 = DG13.parse(build_dg13(fields))
    assert dg13.fields == fields and dg13.spouse_name == "Phạm Minh Quân"
    assert dg13.date("date_of_expiry") is None


@pytest.mark.parametrize("data, reason", [
    (tlv.encode(0x6D, b""), "no_fields"),
    (tlv.encode(0x6D, 2 * tlv.encode(0x30, bytes.fromhex("020101") + tlv.encode(0x0C, b"x"))), "duplicate_field"),
    (tlv.encode(0x6D, tlv.encode(0x30, bytes.fromhex("020102") + tlv.encode(0x0C, b"\xff\xfe"))), "bad_encoding"),
    (tlv.encode(0x6D, tlv.encode(0x30, bytes.fromhex("020102") + tlv.encode(0x02, b"\x01"))), "bad_value"),
])
def test_dg13_malformed(data, reason):
    with pytest.raises(DG13Error) as e:
        DG13.parse(data)
    assert e.value.reason == reason


# --- DG15 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 1024),
                                  lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: ec.generate_private_key(ec.BrainpoolP256R1())])
def test_dg15_round_trip(make):
    key = make()
    dg15 = DG15.parse(build_dg15(key.public_key()))
    assert dg15.key.public_numbers() == key.public_key().public_numbers()


def test_dg15_explicit_parameter_ec_key():
    """9303 allows explicit domain parameters; rebuild a brainpool key's SPKI with them spelled out."""
    from asn1crypto import keys
    from cardreader.sim.test_pki import explicit_parameters
    import ecdsa

    sk = ecdsa.SigningKey.generate(curve=ecdsa.BRAINPOOLP256r1)
    spki = keys.PublicKeyInfo({
        "algorithm": {"algorithm": "ec", "parameters": explicit_parameters(ecdsa.BRAINPOOLP256r1)},
        "public_key": sk.get_verifying_key().to_string("uncompressed")})
    dg15 = DG15.parse(build_dg15(spki.dump()))
    assert dg15.public_key.kind == "ec" and "256" in dg15.description.lower()


def test_dg15_garbage_refused():
    with pytest.raises(DG15Error):
        DG15.parse(tlv.encode(0x6F, tlv.encode(0x30, b"\x05\x00")))


# --- parse_file -----------------------------------------------------------------------------

def test_parse_file_dispatches_by_tag(portrait):
    samples = {"EF.COM": build_com([1, 2]), "DG1": build_dg1("\n".join(SPECIMENS[1]["lines"])),
               "DG2": build_dg2(portrait, 240, 320), "DG11": build_dg11({"full_name": "A<<B"}),
               "DG12": build_dg12({"date_of_issue": "20200101"}), "DG13": build_dg13({1: "1"}),
               "DG15": build_dg15(ec.generate_private_key(ec.SECP256R1()).public_key())}
    for name, data in samples.items():
        assert file_name(data) == name
        assert type(parse_file(data)).__name__ == name.replace("EF.", "")
    with pytest.raises(UnknownFileError):
        parse_file(bytes.fromhex("7E00"))
    with pytest.raises(LDSError):
        parse_file(b"")


def test_dg2_record_with_feature_points():
    """Feature points (8 bytes each) sit between the facial information and the image information."""
    import struct

    jpeg = _jpeg()
    record = bytearray(build_face_record(jpeg, 48, 64))
    points = bytes.fromhex("0101 0010 0020 0000" "0102 0030 0020 0000".replace(" ", ""))
    record[34:34] = points  # 14-byte header + 20-byte facial information
    struct.pack_into(">I", record, 8, len(record))
    struct.pack_into(">IH", record, 14, 32 + len(points) + len(jpeg), 2)
    data = tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x01") + tlv.encode(
        0x7F60, tlv.encode(0xA1, tlv.encode(0x87, b"\x01\x01") + tlv.encode(0x88, b"\x00\x08"))
        + tlv.encode(0x5F2E, bytes(record)))))
    face = DG2.parse(data).faces[0]
    assert face.image_bytes == jpeg and (face.width, face.height) == (48, 64)


def test_dg2_39794_in_constructed_data_block():
    """Some issuers put the 39794-5 block's content directly under a constructed 7F2E."""
    jpeg = _jpeg()
    inner = tlv.parse_one(tlv.parse_one(build_dg2_39794(jpeg, 48, 64)).require(0x7F61).require(0x7F60)
                          .require(0x5F2E).value)
    assert inner.tag == 0x65
    data = tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x01") + tlv.encode(
        0x7F60, tlv.encode(0xA1, tlv.encode(0x87, b"\x01\x01") + tlv.encode(0x88, b"\x00\x40"))
        + tlv.encode(0x7F2E, inner.value))))
    face = DG2.parse(data).faces[0]
    assert face.record_format == "ISO/IEC 39794-5" and face.image_bytes == jpeg


def test_dg2_several_templates():
    one, two = _jpeg(32, 40), _jpeg(48, 64)
    bits = [tlv.parse_one(build_dg2(img, w, h)).require(0x7F61).require(0x7F60)
            for img, w, h in ((one, 32, 40), (two, 48, 64))]
    data = tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x02") + b"".join(
        tlv.encode(0x7F60, b.value) for b in bits)))
    faces = DG2.parse(data).faces
    assert [f.image_header() for f in faces] == [(32, 40), (48, 64)]
