"""ISO/IEC 7816-4 APDUs: encoding, status words, and the file commands an eMRTD reader needs.

The same `Channel` shape serves a plain link and a secure-messaging link, so
file reading (`read_file`) does not care which one it runs over. Status
words map to typed `CardError` subclasses; the only warnings treated as
success are 6282 (end of file before Ne bytes) on READ BINARY.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from cardreader.transport import Transport, TransportError

MRTD_AID = bytes.fromhex("A0000002471001")


# --------------------------------------------------------------------------- APDUs

@dataclass(frozen=True)
class CommandAPDU:
    """One command. `ne` is the expected response length: None (no Le), 1..65536."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} out of range")
        if len(self.data) > 65535:
            raise ValueError("command data too long")
        if self.ne is not None and not 1 <= self.ne <= 65536:
            raise ValueError("ne out of range")

    def needs_extended(self) -> bool:
        return len(self.data) > 255 or (self.ne is not None and self.ne > 256)

    def to_bytes(self, extended: bool = False) -> bytes:
        """Encode as case 1-4, short or extended (ISO/IEC 7816-4 §5.1)."""
        extended = extended or self.needs_extended()
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if not extended:
            if self.data:
                out += bytes((len(self.data),)) + self.data
            if self.ne is not None:
                out.append(self.ne & 0xFF)  # 256 -> 00
            return bytes(out)
        if not self.data and self.ne is None:
            return bytes(out)
        out.append(0)  # extended marker
        if self.data:
            out += len(self.data).to_bytes(2, "big") + self.data
        if self.ne is not None:
            out += (self.ne & 0xFFFF).to_bytes(2, "big")  # 65536 -> 0000
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CommandAPDU":
        """Decode any of the seven case/length forms; `ValueError` when malformed."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, ne=body[0] or 256)
        if body[0] != 0:  # short case 3 or 4
            lc = body[0]
            if len(body) == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if len(body) == 2 + lc:
                return cls(cla, ins, p1, p2, body[1:1 + lc], body[-1] or 256)
            raise ValueError("Lc does not match the APDU length")
        if len(body) == 3:  # extended case 2
            return cls(cla, ins, p1, p2, ne=int.from_bytes(body[1:3], "big") or 65536)
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ValueError("extended Lc of zero")
        if len(body) == 3 + lc:
            return cls(cla, ins, p1, p2, body[3:])
        if len(body) == 5 + lc:
            return cls(cla, ins, p1, p2, body[3:3 + lc], int.from_bytes(body[-2:], "big") or 65536)
        raise ValueError("extended Lc does not match the APDU length")


@dataclass(frozen=True)
class ResponseAPDU:
    data: bytes
    sw: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ResponseAPDU":
        if len(raw) < 2:
            raise MalformedResponse(f"response of {len(raw)} bytes has no status word")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def __repr__(self) -> str:  # data may be personal: show only its size
        return f"ResponseAPDU(<{len(self.data)} bytes>, sw={self.sw:04X})"


# --------------------------------------------------------------------------- status words

class CardError(Exception):
    """The card answered with a status word that is not success."""

    reason = "card_error"

    def __init__(self, sw: int, message: str = "") -> None:
        super().__init__(f"SW={sw:04X}" + (f": {message}" if message else ""))
        self.sw = sw


class MalformedResponse(CardError):
    reason = "malformed_response"

    def __init__(self, message: str) -> None:
        super().__init__(0x6F00, message)


class AuthenticationFailed(CardError):  # 6300, 63Cx
    reason = "access_denied"


class WrongLength(CardError):  # 6700, 6Cxx
    reason = "wrong_length"


class SecurityStatusNotSatisfied(CardError):  # 6982
    reason = "access_denied"


class ConditionsNotSatisfied(CardError):  # 6985
    reason = "access_denied"


class SMDataObjectsIncorrect(CardError):  # 6987, 6988
    reason = "bad_mac"


class FileNotFound(CardError):  # 6A82
    reason = "file_not_found"


class WrongParameters(CardError):  # 6A86, 6B00, 6A80
    reason = "wrong_parameters"


class InstructionNotSupported(CardError):  # 6D00, 6E00
    reason = "not_supported"


_SW_CLASSES: dict[int, type[CardError]] = {
    0x6300: AuthenticationFailed, 0x6700: WrongLength, 0x6982: SecurityStatusNotSatisfied,
    0x6985: ConditionsNotSatisfied, 0x6987: SMDataObjectsIncorrect, 0x6988: SMDataObjectsIncorrect,
    0x6A82: FileNotFound, 0x6A80: WrongParameters, 0x6A86: WrongParameters, 0x6B00: WrongParameters,
    0x6D00: InstructionNotSupported, 0x6E00: InstructionNotSupported,
}


def card_error(sw: int) -> CardError:
    if sw & 0xFFF0 == 0x63C0:
        return AuthenticationFailed(sw)
    if sw & 0xFF00 == 0x6C00:
        return WrongLength(sw)
    return _SW_CLASSES.get(sw, CardError)(sw)


def check(resp: ResponseAPDU, *, allow: tuple[int, ...] = ()) -> ResponseAPDU:
    """Return `resp` when its SW is 9000 (or in `allow`), else raise the typed error."""
    if resp.sw == 0x9000 or resp.sw in allow:
        return resp
    raise card_error(resp.sw)


# --------------------------------------------------------------------------- channels

class Channel(Protocol):
    def send(self, cmd: CommandAPDU) -> ResponseAPDU: ...


@dataclass
class LinkStats:
    """What went over the wire: every transmit counts, GET RESPONSE and retries too."""

    apdus: int = 0
    bytes_out: int = 0
    bytes_in: int = 0


class PlainChannel:
    """APDUs over a `Transport`, with the T=0-era repairs 7816-4 still requires.

    61xx → GET RESPONSE until the data is complete; 6Cxx → resend with the
    exact Le. `extended` says whether commands may use extended length
    (decided by `probe_extended_length`, abandoned for the session on failure).
    """

    MAX_CHAINED_RESPONSE = 1 << 20  # guard against a card that says 61xx forever

    def __init__(self, transport: Transport, *, extended: bool = False) -> None:
        self.transport = transport
        self.extended = extended
        self.stats = LinkStats()

    def transmit(self, raw: bytes) -> ResponseAPDU:
        self.stats.apdus += 1
        self.stats.bytes_out += len(raw)
        out = self.transport.transmit(raw)
        self.stats.bytes_in += len(out)
        return ResponseAPDU.from_bytes(out)

    def send(self, cmd: CommandAPDU) -> ResponseAPDU:
        resp = self.transmit(cmd.to_bytes(self.extended))
        if resp.sw & 0xFF00 == 0x6C00 and cmd.ne is not None:
            resp = self.transmit(CommandAPDU(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data,
                                             (resp.sw & 0xFF) or 256).to_bytes(self.extended))
        data = bytearray(resp.data)
        while resp.sw & 0xFF00 == 0x6100:
            if len(data) > self.MAX_CHAINED_RESPONSE:
                raise MalformedResponse("GET RESPONSE chain exceeds the size limit")
            resp = self.transmit(CommandAPDU(cmd.cla & 0x80, 0xC0, 0, 0, ne=(resp.sw & 0xFF) or 256).to_bytes())
            data += resp.data
        return ResponseAPDU(bytes(data), resp.sw)


def probe_extended_length(channel: PlainChannel) -> bool:
    """Ask for a challenge with an extended-length Le before any session exists.

    Some readers fail extended APDUs at the PC/SC layer (0x80100016) and some
    chips answer 6700; either way the session stays on short APDUs. A reader
    failure may leave the card muted, so the card is reset afterwards.
    """
    try:
        resp = channel.transmit(CommandAPDU(0x00, 0x84, 0, 0, ne=8).to_bytes(extended=True))
    except TransportError:
        channel.transport.reset()
        channel.extended = False
        return False
    channel.extended = resp.sw == 0x9000 and len(resp.data) == 8
    return channel.extended


# --------------------------------------------------------------------------- file commands

def select_aid(channel: Channel, aid: bytes = MRTD_AID) -> None:
    check(channel.send(CommandAPDU(0x00, 0xA4, 0x04, 0x0C, aid)))


def select_ef(channel: Channel, fid: int) -> None:
    """SELECT EF under the current DF, no FCI returned (P2=0C).

    After a reset the current DF is the MF, so EF.CardAccess is selected this
    way without SELECT MF, which some national ID cards (Vietnam's) refuse with 6D00.
    """
    check(channel.send(CommandAPDU(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))))


def read_binary(channel: Channel, offset: int, ne: int, *, sfi: int | None = None) -> ResponseAPDU:
    """One READ BINARY: SFI form (offset ≤ 255), B0 (offset ≤ 32767), or odd-INS B1 above.

    Returns the response with SW 9000 or 6282 (end of file reached early);
    any other SW raises.
    """
    if sfi is not None and offset <= 0xFF:
        cmd = CommandAPDU(0x00, 0xB0, 0x80 | sfi, offset, ne=ne)
    elif offset <= 0x7FFF:
        cmd = CommandAPDU(0x00, 0xB0, offset >> 8, offset & 0xFF, ne=ne)
    else:  # B1: offset in a DO'54' in the data field (ISO/IEC 7816-4 §11.3.3)
        off = offset.to_bytes((offset.bit_length() + 7) // 8, "big")
        cmd = CommandAPDU(0x00, 0xB1, 0x00, 0x00, bytes((0x54, len(off))) + off, ne=ne)
    resp = check(channel.send(cmd), allow=(0x6282,))
    if cmd.ins == 0xB1:
        resp = ResponseAPDU(_unwrap_b1(resp.data), resp.sw)
    return resp


def _unwrap_b1(data: bytes) -> bytes:
    """B1 responses carry the data in a DO'53'."""
    if len(data) < 2 or data[0] != 0x53:
        raise MalformedResponse("B1 response without DO'53'")
    if data[1] < 0x80:
        hdr, n = 2, data[1]
    elif data[1] in (0x81, 0x82) and len(data) >= 2 + (data[1] & 0x7F):
        k = data[1] & 0x7F
        hdr, n = 2 + k, int.from_bytes(data[2:2 + k], "big")
    else:
        raise MalformedResponse("bad DO'53' length")
    if hdr + n != len(data):
        raise MalformedResponse("DO'53' length does not match the response")
    return data[hdr:]


class FileTooLarge(CardError):
    reason = "malformed_file"

    def __init__(self, size: int) -> None:
        super().__init__(0x6F00, f"file claims {size} bytes")


class DeadlineExceeded(TransportError):
    reason = "timeout"


def _tlv_total_length(head: bytes) -> int | None:
    """Total length of the BER-TLV that starts `head`, or None if more bytes are needed."""
    if not head:
        return None
    pos = 1
    if head[0] & 0x1F == 0x1F:
        while pos < len(head) and head[pos] & 0x80:
            pos += 1
        pos += 1
    if pos >= len(head):
        return None
    first = head[pos]
    if first < 0x80:
        return pos + 1 + first
    n = first & 0x7F
    if n == 0 or n > 4:
        raise MalformedResponse("file starts with an unsupported BER length")
    if pos + 1 + n > len(head):
        return None
    return pos + 1 + n + int.from_bytes(head[pos + 1:pos + 1 + n], "big")


@dataclass
class BlockSize:
    """Adaptive READ BINARY size, shared by all files of a session.

    Starts large and steps down on the first length error: 223 fits one short
    secure-messaging response, 192 and 160 suit chips that cap their buffers.
    """

    extended: bool = False
    steps: tuple[int, ...] = (223, 192, 160, 128, 96, 64, 32)
    extended_steps: tuple[int, ...] = (0xFF00, 0x4000, 0x1000, 0x0800)
    index: int = 0
    downgrades: list[int] = field(default_factory=list)

    @property
    def current(self) -> int:
        ladder = self.extended_steps + self.steps if self.extended else self.steps
        return ladder[min(self.index, len(ladder) - 1)]

    def step_down(self) -> bool:
        ladder = self.extended_steps + self.steps if self.extended else self.steps
        if self.index + 1 >= len(ladder):
            return False
        self.index += 1
        self.downgrades.append(self.current)
        return True


MAX_FILE_SIZE = 1 << 20


def read_file(channel: Channel, *, fid: int | None = None, sfi: int | None = None,
              block: BlockSize | None = None, deadline: float | None = None,
              clock: Callable[[], float] = time.monotonic, max_size: int = MAX_FILE_SIZE) -> bytes:
    """Read one whole TLV-structured EF (every LDS file is one TLV).

    With `sfi` the first READ BINARY selects the file itself (no SELECT);
    otherwise the file is selected by `fid`. The TLV header in the first
    block gives the size; a length above `max_size` is refused before any
    further read, so a card claiming gigabytes costs one APDU.
    """
    block = block or BlockSize()
    if sfi is None and fid is None:
        raise ValueError("fid or sfi is required")
    if sfi is None:
        select_ef(channel, fid)
    data = bytearray()
    total: int | None = None
    while total is None or len(data) < total:
        if deadline is not None and clock() > deadline:
            raise DeadlineExceeded("read deadline passed")
        want = block.current if total is None else min(block.current, total - len(data))
        try:
            resp = read_binary(channel, len(data), want, sfi=sfi if not data else None)
        except (WrongParameters, InstructionNotSupported):
            if sfi is not None and fid is not None and not data:  # no SFI support: select instead
                sfi = None
                select_ef(channel, fid)
                continue
            if total is None and block.step_down():  # some chips say 6B00 for an Le they dislike
                continue
            raise
        except WrongLength as e:
            if e.sw & 0xFF00 == 0x6C00 and (e.sw & 0xFF) and (e.sw & 0xFF) < want:
                block.downgrades.append(e.sw & 0xFF)
            if block.step_down():
                continue
            raise
        if not resp.data:
            raise MalformedResponse("READ BINARY returned no data before the end of the file")
        if len(resp.data) > want:
            raise MalformedResponse(f"READ BINARY returned {len(resp.data)} bytes for Le={want}")
        if sfi is not None and not data:
            sfi = None  # the file is now selected; later reads use B0/B1 offsets
        data += resp.data
        if total is None:
            total = _tlv_total_length(bytes(data))
            if total is not None and total > max_size:
                raise FileTooLarge(total)
        if total is not None and len(data) > total:
            raise MalformedResponse("file data runs past its TLV length")
        if resp.sw == 0x6282 and (total is None or len(data) < total):
            raise MalformedResponse("end of file before the TLV length")
    return bytes(data)
