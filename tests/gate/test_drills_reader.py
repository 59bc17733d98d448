"""The reader drill: pcscd stopped and restarted under a running PC/SC lane, while it
waits for a card and with a read in flight (quick version of `python -m gate drill reader`)."""
from __future__ import annotations

import io

import pytest

from gate.drills import reader_drill

pytestmark = pytest.mark.pcsc


def test_pcscd_restarts_refer_the_read_in_flight_and_the_lane_reconnects(pcscd, tmp_path):
    out = io.StringIO()
    try:
        f = reader_drill(pcscd, tmp_path, cycles=1, down_s=0.6, out=out)
    finally:
        assert pcscd.proc is not None      # left running for the other pcsc tests
    assert f["problems"] == [], out.getvalue()
    assert f["lane_alive"] and f["chain_ok"]
    # waiting: pass after the restart; mid-read: referred with the reason; then the next one passes
    assert (f["transactions"], f["passed"], f["referred_reader_unavailable"]) == (3, 2, 1)
    assert f["audit_records_reader_unavailable"] == 1 and f["barrier_opens"] == 2


def test_a_private_pcscd_restarts_but_a_second_one_is_refused(pcscd, tmp_path):
    """pcsc-lite reads its socket name once per process: the same daemon may come back (same
    socket, same vpcd port), another one would never be seen."""
    from smartcard.System import readers

    from cardreader.sim.vpcd import PrivatePcscd
    port, socket = pcscd.port, pcscd.socket
    pcscd.stop()
    try:
        with pytest.raises(RuntimeError, match="already used a private pcscd"):
            PrivatePcscd(tmp_path).start()
    finally:
        pcscd.start()
    assert (pcscd.port, pcscd.socket) == (port, socket)
    assert pcscd.reader in [str(r) for r in readers()]
    with pytest.raises(RuntimeError, match="is running"):
        pcscd.start()
