"""The simulated chip read through the real stack: pcscd + vpcd + pyscard (PcscTransport)."""
from __future__ import annotations

import time

import pytest

from cardreader.reader import read_document
from cardreader.sim.chip import Faults, SimulatedChip
from cardreader.transport import PcscTransport

pytestmark = pytest.mark.pcsc


@pytest.fixture
def transport(pcscd):
    t = PcscTransport(pcscd.reader, command_timeout=1.0)
    yield t
    t.close()


def test_card_insertion_and_removal_are_events(transport, virtual_card, bac_document):
    assert not transport.card_present()
    assert not transport.wait_for_card(0.2)
    card = virtual_card(SimulatedChip(bac_document))
    start = time.monotonic()
    assert transport.wait_for_card(5.0)
    assert time.monotonic() - start < 3.0
    card.remove()
    assert transport.wait_for_removal(5.0)
    assert not transport.card_present()


def test_bac_read_through_pcscd(transport, virtual_card, bac_document, demo_key):
    virtual_card(SimulatedChip(bac_document))
    assert transport.wait_for_card(5.0)
    r = read_document(transport, demo_key)
    assert r.ok, r.error
    assert r.access_control == "BAC"
    assert r.files["DG2"] == bac_document.files["DG2"]
    assert r.clone_detection.result == "passed"


def test_pace_ecdh_gm_aes_read_through_pcscd(transport, virtual_card, demo_document, demo_key):
    virtual_card(SimulatedChip(demo_document))
    assert transport.wait_for_card(5.0)
    r = read_document(transport, demo_key)
    assert r.ok, r.error
    assert r.access_control == "PACE-ECDH-GM-AES-128"
    assert r.extended_length
    for name in ("EF.COM", "EF.SOD", "DG1", "DG2", "DG14", "DG15"):
        assert r.files[name] == demo_document.files[name]


def test_short_apdus_through_pcscd(transport, virtual_card, demo_document, demo_key):
    virtual_card(SimulatedChip(demo_document, faults=Faults(no_extended=True, max_read=192, target="none")))
    assert transport.wait_for_card(5.0)
    r = read_document(transport, demo_key)
    assert r.ok and not r.extended_length and r.block_size == 192


def test_card_pulled_mid_read(transport, virtual_card, demo_document, demo_key):
    virtual_card(SimulatedChip(demo_document, faults=Faults(pull=True)))
    assert transport.wait_for_card(5.0)
    r = read_document(transport, demo_key, deadline_s=5.0)
    assert not r.ok and r.error == "card_removed"
    assert "DG2" not in r.files


def test_mute_card_times_out(transport, virtual_card, demo_document, demo_key):
    virtual_card(SimulatedChip(demo_document, faults=Faults(mute=True)))
    assert transport.wait_for_card(5.0)
    start = time.monotonic()
    r = read_document(transport, demo_key, deadline_s=5.0)
    assert not r.ok and r.error == "timeout"
    assert time.monotonic() - start < 5.0


def test_read_command_writes_files_and_prints_json(pcscd, virtual_card, demo_document, demo_persona,
                                                   tmp_path, capsys):
    import json

    from cardreader.__main__ import main
    virtual_card(SimulatedChip(demo_document))
    p = demo_persona
    mrz = f"{p.document_number},{p.date_of_birth:%y%m%d},{p.date_of_expiry:%y%m%d}"
    code = main(["read", "--reader", pcscd.reader, "--mrz", mrz, "--out", str(tmp_path), "--json", "--wait", "5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["access_control"] == "PACE-ECDH-GM-AES-128"
    assert out["dg1"]["document_number"] == p.document_number
    assert out["files"]["DG2"]["size"] == len(demo_document.files["DG2"])
    assert (tmp_path / "DG2.bin").read_bytes() == demo_document.files["DG2"]
    assert (tmp_path / "EF.SOD.bin").read_bytes() == demo_document.files["EF.SOD"]


def test_reader_chosen_by_index_or_name(pcscd):
    from cardreader.transport import TransportError
    for choice in (0, "0", "virtual pcd 00 00", pcscd.reader):
        t = PcscTransport(choice)
        assert t.reader == pcscd.reader
        t.close()
    with pytest.raises(TransportError):
        PcscTransport("no such reader")
    with pytest.raises(TransportError):
        PcscTransport(7)


def test_sim_card_command_serves_the_demo_persona(pcscd, transport, demo_key, tmp_path):
    """What integrators run: `python -m cardreader sim-card`, read through pcscd like a real card."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "cardreader", "sim-card", "--port", str(pcscd.port)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert transport.wait_for_card(20.0), "sim-card did not put a card on the reader"
        r = read_document(transport, demo_key)
        assert r.ok and r.access_control == "PACE-ECDH-GM-AES-128"
        assert r.dg1.document_number
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert transport.wait_for_removal(10.0)


def test_bench_read_prints_figures():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "cardreader", "bench-read", "--repeat", "1", "--size", "8000"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "extended: 1 APDUs" in out.stdout and "short:" in out.stdout


def test_reset_by_another_application_is_reported_then_reconnected(pcscd, transport, virtual_card, bac_document):
    from cardreader.transport import TransportError
    virtual_card(SimulatedChip(bac_document))
    assert transport.wait_for_card(5.0)
    assert transport.transmit(bytes.fromhex("0084000008"))[-2:] == b"\x90\x00"
    other = PcscTransport(pcscd.reader)
    try:
        other.reset()  # e.g. a second program on the same reader
    finally:
        other.close()
    with pytest.raises(TransportError, match="reset"):
        transport.transmit(bytes.fromhex("0084000008"))
    assert transport.transmit(bytes.fromhex("0084000008"))[-2:] == b"\x90\x00"


def test_a_second_private_pcscd_in_one_process_is_refused(pcscd, tmp_path):
    """pcsc-lite keeps the first daemon's socket: a second one would silently show another reader."""
    from cardreader.sim.vpcd import PrivatePcscd
    with pytest.raises(RuntimeError, match="already used a private pcscd"):
        PrivatePcscd(tmp_path).start()
