"""ISO/IEC 7816-4 APDU layer: encodings, status words, GET RESPONSE / 6Cxx repairs, probing and adaptive reads."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardreader import apdu
from cardreader.apdu import BlockSize, CommandAPDU, PlainChannel, ResponseAPDU, read_file
from cardreader.transport import TransportError

h = bytes.fromhex


@pytest.mark.parametrize("cmd,short,extended", [
    (CommandAPDU(0, 0xA4, 4, 0x0C), "00A4040C", "00A4040C"),  # case 1
    (CommandAPDU(0, 0x84, 0, 0, ne=8), "0084000008", "00840000000008"),  # case 2
    (CommandAPDU(0, 0xB0, 0, 0, ne=256), "00B0000000", "00B00000000100"),
    (CommandAPDU(0, 0xA4, 2, 0x0C, h("011E")), "00A4020C02011E", "00A4020C000002011E"),  # case 3
    (CommandAPDU(0, 0x88, 0, 0, h("0102030405060708"), ne=256),
     "00880000080102030405060708" + "00", "0088000000000801020304050607080100"),  # case 4
])
def test_encodings(cmd, short, extended):
    assert cmd.to_bytes().hex().upper() == short
    assert cmd.to_bytes(extended=True).hex().upper() == extended
    assert CommandAPDU.from_bytes(h(short)) == cmd
    assert CommandAPDU.from_bytes(h(extended)) == cmd


def test_large_ne_or_data_forces_extended():
    assert CommandAPDU(0, 0xB0, 0, 0, ne=65536).to_bytes() == h("00B00000000000")
    assert CommandAPDU(0, 0xD6, 0, 0, bytes(300)).to_bytes()[4:7] == h("00012C")


@given(st.binary(max_size=300))
def test_decoding_never_crashes(raw):
    try:
        cmd = CommandAPDU.from_bytes(raw)
    except ValueError:
        return
    assert CommandAPDU.from_bytes(cmd.to_bytes(extended=len(raw) > 5 and raw[4] == 0 and len(raw) >= 7)) == cmd


@pytest.mark.parametrize("sw,cls", [
    (0x6300, apdu.AuthenticationFailed), (0x63C2, apdu.AuthenticationFailed), (0x6700, apdu.WrongLength),
    (0x6C10, apdu.WrongLength), (0x6982, apdu.SecurityStatusNotSatisfied), (0x6988, apdu.SMDataObjectsIncorrect),
    (0x6A82, apdu.FileNotFound), (0x6B00, apdu.WrongParameters), (0x6D00, apdu.InstructionNotSupported),
    (0x6F00, apdu.CardError),
])
def test_status_words_are_typed(sw, cls):
    with pytest.raises(cls) as e:
        apdu.check(ResponseAPDU(b"", sw))
    assert e.value.sw == sw


class Script:
    """A transport that answers from a list and records what it was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.resets = 0

    def transmit(self, raw: bytes) -> bytes:
        self.sent.append(raw)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return h(answer)

    def reset(self) -> None:
        self.resets += 1


def test_get_response_collects_61xx_chains():
    t = Script("01026104", "030461 02".replace(" ", ""), "05069000")
    resp = PlainChannel(t).send(CommandAPDU(0, 0xB0, 0, 0, ne=6))
    assert resp == ResponseAPDU(h("010203040506"), 0x9000)
    assert t.sent[1] == h("00C0000004")


def test_6cxx_resends_with_the_exact_le():
    t = Script("6C05", "01020304059000")
    resp = PlainChannel(t).send(CommandAPDU(0, 0xB0, 0, 0, ne=8))
    assert resp.data == h("0102030405") and t.sent[1] == h("00B0000005")


def test_probe_abandons_extended_length_when_the_reader_fails():
    t = Script(TransportError("0x80100016"))
    channel = PlainChannel(t)
    assert not apdu.probe_extended_length(channel)
    assert t.resets == 1 and not channel.extended


def test_probe_abandons_extended_length_when_the_chip_says_6700():
    assert not apdu.probe_extended_length(PlainChannel(Script("6700")))
    assert apdu.probe_extended_length(PlainChannel(Script("01020304050607089000")))


class FileCard:
    """A plain card holding one file, with an Le cap and a chosen error for larger Le."""

    def __init__(self, content: bytes, cap: int, error: str = "6700"):
        self.content, self.cap, self.error = content, cap, error
        self.reads = 0

    def transmit(self, raw: bytes) -> bytes:
        cmd = CommandAPDU.from_bytes(raw)
        if cmd.ins == 0xA4:
            return h("9000")
        self.reads += 1
        if cmd.ne > self.cap:
            return h(self.error)
        offset = (cmd.p1 << 8 | cmd.p2) if not cmd.p1 & 0x80 else cmd.p2
        data = self.content[offset:offset + cmd.ne]
        return data + (h("9000") if len(data) == cmd.ne else h("6282"))


@pytest.mark.parametrize("error", ["6700", "6B00"])
def test_block_size_steps_down_on_the_first_error(error):
    content = b"\x75\x82\x04\x00" + bytes(range(256)) * 4
    card = FileCard(content, cap=160, error=error)
    block = BlockSize()
    assert read_file(PlainChannel(card), fid=0x0102, block=block) == content
    assert block.current == 160 and block.downgrades == [192, 160]
    assert card.reads == 2 + -(-len(content) // 160)  # two refused, then 160-byte blocks


def test_giant_length_costs_one_read():
    card = FileCard(b"\x75\x84\xff\xff\xff\xf0" + bytes(300), cap=255)
    with pytest.raises(apdu.FileTooLarge):
        read_file(PlainChannel(card), fid=0x0102)
    assert card.reads == 1


def test_premature_end_of_file_is_malformed():
    card = FileCard(b"\x75\x82\x01\x00" + bytes(100), cap=255)
    with pytest.raises(apdu.MalformedResponse):
        read_file(PlainChannel(card), fid=0x0102)


def test_b1_offsets_above_32767():
    cmd = None

    class B1Card:
        def transmit(self, raw):
            nonlocal cmd
            cmd = CommandAPDU.from_bytes(raw)
            return h("5303AABBCC9000")
    resp = apdu.read_binary(PlainChannel(B1Card()), 0x8000, 3)
    assert cmd.ins == 0xB1 and cmd.data == h("54028000") and resp.data == h("AABBCC")
