"""Strict BER-TLV: what is accepted, and every way malformed input is refused with a reason."""
import pytest

from cardreader.lds import LDSError, tlv


def test_nested_and_multibyte_tags():
    data = bytes.fromhex("7F6108" "0201015F2E020102") + bytes.fromhex("5F1F03414243")
    first, second = tlv.parse(data)
    assert first.tag == 0x7F61 and first.constructed
    assert [c.tag for c in first.children] == [0x02, 0x5F2E]
    assert first.require(0x5F2E).value == b"\x01\x02"
    assert second.tag == 0x5F1F and second.value == b"ABC" and not second.constructed


def test_long_form_lengths_round_trip():
    for size in (0, 1, 127, 128, 255, 256, 70000):
        encoded = tlv.encode(0x5F2E, bytes(size))
        parsed = tlv.parse_one(encoded)
        assert parsed.tag == 0x5F2E and len(parsed.value) == size
        assert tlv.header_length(encoded[:8]) == len(encoded)


@pytest.mark.parametrize("hexdata, reason", [
    ("6105", "truncated"),                  # claims 5 bytes, has none
    ("61", "truncated"),                    # no length
    ("5F", "truncated"),                    # tag continues past the end
    ("6180", "indefinite_length"),
    ("61817F" + "00" * 127, "overlong_length"),    # 0x81 for a value < 128
    ("6182007F" + "00" * 127, "overlong_length"),  # leading zero length byte
    ("6185FFFFFFFFFF", "length_too_large"),
    ("618400FFFFFF", "overlong_length"),
    ("61844000000000", "truncated"),       # a gigabyte claimed
    ("1F8001", "bad_tag"),                 # leading zero in tag number
    ("00", "bad_tag"),
    ("5F8181810100", "bad_tag"),           # tag longer than 3 bytes
])
def test_malformed_is_refused_with_reason(hexdata, reason):
    with pytest.raises(tlv.TLVError) as e:
        tlv.parse(bytes.fromhex(hexdata))
    assert e.value.reason == reason
    assert isinstance(e.value, LDSError)


def test_trailing_bytes_and_wrong_tag_reported():
    with pytest.raises(tlv.TLVError) as e:
        tlv.parse_one(bytes.fromhex("6100" "00"))
    assert e.value.reason == "trailing_bytes"
    with pytest.raises(tlv.TLVError) as e:
        tlv.parse_one(bytes.fromhex("6100"), expected_tag=0x75)
    assert e.value.reason == "wrong_tag"


def test_nesting_depth_is_bounded():
    data = b""
    for _ in range(tlv.MAX_DEPTH + 2):
        data = tlv.encode(0x30, data)
    with pytest.raises(tlv.TLVError) as e:
        tlv.parse(data)
    assert e.value.reason == "too_deep"
    shallow = b""
    for _ in range(tlv.MAX_DEPTH):
        shallow = tlv.encode(0x30, shallow)
    assert tlv.parse(shallow)


def test_missing_child_is_typed_and_repr_hides_values():
    node = tlv.parse_one(tlv.encode(0x61, tlv.encode(0x5F1F, b"SECRET")))
    with pytest.raises(tlv.TLVError) as e:
        node.require(0x5F2E)
    assert e.value.reason == "missing_tag"
    assert "SECRET" not in repr(node) and "SECRET" not in repr(node.children[0])
