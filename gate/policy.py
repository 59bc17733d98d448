"""The decision: a pure function from typed check results to open-or-refer.

The transaction collects *evidence* (what the document read, the face
comparison and the identity service said), converted to the small typed
summaries below so that the policy never depends on device internals. The
policy is configuration, validated when the gate starts (unknown keys are
rejected), and it can only be made stricter or more lenient within limits a
border authority would accept: an invalid passive authentication, a failed
clone detection, a non-matching face or a liveness attack always refer,
whatever the configuration says. A missing result is always a referral.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IdentityOutcome = Literal["clear", "revoked", "lost_stolen", "exit_ban", "watch_list", "not_found",
                          "unavailable"]
# Identity outcomes a policy may ever let through; the others always refer.
PASSABLE_IDENTITY = {"clear", "not_found"}


@dataclass(frozen=True)
class DocumentEvidence:
    """What the chip read established. No personal data beyond the expiry date and
    the document type/nationality the policy is keyed on."""

    read_ok: bool
    read_error: str | None = None
    access_control: str | None = None
    pa_verdict: Literal["valid", "invalid", "incomplete"] | None = None
    pa_reasons: tuple[str, ...] = ()
    clone_protocol: str | None = None
    clone_result: Literal["passed", "failed", "not_performed"] | None = None
    clone_reason: str | None = None
    document_type: str | None = None       # 'ID' (TD1) or 'P' (passport): first letter of the code
    nationality: str | None = None
    issuing_state: str | None = None
    date_of_expiry: dt.date | None = None
    mrz_check_digits_ok: bool | None = None
    mrz_mismatch_fields: tuple[str, ...] | None = None  # DG1 vs scanned MRZ; None = not compared
    access_key: Literal["mrz", "can"] | None = None     # what opened the chip: the scanned MRZ or the CAN
    face_on_chip: bool = False


@dataclass(frozen=True)
class FaceEvidence:
    outcome: Literal["match", "no_match", "failure_to_acquire"]
    score: float | None = None
    threshold: float | None = None
    liveness: Literal["live", "attack", "undetermined"] | None = None
    liveness_score: float | None = None
    quality_ok: bool | None = None
    quality_failures: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityEvidence:
    outcome: IdentityOutcome
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evidence:
    document: DocumentEvidence | None = None
    face: FaceEvidence | None = None
    identity: IdentityEvidence | None = None


@dataclass(frozen=True)
class Decision:
    open: bool
    reasons: list[str] = field(default_factory=list)


class PolicyRules(BaseModel):
    """The adjustable part of the policy. Every field of a `PolicyOverride` that is
    not None replaces the base value for the documents it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accept_pa_incomplete: bool = Field(
        False, description="accept a passive authentication that could not be completed "
                           "(e.g. no CRL); 'invalid' always refers")
    require_clone_detection: bool = Field(
        True, description="chip authentication or active authentication must have passed; "
                          "when False a chip without CA/AA ('not_performed') passes, 'failed' never does")
    min_face_score: float | None = Field(
        None, description="an extra floor on top of the calibrated threshold (never lowers it)")
    accept_liveness_undetermined: bool = False
    require_quality: bool = True
    require_mrz_cross_check: bool = Field(
        True, description="DG1 must have been compared with the printed MRZ; when False a chip opened "
                          "with the CAN alone (the MRZ unreadable) passes without it; a mismatch never does")
    identity_pass: tuple[IdentityOutcome, ...] = Field(
        ("clear",), description="identity outcomes that let the traveller through; only "
                                "'clear' and 'not_found' are allowed here")
    allowed: bool = Field(True, description="False refers every document this rule matches")

    @field_validator("identity_pass")
    @classmethod
    def _only_passable(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(set(v) - PASSABLE_IDENTITY)
        if bad:
            raise ValueError(f"identity outcomes {bad} can never let a traveller through")
        return v


class PolicyOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    document_type: str | None = Field(None, description="'ID' or 'P'; None matches any")
    nationality: str | None = Field(None, description="ICAO 3-letter code; None matches any")
    accept_pa_incomplete: bool | None = None
    require_clone_detection: bool | None = None
    min_face_score: float | None = None
    accept_liveness_undetermined: bool | None = None
    require_quality: bool | None = None
    require_mrz_cross_check: bool | None = None
    identity_pass: tuple[IdentityOutcome, ...] | None = None
    allowed: bool | None = None

    @field_validator("identity_pass")
    @classmethod
    def _only_passable(cls, v):
        return v if v is None else PolicyRules._only_passable(v)


class Policy(PolicyRules):
    """The whole policy: base rules, per-document overrides (first match wins) and who may
    override a referral."""

    overrides: tuple[PolicyOverride, ...] = ()
    override_role: Literal["officer", "supervisor"] = Field(
        "officer", description="the least role allowed to open the barrier on a referral")

    def rules_for(self, document: DocumentEvidence | None) -> PolicyRules:
        base = PolicyRules(**{k: getattr(self, k) for k in PolicyRules.model_fields})
        if document is None:
            return base
        for o in self.overrides:
            if o.document_type not in (None, document.document_type):
                continue
            if o.nationality not in (None, document.nationality):
                continue
            changes = {k: v for k, v in o.model_dump(exclude={"document_type", "nationality"}).items()
                       if v is not None}
            return base.model_copy(update=changes)
        return base


def _document_reasons(d: DocumentEvidence, rules: PolicyRules, today: dt.date) -> list[str]:
    if not d.read_ok:
        return [f"document.read_failed:{d.read_error or 'unknown'}"]
    r: list[str] = []
    if not rules.allowed:
        r.append("document.not_eligible")
    if d.pa_verdict is None:
        r.append("document.pa_missing")
    elif d.pa_verdict == "invalid":
        r.append("document.pa_invalid")
    elif d.pa_verdict == "incomplete" and not rules.accept_pa_incomplete:
        r.append("document.pa_incomplete")
    elif d.pa_verdict not in ("valid", "incomplete"):
        r.append("document.pa_unknown")
    if d.clone_result == "failed":
        r.append("document.clone_detection_failed")
    elif d.clone_result == "passed":
        pass
    elif d.clone_result == "not_performed" and not rules.require_clone_detection:
        pass
    else:
        r.append("document.clone_detection_not_performed" if d.clone_result == "not_performed"
                 else "document.clone_detection_missing")
    if d.date_of_expiry is None:
        r.append("document.expiry_unknown")
    elif d.date_of_expiry < today:
        r.append("document.expired")
    if d.mrz_check_digits_ok is not True:
        r.append("document.mrz_check_digits")
    if d.mrz_mismatch_fields is None:
        if rules.require_mrz_cross_check or d.access_key != "can":
            r.append("document.mrz_not_compared")
    elif d.mrz_mismatch_fields:
        r.append("document.mrz_mismatch")
    if not d.face_on_chip:
        r.append("document.no_chip_face")
    return r


def _face_reasons(f: FaceEvidence, rules: PolicyRules) -> list[str]:
    r: list[str] = []
    if f.outcome == "failure_to_acquire":
        r.append("face.failure_to_acquire")
    elif f.outcome != "match":
        # the face pipeline labels an attack 'no_match' even when the faces agree; telling the officer
        # 'no match' then would send them after the wrong question (is it the holder?) instead of the attack
        agrees = f.score is not None and f.threshold is not None and f.score >= f.threshold
        if not (f.liveness == "attack" and agrees):
            r.append("face.no_match")
    elif f.score is None or f.threshold is None or f.score < f.threshold:
        r.append("face.below_threshold")   # a 'match' whose numbers disagree is not trusted
    elif rules.min_face_score is not None and f.score < rules.min_face_score:
        r.append("face.below_policy_floor")
    if f.liveness == "attack":
        r.append("face.liveness_attack")
        if "identity_switch" in f.reasons:
            r.append("face.identity_switch")   # another person took over during the capture
    elif f.liveness == "undetermined":
        if any(x.startswith(("challenge_timeout", "challenge_wrong")) for x in f.reasons):   # or a wrong turn
            r.append("face.challenge_unanswered")
        if not rules.accept_liveness_undetermined:
            r.append("face.liveness_undetermined")
    elif f.liveness != "live":
        r.append("face.liveness_missing")
    if rules.require_quality and f.quality_ok is not True:
        r.append("face.quality")
    return r


def evaluate(evidence: Evidence, policy: Policy, today: dt.date) -> Decision:
    """Open only when every check is present and passed; otherwise refer with every reason."""
    rules = policy.rules_for(evidence.document)
    reasons: list[str] = []
    if evidence.document is None:
        reasons.append("missing.document")
    else:
        reasons += _document_reasons(evidence.document, rules, today)
    if evidence.face is None:
        reasons.append("missing.face")
    else:
        reasons += _face_reasons(evidence.face, rules)
    if evidence.identity is None:
        reasons.append("missing.identity")
    elif evidence.identity.outcome not in rules.identity_pass:
        reasons.append(f"identity.{evidence.identity.outcome}")
    return Decision(open=not reasons, reasons=reasons)


def blocking_reasons(evidence: Evidence, policy: Policy, today: dt.date) -> list[str]:
    """The reasons that already refer, ignoring the checks not yet done (for stopping early)."""
    return [r for r in evaluate(evidence, policy, today).reasons if not r.startswith("missing.")]
