"""The `Barrier` seam and its simulated twin.

The barrier is commanded only by the transaction, and only after the decision
is in the audit trail. Its state is read back, never assumed.
"""
from __future__ import annotations

import enum
import threading
import time
from typing import Protocol, runtime_checkable


class BarrierState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    FAULT = "fault"


class BarrierError(Exception):
    """The barrier did not do what it was told."""


@runtime_checkable
class Barrier(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    def state(self) -> BarrierState: ...

    def wait_for_passage(self, timeout: float) -> bool:
        """True when one person walked through before the timeout."""
        ...


class SimulatedBarrier:
    """An in-memory barrier. `passage()` simulates the traveller walking through."""

    def __init__(self, auto_pass_after: float | None = 0.2):
        self._state = BarrierState.CLOSED
        self._lock = threading.Condition()
        self._passed = False
        self._auto = auto_pass_after
        self.history: list[tuple[float, str]] = []
        self.fail_next_open = False

    def open(self) -> None:
        with self._lock:
            if self.fail_next_open:
                self.fail_next_open = False
                self._state = BarrierState.FAULT
                self.history.append((time.time(), "fault"))
                raise BarrierError("simulated barrier fault on open")
            self._state = BarrierState.OPEN
            self._passed = False
            self.history.append((time.time(), "open"))

    def close(self) -> None:
        with self._lock:
            self._state = BarrierState.CLOSED
            self.history.append((time.time(), "close"))
            self._lock.notify_all()

    def state(self) -> BarrierState:
        with self._lock:
            return self._state

    def passage(self) -> None:
        with self._lock:
            if self._state is BarrierState.OPEN:
                self._passed = True
                self._lock.notify_all()

    def wait_for_passage(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._passed:
                remaining = deadline - time.monotonic()
                if self._auto is not None and self._state is BarrierState.OPEN:
                    wait = min(remaining, self._auto)
                    if wait > 0:
                        self._lock.wait(wait)
                    if self._state is BarrierState.OPEN and time.monotonic() <= deadline:
                        self._passed = True
                    break
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            passed, self._passed = self._passed, False
            return passed
