"""A real lane's path end to end: the simulated chip behind pcscd + vpcd (a PC/SC
reader as the gate sees one), read by `Lane.pcsc()` through `PcscTransport`, the
printed MRZ as the access key, passive authentication
against a trust store directory, the face by the real models on a recorded live
person, identity, audit, barrier."""
from __future__ import annotations

import pytest

from gate.barrier import BarrierState
from gate.config import Settings
from gate.station import Gate, Lane, persona_from, recorded_live_person

pytestmark = [pytest.mark.pcsc, pytest.mark.models]


def test_pcsc_lane_runs_a_whole_transaction(pcscd, models_dir, shared_dir, tmp_path):
    import time

    from cardreader.lds.mrz import parse_mrz
    from cardreader.pki import TrustStore
    from cardreader.scanner import SimulatedDocumentScanner
    from cardreader.sim.chip import SimulatedChip
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    from cardreader.sim.vpcd import VirtualCard
    if not (shared_dir / "data" / "pad-dev" / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    chip_photo, camera = recorded_live_person(tmp_path)   # answers the kiosk's challenge
    persona = persona_from(load_persona("demo"), face_image_path=chip_photo)
    doc = issue(persona)
    TrustStore(tmp_path / "trust").add_csca(doc.pki.csca_cert)
    settings = Settings(data_dir=tmp_path / "gate", models_dir=models_dir, transaction={"passage_s": 2.0},
                        reader={"kind": "pcsc", "name": pcscd.reader, "trust_store": tmp_path / "trust",
                                "document_camera": str(tmp_path / "no-camera.png")})
    gate = Gate(settings)
    try:
        assert type(gate.lane) is Lane and type(gate.lane.transport).__name__ == "PcscTransport"
        # the document camera's OCR has its own tests (test_web); here the printed MRZ is given as read
        gate.lane.scanner = SimulatedDocumentScanner(persona.mrz, level="clean")
        gate.lane.scan = lambda: parse_mrz(persona.mrz)
        deadline = time.monotonic() + 60
        while not gate.face.ready and gate.face.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.face.ready, gate.face.error
        gate.devices.barrier._auto = 0.05
        gate.camera.set_source(camera)
        card = VirtualCard(SimulatedChip(doc), port=pcscd.port).start()
        try:
            assert gate.lane.wait_for_card(10.0)
            rec = gate.run_transaction()
        finally:
            card.stop()
        assert rec.outcome == "passed", rec.reasons
        d, f = rec.evidence.document, rec.evidence.face
        assert d.access_control.startswith("PACE") and d.pa_verdict == "valid" and d.clone_result == "passed"
        assert d.mrz_mismatch_fields == ()
        assert f.outcome == "match" and f.liveness == "live" and rec.evidence.identity.outcome == "clear"
        assert [e for _, e in gate.devices.barrier.history] == ["open", "close"]
        assert gate.devices.barrier.state() is BarrierState.CLOSED
        assert gate.lane.wait_for_removal(10.0)
        assert [r.event_type for r in gate.audit.search(transaction_id=rec.id)] == ["decision", "passage"]
    finally:
        gate.stop()
