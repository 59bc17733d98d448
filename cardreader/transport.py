"""The `Transport` seam: APDU bytes in, APDU bytes out, and card presence.

Everything above this line (APDU encoding, secure messaging, file reading)
is the same whether the card sits on a real PC/SC reader or is the simulated
chip; only the transport differs.
"""
from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable


class TransportError(Exception):
    """The link to the card broke (card pulled, reader gone, timeout)."""


class CardAbsent(TransportError):
    """No card is on the reader."""


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
