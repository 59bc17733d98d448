"""The policy: pure evaluation over typed results, validated configuration."""
from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from gate.policy import DocumentEvidence, Evidence, FaceEvidence, IdentityEvidence, Policy, evaluate

TODAY = dt.date(2026, 11, 23)
DOC = DocumentEvidence(read_ok=True, pa_verdict="valid", clone_protocol="CA", clone_result="passed",
                       document_type="ID", nationality="VNM", issuing_state="VNM",
                       date_of_expiry=dt.date(2030, 1, 1), mrz_check_digits_ok=True,
                       mrz_mismatch_fields=(), face_on_chip=True)
FACE = FaceEvidence(outcome="match", score=0.7, threshold=0.4, liveness="live", quality_ok=True)
ID = IdentityEvidence(outcome="clear")
ALL = Evidence(DOC, FACE, ID)


def test_all_passed_opens():
    assert evaluate(ALL, Policy(), TODAY).open


@pytest.mark.parametrize("missing", ["document", "face", "identity"])
def test_missing_result_always_refers(missing):
    ev = Evidence(**{"document": DOC, "face": FACE, "identity": ID, missing: None})
    lenient = Policy(accept_pa_incomplete=True, require_clone_detection=False, require_quality=False,
                     accept_liveness_undetermined=True, identity_pass=["clear", "not_found"])
    d = evaluate(ev, lenient, TODAY)
    assert not d.open and d.reasons == [f"missing.{missing}"]


def test_expiry_is_checked_against_the_injected_day():
    ev = Evidence(DocumentEvidence(**{**DOC.__dict__, "date_of_expiry": TODAY}), FACE, ID)
    assert evaluate(ev, Policy(), TODAY).open            # valid through its expiry day
    assert evaluate(ev, Policy(), TODAY + dt.timedelta(days=1)).reasons == ["document.expired"]


def test_never_passable_verdicts_cannot_be_configured():
    with pytest.raises(ValidationError):
        Policy(identity_pass=["clear", "watch_list"])
    with pytest.raises(ValidationError):
        Policy(overrides=[{"nationality": "VNM", "identity_pass": ["revoked"]}])


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError):
        Policy(open_always=True)
    with pytest.raises(ValidationError):
        Policy(overrides=[{"nationality": "VNM", "skip_face": True}])


def test_lenient_rules_never_pass_hard_failures():
    lenient = Policy(accept_pa_incomplete=True, require_clone_detection=False, require_quality=False,
                     accept_liveness_undetermined=True)
    for doc, reason in [({"pa_verdict": "invalid"}, "document.pa_invalid"),
                        ({"clone_result": "failed"}, "document.clone_detection_failed")]:
        ev = Evidence(DocumentEvidence(**{**DOC.__dict__, **doc}), FACE, ID)
        assert evaluate(ev, lenient, TODAY).reasons == [reason]
    ev = Evidence(DOC, FaceEvidence(**{**FACE.__dict__, "liveness": "attack"}), ID)
    assert evaluate(ev, lenient, TODAY).reasons == ["face.liveness_attack"]


def test_per_document_type_override_first_match_wins():
    policy = Policy(overrides=[{"document_type": "P", "require_clone_detection": False},
                               {"nationality": "XXX", "allowed": False}])
    no_clone = {"clone_result": "not_performed", "clone_protocol": None}
    passport = Evidence(DocumentEvidence(**{**DOC.__dict__, **no_clone, "document_type": "P"}), FACE, ID)
    card = Evidence(DocumentEvidence(**{**DOC.__dict__, **no_clone}), FACE, ID)
    assert evaluate(passport, policy, TODAY).open
    assert evaluate(card, policy, TODAY).reasons == ["document.clone_detection_not_performed"]
    stateless = Evidence(DocumentEvidence(**{**DOC.__dict__, "nationality": "XXX"}), FACE, ID)
    assert evaluate(stateless, policy, TODAY).reasons == ["document.not_eligible"]


def test_policy_floor_can_only_raise_the_threshold():
    ev = Evidence(DOC, FaceEvidence(**{**FACE.__dict__, "score": 0.5}), ID)
    assert evaluate(ev, Policy(min_face_score=0.6), TODAY).reasons == ["face.below_policy_floor"]
    assert evaluate(ev, Policy(min_face_score=0.1), TODAY).open
    low = Evidence(DOC, FaceEvidence(**{**FACE.__dict__, "score": 0.3}), ID)
    assert evaluate(low, Policy(min_face_score=0.1), TODAY).reasons == ["face.below_threshold"]


def test_policy_loads_from_settings_and_rejects_unknown_keys(monkeypatch):
    from gate.config import Settings
    monkeypatch.setenv("EGATE_POLICY__ACCEPT_PA_INCOMPLETE", "true")
    assert Settings().policy.accept_pa_incomplete is True
    monkeypatch.setenv("EGATE_POLICY__BOGUS", "1")
    with pytest.raises(ValidationError):
        Settings()


def test_an_attack_with_agreeing_faces_refers_for_the_attack_not_as_a_non_match():
    attack = {**FACE.__dict__, "outcome": "no_match", "liveness": "attack"}
    agreeing = evaluate(Evidence(DOC, FaceEvidence(**attack), ID), Policy(), TODAY)
    assert not agreeing.open and agreeing.reasons == ["face.liveness_attack"]
    other_person = evaluate(Evidence(DOC, FaceEvidence(**{**attack, "score": 0.2}), ID), Policy(), TODAY)
    assert not other_person.open and other_person.reasons == ["face.no_match", "face.liveness_attack"]
