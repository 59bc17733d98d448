"""The `Transport` seam: APDU bytes in, APDU bytes out, and card presence.

Everything above this line (APDU encoding, secure messaging, file reading)
is the same whether the card sits on a real PC/SC reader or is the simulated
chip; only the transport differs.
"""
from __future__ import annotations

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
