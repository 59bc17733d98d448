"""The CAN path: a traveller places the chip ID card front up, so the document scanner
sees no MRZ but the Card Access Number. The lane reads the CAN by OCR from a rendered
photograph of the card's front, opens the chip with PACE-CAN and the transaction goes
on; with no printed MRZ, DG1 cannot be cross-checked, and the decision says so (a
referral unless the policy waives the cross-check for CAN-opened chips)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from gate.barrier import BarrierState, SimulatedBarrier
from gate.config import Settings
from gate.policy import DocumentEvidence, Evidence, FaceEvidence, IdentityEvidence, Policy, evaluate
from gate.transaction import Devices, Timeouts, Transaction

pytest.importorskip("tesserocr")

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


class FaceStation:
    def reference(self, image):
        assert image is not None   # the chip photo was read
        return "ref"

    def verify(self, ref, window_s, on_guidance):
        return SimpleNamespace(outcome="match", score=0.8, threshold=0.4, liveness="live", liveness_score=0.99,
                               quality_ok=True, quality_failures=[], reasons=[], best_frame=None)


class Identity:
    def check(self, person, document):
        self.document = document
        return SimpleNamespace(outcome="clear", reasons=[])


class Audit:
    def __init__(self):
        self.events = []

    def append(self, event):
        self.events.append(event)
        return len(self.events)


class KeyRecordingLane:
    """The simulated lane, recording the access keys it was given."""

    def __init__(self, lane):
        self.lane, self.keys = lane, []

    def scan(self):
        return self.lane.scan()

    def read(self, key, **kw):
        self.keys.append(key)
        return self.lane.read(key, **kw)


@pytest.fixture()
def lane(tmp_path, shared_dir):
    from cardreader.sim.persona import load_persona
    from gate.station import SimulatedLane
    settings = Settings(data_dir=tmp_path)
    settings.reader.mrz_source = "ocr"    # the access key comes from the scanner's image, by OCR
    lane = SimulatedLane(settings)
    persona = load_persona("demo")
    return lane, lane.issue(persona), persona


def _transaction(lane, policy):
    recording = KeyRecordingLane(lane)
    devices = Devices(scanner=recording, reader=recording, face=FaceStation(), identity=Identity(), audit=Audit(),
                      barrier=SimulatedBarrier(auto_pass_after=0.01), card_present=lane.card_present,
                      same_card=lane.same_card)
    tx = Transaction(devices, policy, timeouts=Timeouts(scan_s=30, read_s=30, passage_s=0.5), clock=lambda: NOW)
    return tx.run(), devices, recording.keys


def test_card_front_up_opens_the_chip_with_pace_can_and_records_no_mrz_cross_check(lane):
    from cardreader.protocol.pace import CAN
    sim, card, persona = lane
    sim.insert(card, side="front")
    rec, d, keys = _transaction(sim, Policy())
    assert [type(k) for k in keys] == [CAN] and keys[0].value == persona.can
    decision = d.audit.events[0]
    doc = decision.checks["document"]
    assert doc["read_ok"] and doc["access_control"].startswith("PACE") and doc["access_key"] == "can"
    assert doc["pa_verdict"] == "valid" and doc["clone_result"] == "passed"
    assert doc["mrz_mismatch_fields"] is None             # no printed MRZ to compare DG1 with
    # the policy requires the cross-check: a referral for that alone, as soon as it is known
    assert rec.outcome == "referred"
    assert [r for r in rec.reasons if not r.startswith("missing.")] == ["document.mrz_not_compared"]
    assert d.barrier.state() is BarrierState.CLOSED and not any(e == "open" for _, e in d.barrier.history)


def test_a_policy_that_waives_the_cross_check_for_can_lets_the_traveller_through(lane):
    sim, card, persona = lane
    sim.insert(card, side="front")
    rec, d, _ = _transaction(sim, Policy(require_mrz_cross_check=False))
    assert rec.outcome == "passed", rec.reasons
    assert d.identity.document.document_number == persona.document_number   # asked from the chip's DG1
    doc = d.audit.events[0].checks["document"]
    assert doc["access_key"] == "can" and doc["mrz_mismatch_fields"] is None   # recorded as not performed


def test_mrz_side_up_uses_the_scanned_mrz_and_compares_dg1(lane):
    sim, card, persona = lane
    sim.insert(card)                 # MRZ side up: the MRZ opens the chip, the CAN is not needed
    rec, d, keys = _transaction(sim, Policy())
    assert rec.outcome == "passed", rec.reasons
    assert keys[0].key_seed_input() == sim._printed.bac_key().key_seed_input()
    doc = d.audit.events[0].checks["document"]
    assert doc["access_key"] == "mrz" and doc["mrz_mismatch_fields"] == []


def _evidence(**doc):
    base = dict(read_ok=True, pa_verdict="valid", clone_result="passed", date_of_expiry=dt.date(2031, 1, 1),
                mrz_check_digits_ok=True, face_on_chip=True)
    return Evidence(document=DocumentEvidence(**{**base, **doc}),
                    face=FaceEvidence("match", 0.8, 0.4, "live", 0.99, True), identity=IdentityEvidence("clear"))


def test_policy_waives_only_a_cross_check_a_can_made_impossible():
    lenient, today = Policy(require_mrz_cross_check=False), dt.date(2026, 11, 23)
    assert evaluate(_evidence(access_key="can"), lenient, today).open
    assert evaluate(_evidence(access_key="can"), Policy(), today).reasons == ["document.mrz_not_compared"]
    # a chip opened with the MRZ and never compared is a fault, not a CAN transaction
    assert evaluate(_evidence(access_key="mrz"), lenient, today).reasons == ["document.mrz_not_compared"]
    assert evaluate(_evidence(), lenient, today).reasons == ["document.mrz_not_compared"]
    # a mismatch always refers
    assert evaluate(_evidence(access_key="can", mrz_mismatch_fields=("document_number",)), lenient,
                    today).reasons == ["document.mrz_mismatch"]
