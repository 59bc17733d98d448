"""DG2: the encoded face (ICAO 9303-10 §4.7.2).

75 { 7F61 { 02 count, 7F60 { A1 header, 5F2E|7F2E biometric data block } ... } }

The biometric data block is either an ISO/IEC 19794-5:2005 facial record
('FAC\\0', the format every chip issued so far uses) or an ISO/IEC 39794-5
face image data block (the ASN.1 successor). Both are read far enough to give
the image bytes, their format, and the header fields a gate cares about.
Images are sized from their own headers before decoding, so a forged
"decompression bomb" is refused without allocating it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from cardreader.lds import LDSError, tlv

TAG = 0x75
MAX_DIMENSION = 4096  # chip portraits are a few hundred pixels; anything this large is hostile
MAX_PIXELS = 8_000_000

FORMAT_OWNER_JTC1_SC37 = 0x0101
FORMAT_TYPE_19794_5 = 0x0008
FORMAT_TYPE_39794_5 = 0x0040

FACE_IMAGE_TYPES = {0: "basic", 1: "full_frontal", 2: "token_frontal"}
COLOR_SPACES_19794 = {0: "unspecified", 1: "rgb24", 2: "yuv422", 3: "grey8", 4: "other"}
SOURCE_TYPES_19794 = {0: "unspecified", 1: "static_photo_unknown_source", 2: "static_photo_digital_still",
                      3: "static_photo_scan", 4: "video_frame_unknown", 5: "video_frame_analogue",
                      6: "video_frame_digital", 7: "unknown"}
IMAGE_FORMATS_39794 = {2: "jpeg", 3: "jpeg2000", 4: "jpeg2000"}  # lossy / lossless JPEG 2000
COLOR_SPACES_39794 = {0: "unknown", 1: "other", 2: "rgb24", 3: "rgb48", 4: "yuv422", 5: "grey8", 6: "grey16"}

JP2_SIGNATURE = bytes.fromhex("0000000C6A5020200D0A870A")
J2K_SIGNATURE = bytes.fromhex("FF4FFF51")


class DG2Error(LDSError):
    """DG2 or the image inside it is malformed, unsupported or refused."""


@dataclass(frozen=True, repr=False)
class FaceImage:
    """One face: the encoded image plus the record's description of it."""

    image_bytes: bytes
    image_format: str  # 'jpeg' | 'jpeg2000'
    width: int
    height: int
    color_space: str
    source_type: str
    face_image_type: str
    record_format: str  # 'ISO/IEC 19794-5' | 'ISO/IEC 39794-5'
    header: dict[str, object] = field(default_factory=dict)  # the BIT header (A1), decoded

    def image_header(self) -> tuple[int, int]:
        """(width, height) as the image's own header states them."""
        return image_dimensions(self.image_bytes)

    def decode(self) -> np.ndarray:
        """The face as a BGR uint8 array (greyscale becomes 3 channels)."""
        width, height = self.image_header()
        if width > MAX_DIMENSION or height > MAX_DIMENSION or width * height > MAX_PIXELS:
            raise DG2Error(f"image of {width}x{height} refused", "image_too_large")
        pixels = cv2.imdecode(np.frombuffer(self.image_bytes, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise DG2Error("image does not decode", "image_undecodable")
        return pixels

    def summary(self) -> dict[str, object]:
        return {"record_format": self.record_format, "image_format": self.image_format,
                "image_size": len(self.image_bytes), "width": self.width, "height": self.height,
                "color_space": self.color_space, "source_type": self.source_type,
                "face_image_type": self.face_image_type}

    def __repr__(self) -> str:
        return (f"FaceImage(format={self.image_format}, {self.width}x{self.height}, "
                f"{len(self.image_bytes)} bytes, <image hidden>)")


@dataclass(frozen=True, repr=False)
class DG2:
    faces: tuple[FaceImage, ...]

    @classmethod
    def parse(cls, data: bytes) -> "DG2":
        root = tlv.parse_one(data, TAG)
        group = root.require(0x7F61)
        count_tlv = group.require(0x02)
        count = int.from_bytes(count_tlv.value, "big") if count_tlv.value else -1
        templates = group.find_all(0x7F60)
        if count != len(templates):
            raise DG2Error(f"group says {count} templates, {len(templates)} present", "count_mismatch")
        faces = tuple(face for bit in templates for face in _parse_bit(bit))
        if not faces:
            raise DG2Error("no face image", "no_face")
        return cls(faces)

    def as_dict(self) -> dict[str, object]:
        """Image summaries (format, size, dimensions, header), never the image bytes."""
        return {"faces": [{**f.summary(), "biometric_header": f.header} for f in self.faces]}

    def __repr__(self) -> str:
        return f"DG2(faces={len(self.faces)}, <images hidden>)"


def _parse_bit(bit: tlv.TLV) -> list[FaceImage]:
    header = _parse_header(bit.require(0xA1))
    bdb = bit.find(0x5F2E) or bit.find(0x7F2E)
    if bdb is None:
        raise DG2Error("biometric information template without data block", "missing_tag")
    if bdb.value[:4] == b"FAC\x00":
        faces = _parse_19794(bdb.value)
    else:
        faces = _parse_39794(bdb)
    return [replace(f, header=header) for f in faces]


def _parse_header(header: tlv.TLV) -> dict[str, object]:
    """Biometric header template (ISO/IEC 7816-11 / ICAO 9303-10 table 36)."""
    names = {0x80: "version", 0x81: "biometric_type", 0x82: "biometric_subtype",
             0x83: "creation_date", 0x85: "validity_period", 0x86: "creator",
             0x87: "format_owner", 0x88: "format_type"}
    out: dict[str, object] = {}
    for child in header.children or ():
        name = names.get(child.tag)
        if name:
            out[name] = int.from_bytes(child.value, "big") if child.tag in (0x81, 0x82, 0x87, 0x88) \
                else child.value.hex()
    if "format_owner" not in out or "format_type" not in out:
        raise DG2Error("biometric header lacks format owner/type", "missing_tag")
    return out


def _parse_19794(record: bytes) -> list[FaceImage]:
    """ISO/IEC 19794-5:2005 facial record: 14-byte general header, then per face
    a 20-byte facial information block, feature points, 12-byte image information, image."""
    if len(record) < 14:
        raise DG2Error("facial record header truncated", "truncated")
    _, version, record_length, count = struct.unpack(">4s4sIH", record[:14])
    if version != b"010\x00":
        raise DG2Error("unsupported ISO/IEC 19794-5 version", "unsupported_version")
    if record_length != len(record):
        raise DG2Error(f"record says {record_length} bytes, block has {len(record)}", "length_mismatch")
    if count == 0:
        raise DG2Error("facial record holds no image", "no_face")
    faces, pos = [], 14
    for _ in range(count):
        if pos + 20 > len(record):
            raise DG2Error("facial information truncated", "truncated")
        face_length, points = struct.unpack(">IH", record[pos:pos + 6])
        end = pos + face_length
        info = pos + 20 + 8 * points
        if face_length < 32 + 8 * points or end > len(record):
            raise DG2Error("facial record data length out of range", "length_mismatch")
        image_type, data_type, width, height, color, source = struct.unpack(">BBHHBB", record[info:info + 8])
        image = record[info + 12:end]
        fmt = {0: "jpeg", 1: "jpeg2000"}.get(data_type)
        if fmt is None:
            raise DG2Error(f"image data type {data_type}", "unsupported_image_format")
        faces.append(FaceImage(image, _check_format(image, fmt), width, height,
                               COLOR_SPACES_19794.get(color, f"reserved_{color}"),
                               SOURCE_TYPES_19794.get(source, f"reserved_{source}"),
                               FACE_IMAGE_TYPES.get(image_type, f"reserved_{image_type}"), "ISO/IEC 19794-5"))
        pos = end
    if pos != len(record):
        raise DG2Error("bytes after the last facial record", "trailing_bytes")
    return faces


def _ctx(node: tlv.TLV, n: int) -> tlv.TLV | None:
    """Context-specific child [n], primitive (0x80|n) or constructed (0xA0|n)."""
    return node.find(0x80 | n) or node.find(0xA0 | n)


def _int(node: tlv.TLV | None) -> int | None:
    if node is None or node.constructed or not 1 <= len(node.value) <= 4:
        return None
    return int.from_bytes(node.value, "big", signed=True)


def _code(node: tlv.TLV | None) -> int | None:
    """A 39794 code: CHOICE { code [0] ENUMERATED, extensionBlock [1] } under an explicit tag."""
    return _int(_ctx(node, 0)) if node is not None and node.constructed else _int(node)


def _parse_39794(bdb: tlv.TLV) -> list[FaceImage]:
    """ISO/IEC 39794-5 FaceImageDataBlock ::= [APPLICATION 5] SEQUENCE {
         versionBlock [0], representationBlocks [1] SEQUENCE OF RepresentationBlock }
       RepresentationBlock ::= SEQUENCE { representationId [0], imageRepresentation [1]
         CHOICE { base2D [0] ImageRepresentation2DBlock ... }, ... }
       ImageRepresentation2DBlock ::= SEQUENCE { representationData2D [0] OCTET STRING,
         imageInformation2DBlock [1] SEQUENCE { imageDataFormat [0], faceImageKind2D [1], ...,
         imageSizeBlock [7] SEQUENCE { width [0], height [1] }, ..., imageColourSpace [9] } }
    """
    if bdb.constructed:
        block = bdb
    else:
        block = tlv.parse_one(bdb.value)
        if block.tag != 0x65:
            raise DG2Error("biometric data block is neither 19794-5 nor 39794-5", "unsupported_record")
    reps = _ctx(block, 1)
    if reps is None or not reps.constructed or _ctx(block, 0) is None:
        raise DG2Error("39794-5 block lacks version or representations", "missing_tag")
    faces = []
    for rep in reps.children or ():
        image_rep = _ctx(rep, 1)
        base = _ctx(image_rep, 0) if image_rep is not None and image_rep.constructed else None
        if base is None or not base.constructed:
            continue  # extension representation: nothing a 2D face matcher can use
        if base.find(0x80) is None and base.find(0xA0) is not None:
            base = base.require(0xA0)  # base [0] CHOICE { imageRepresentation2DBlock [0] }
        data, info = _ctx(base, 0), _ctx(base, 1)
        if data is None or data.constructed or info is None or not info.constructed:
            raise DG2Error("2D representation lacks image or information", "missing_tag")
        fmt_code = _code(_ctx(info, 0))
        fmt = IMAGE_FORMATS_39794.get(fmt_code)
        if fmt is None:
            raise DG2Error(f"image data format {fmt_code}", "unsupported_image_format")
        size = _ctx(info, 7)
        width = _int(_ctx(size, 0)) if size is not None and size.constructed else None
        height = _int(_ctx(size, 1)) if size is not None and size.constructed else None
        kind = _code(_ctx(info, 1))
        colour = _code(_ctx(info, 9))
        faces.append(FaceImage(data.value, _check_format(data.value, fmt), width or 0, height or 0,
                               COLOR_SPACES_39794.get(colour, "unknown") if colour is not None else "unknown",
                               "unspecified", {0: "mrtd", 1: "general_purpose"}.get(kind, "unspecified"),
                               "ISO/IEC 39794-5"))
    return faces


def _check_format(image: bytes, declared: str) -> str:
    actual = _sniff(image)
    if actual != declared:
        raise DG2Error(f"record declares {declared}, image is {actual}", "image_format_mismatch")
    return actual


def _sniff(image: bytes) -> str:
    if image[:3] == b"\xFF\xD8\xFF":
        return "jpeg"
    if image.startswith(JP2_SIGNATURE) or image.startswith(J2K_SIGNATURE):
        return "jpeg2000"
    return "unknown"


def image_dimensions(image: bytes) -> tuple[int, int]:
    """(width, height) from the image's own header, without decoding pixels."""
    try:
        if image[:3] == b"\xFF\xD8\xFF":
            return _jpeg_dimensions(image)
        if image.startswith(J2K_SIGNATURE):
            return _siz_dimensions(image, 4)
        if image.startswith(JP2_SIGNATURE):
            return _jp2_dimensions(image)
    except struct.error:
        pass
    raise DG2Error("image header unreadable", "image_undecodable")


def _jpeg_dimensions(image: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(image):
        if image[pos] != 0xFF:
            break
        marker = image[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack(">H", image[pos + 2:pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", image[pos + 5:pos + 9])
            return width, height
        if length < 2:
            break
        pos += 2 + length
    raise DG2Error("JPEG has no frame header", "image_undecodable")


def _siz_dimensions(image: bytes, pos: int) -> tuple[int, int]:
    """JPEG 2000 SIZ marker segment: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz."""
    _, _, xsiz, ysiz, xo, yo = struct.unpack(">HHIIII", image[pos:pos + 20])
    if xo > xsiz or yo > ysiz:
        raise DG2Error("JPEG 2000 image offset past its size", "image_undecodable")
    return xsiz - xo, ysiz - yo


def _jp2_dimensions(image: bytes) -> tuple[int, int]:
    """Find the image header box (jp2h/ihdr: height, width) by walking the boxes."""
    pos = 0
    while pos + 8 <= len(image):
        length, kind = struct.unpack(">I4s", image[pos:pos + 8])
        if kind == b"jp2h":
            inner = image[pos + 8:pos + length] if length else image[pos + 8:]
            if inner[4:8] == b"ihdr":
                height, width = struct.unpack(">II", inner[8:16])
                return width, height
        if kind == b"jp2c":
            return _siz_dimensions(image, pos + 12)
        if length < 8:
            break
        pos += length
    raise DG2Error("JP2 file has no image header", "image_undecodable")


# --- building -------------------------------------------------------------------------------

def build_face_record(image: bytes, width: int, height: int, *, image_format: str = "jpeg",
                      color_space: int = 1, source_type: int = 2, face_image_type: int = 1,
                      gender: int = 0) -> bytes:
    """ISO/IEC 19794-5:2005 facial record with one image and no feature points."""
    info = struct.pack(">IHBBB3sH3s3s", 32 + len(image), 0, gender, 0, 0, b"\x00\x00\x00", 0,
                       b"\x00\x00\x00", b"\x00\x00\x00")
    image_info = struct.pack(">BBHHBBHH", face_image_type, {"jpeg": 0, "jpeg2000": 1}[image_format],
                             width, height, color_space, source_type, 0, 0)
    body = info + image_info + image
    return b"FAC\x00" + b"010\x00" + struct.pack(">IH", 14 + len(body), 1) + body


def _bit(record: bytes, format_type: int, bdb_tag: int) -> bytes:
    header = (tlv.encode(0x80, b"\x01\x01") + tlv.encode(0x81, b"\x02") + tlv.encode(0x82, b"\x00")
              + tlv.encode(0x87, FORMAT_OWNER_JTC1_SC37.to_bytes(2, "big"))
              + tlv.encode(0x88, format_type.to_bytes(2, "big")))
    return tlv.encode(0x7F60, tlv.encode(0xA1, header) + tlv.encode(bdb_tag, record))


def _group(bits: list[bytes]) -> bytes:
    return tlv.encode(TAG, tlv.encode(0x7F61, tlv.encode(0x02, bytes([len(bits)])) + b"".join(bits)))


def build_dg2(jpeg_bytes: bytes, width: int, height: int, *, image_format: str | None = None) -> bytes:
    """DG2 holding one ISO/IEC 19794-5 facial record around the image (JPEG or JPEG 2000)."""
    fmt = image_format or _sniff(jpeg_bytes)
    if fmt not in ("jpeg", "jpeg2000"):
        raise ValueError("DG2 image must be JPEG or JPEG 2000")
    return _group([_bit(build_face_record(jpeg_bytes, width, height, image_format=fmt),
                        FORMAT_TYPE_19794_5, 0x5F2E)])


def _der_uint(n: int) -> bytes:
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def build_dg2_39794(image: bytes, width: int, height: int) -> bytes:
    """DG2 holding one ISO/IEC 39794-5 face image data block (used to test that path)."""
    e = tlv.encode
    fmt = {"jpeg": 2, "jpeg2000": 3}[_sniff(image)]
    info = (e(0xA0, e(0x80, bytes([fmt]))) + e(0xA1, e(0x80, b"\x00"))
            + e(0xA7, e(0x80, _der_uint(width)) + e(0x81, _der_uint(height)))
            + e(0xA9, e(0x80, b"\x02")))
    rep = e(0x30, e(0x80, b"\x01") + e(0xA1, e(0xA0, e(0xA0, e(0x80, image) + e(0xA1, info)))))
    block = e(0x65, e(0xA0, e(0x80, b"\x01") + e(0x81, b"\x07\xE3")) + e(0xA1, rep))
    return _group([_bit(block, FORMAT_TYPE_39794_5, 0x5F2E)])
