"""The `Transport` seam: APDU bytes in, APDU bytes out, and card presence.

Everything above this line (APDU encoding, secure messaging, file reading)
is the same whether the card sits on a real PC/SC reader or is the simulated
chip; only the transport differs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


class TransportError(Exception):
    """The link to the card broke (card pulled, reader gone, timeout)."""


class CardAbsent(TransportError):
    """No card is on the reader."""


class ReaderUnavailable(TransportError):
    """The reader or the PC/SC service is gone (unplugged, pcscd stopped): whatever was in
    flight is lost; the transport reconnects by itself once the reader is back."""


@runtime_checkable
class Transport(Protocol):
    """One card on one reader.

    `transmit` takes a complete command APDU and returns the complete
    response APDU including SW1-SW2. It raises `TransportError` when the link
    fails; it never returns partial data.
    """

    def transmit(self, apdu: bytes) -> bytes: ...

    def card_present(self) -> bool: ...

    def wait_for_card(self, timeout: float) -> bool:
        """Block until a card is present (True) or the timeout passes (False)."""
        ...

    def wait_for_removal(self, timeout: float) -> bool: ...

    def reset(self) -> None:
        """Cold-reset the card; all session state on the card is lost."""
        ...

    def close(self) -> None: ...


class TransportTimeout(TransportError):
    """The card did not answer one command within the per-command timeout."""


class ChipLike(Protocol):
    def process(self, apdu: bytes) -> bytes | None: ...

    def reset(self) -> None: ...


class SimulatedTransport:
    """The in-process twin of a reader: a `SimulatedChip` placed and taken away by the test or gate.

    A chip that returns None from `process` is "not answering": the transport
    waits the per-command timeout and raises `TransportTimeout`, as a real
    reader would. A chip that raises `CardAbsent` has been pulled mid-read.
    """

    def __init__(self, chip: ChipLike | None = None, *, command_timeout: float = 2.0) -> None:
        self._chip = chip
        self.command_timeout = command_timeout
        self._cond = threading.Condition()

    def insert(self, chip: ChipLike) -> None:
        with self._cond:
            self._chip = chip
            chip.reset()
            self._cond.notify_all()

    def remove(self) -> None:
        with self._cond:
            self._chip = None
            self._cond.notify_all()

    def transmit(self, apdu: bytes) -> bytes:
        chip = self._chip
        if chip is None:
            raise CardAbsent("no card on the simulated reader")
        try:
            out = chip.process(apdu)
        except CardAbsent:
            self.remove()
            raise
        if out is None:
            with self._cond:  # a mute card: wait the timeout unless the card is taken away
                self._cond.wait_for(lambda: self._chip is not chip, timeout=self.command_timeout)
            raise TransportTimeout("card did not answer")
        return out

    def card_present(self) -> bool:
        return self._chip is not None

    def wait_for_card(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._chip is not None, timeout=timeout)

    def wait_for_removal(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._chip is None, timeout=timeout)

    def reset(self) -> None:
        chip = self._chip
        if chip is None:
            raise CardAbsent("no card on the simulated reader")
        chip.reset()

    def close(self) -> None:
        self.remove()


class PcscTransport:
    """A real reader through pcscd (pyscard's low-level `smartcard.scard` API).

    Card presence uses SCardGetStatusChange (the daemon wakes us on insertion
    and removal; no polling). The card is connected with T=1 on first use. A
    command that does not answer within `command_timeout` raises
    `TransportTimeout` (PC/SC cannot cancel a transmit, so it runs in a worker
    thread and the connection is reset before the next command). A card reset
    by someone else is reconnected and reported, since its session is gone.

    When pcscd stops or the reader goes away, the call in flight raises
    `ReaderUnavailable` and the PC/SC context is dropped; every later call first
    re-establishes it (a context does not survive a pcscd restart). While the
    reader is gone, `wait_for_card`/`wait_for_removal` keep retrying until their
    timeout and then answer False, so a lane waiting for travellers rides out a
    pcscd restart; `available` tells whether the reader is reachable.
    """

    RECONNECT_EVERY_S = 0.25

    def __init__(self, reader: str | int = 0, *, command_timeout: float = 5.0) -> None:
        from smartcard import scard
        self._s = scard
        self.command_timeout = command_timeout
        self._want = reader
        self._ctx = None
        self.reader = ""
        self._card = None
        self._protocol = None
        self._pool = None
        self._stale = False  # a timed-out transmit may still hold the card
        self.available = False
        self._service_errors = {getattr(scard, n) for n in (
            "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_F_COMM_ERROR", "SCARD_E_INVALID_HANDLE",
            "SCARD_E_INVALID_CONTEXT", "SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER",
            "SCARD_E_NO_READERS_AVAILABLE") if hasattr(scard, n)}
        self._ensure()

    # ------------------------------------------------------------------ helpers
    def _check(self, hr: int, what: str) -> None:
        if hr != self._s.SCARD_S_SUCCESS:
            raise self._error(hr, what)

    def _text(self, hr: int, what: str) -> str:
        return f"{what}: {self._s.SCardGetErrorMessage(hr)} (0x{hr & 0xFFFFFFFF:08X})"

    def _error(self, hr: int, what: str) -> TransportError:
        s = self._s
        absent = {s.SCARD_W_REMOVED_CARD, s.SCARD_E_NO_SMARTCARD, getattr(s, "SCARD_W_UNPOWERED_CARD", -1)}
        text = self._text(hr, what)
        if hr in self._service_errors:
            self._lost(text)
            return ReaderUnavailable(text)
        if hr in absent:
            return CardAbsent(text)
        if hr == s.SCARD_E_TIMEOUT:
            return TransportTimeout(text)
        return TransportError(text)

    def _ensure(self) -> None:
        """A live context and the chosen reader, re-established after pcscd or the reader went away."""
        if self._ctx is not None:
            return
        s = self._s
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if hr != s.SCARD_S_SUCCESS:
            raise ReaderUnavailable(self._text(hr, "establish context"))
        self._ctx = ctx
        try:
            self.reader = self._choose(self._want)
        except TransportError as e:
            self._lost(str(e))
            raise ReaderUnavailable(str(e)) from None
        if not self.available:
            log.info("PC/SC reader connected", extra={"reader": self.reader})
        self.available = True

    def _lost(self, why: str) -> None:
        """Forget the context and the card handle (both die with pcscd)."""
        if self.available:
            log.warning("PC/SC reader unavailable", extra={"reader": self.reader, "error": why})
        self.available = False
        ctx, self._ctx, self._card, self._stale = self._ctx, None, None, False
        if ctx is not None:
            self._s.SCardReleaseContext(ctx)

    def _choose(self, reader: str | int) -> str:
        hr, names = self._s.SCardListReaders(self._ctx, [])
        if hr != self._s.SCARD_S_SUCCESS or not names:
            raise TransportError("no PC/SC readers")
        if isinstance(reader, int) or (isinstance(reader, str) and reader.isdigit()):
            index = int(reader)
            if not 0 <= index < len(names):
                raise TransportError(f"reader index {index} out of range ({len(names)} readers)")
            return names[index]
        matches = [n for n in names if reader == n] or [n for n in names if reader.lower() in n.lower()]
        if not matches:
            raise TransportError(f"no reader matches {reader!r}; readers: {names}")
        return matches[0]

    def _state(self, timeout: float, current: int) -> int:
        self._ensure()
        ms = max(0, int(timeout * 1000))
        hr, states = self._s.SCardGetStatusChange(self._ctx, ms, [(self.reader, current)])
        if hr == self._s.SCARD_E_TIMEOUT:
            return current
        self._check(hr, "status")
        return states[0][1] & ~self._s.SCARD_STATE_CHANGED

    def _wait(self, want_present: bool, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        state: int | None = None  # not known yet: the first question does not block
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                state = self._state(0 if state is None else left,
                                    self._s.SCARD_STATE_UNAWARE if state is None else state)
            except ReaderUnavailable:   # pcscd or the reader is away: retry until the deadline
                state = None
                time.sleep(min(self.RECONNECT_EVERY_S, left))
            else:
                if bool(state & self._s.SCARD_STATE_PRESENT) == want_present:
                    return True
            if time.monotonic() >= deadline:
                return False

    # ------------------------------------------------------------------ Transport
    def card_present(self) -> bool:
        return bool(self._state(0, self._s.SCARD_STATE_UNAWARE) & self._s.SCARD_STATE_PRESENT)

    def wait_for_card(self, timeout: float) -> bool:
        return self._wait(True, timeout)

    def wait_for_removal(self, timeout: float) -> bool:
        present = not self._wait(False, timeout)
        if not present:
            self._disconnect()
        return not present

    def _connect(self) -> None:
        self._ensure()
        s = self._s
        hr, card, protocol = s.SCardConnect(self._ctx, self.reader, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1)
        if hr == s.SCARD_E_PROTO_MISMATCH:  # reader/card without T=1 (contact T=0 cards)
            hr, card, protocol = s.SCardConnect(self._ctx, self.reader, s.SCARD_SHARE_SHARED,
                                                s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
        self._check(hr, "connect")
        self._card, self._protocol, self._stale = card, protocol, False

    def _disconnect(self) -> None:
        if self._card is not None:
            self._s.SCardDisconnect(self._card, self._s.SCARD_LEAVE_CARD)
            self._card = None

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            self._connect()
        elif self._stale:
            self.reset()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pcsc")
        future = self._pool.submit(self._s.SCardTransmit, self._card, self._protocol, list(apdu))
        try:
            hr, response = future.result(timeout=self.command_timeout)
        except TimeoutError:
            self._stale = True
            self._pool = None  # the stuck worker is abandoned; a fresh one serves the next command
            raise TransportTimeout(f"no answer within {self.command_timeout} s") from None
        if hr == self._s.SCARD_W_RESET_CARD:
            self._reconnect(self._s.SCARD_LEAVE_CARD)
            raise TransportError("the card was reset by another application; session lost")
        if hr != self._s.SCARD_S_SUCCESS:
            err = self._error(hr, "transmit")
            if isinstance(err, CardAbsent):
                self._disconnect()
            raise err
        if len(response) < 2:  # vpcd and some readers answer an empty success when the card goes away
            if self._wait(False, 0.5):
                self._disconnect()
                raise CardAbsent("card removed during the command")
            raise TransportError("reader returned no status word")
        return bytes(response)

    def _reconnect(self, disposition: int) -> None:
        s = self._s
        hr, self._protocol = s.SCardReconnect(self._card, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1, disposition)
        self._check(hr, "reconnect")
        self._stale = False

    def reset(self) -> None:
        if self._card is None:
            self._connect()
        self._reconnect(self._s.SCARD_RESET_CARD)

    def close(self) -> None:
        self._disconnect()
        if self._ctx is not None:
            self._s.SCardReleaseContext(self._ctx)
            self._ctx = None
        self.available = False
