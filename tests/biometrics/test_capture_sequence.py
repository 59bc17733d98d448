"""The capture window as a sequence: the same person throughout (identity switch refused), the
challenge answered by a recorded person who follows the prompts, and the same recording without the
asked action timing out into a referral. Real models on real recorded frames (pad-dev)."""
from __future__ import annotations

import csv
import dataclasses
import itertools

import cv2
import numpy as np
import pytest

from biometrics.camera import ImageSequenceCamera, RespondingCamera
from biometrics.liveness import Challenge, FrameCues, LivenessEvidence, LivenessPolicy


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_one_odd_frame_is_not_a_second_person_but_two_checked_frames_are():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=512), rng.normal(size=512)
    same = [_unit(a + 0.3 * rng.normal(size=512)) for _ in range(4)]
    ev = LivenessEvidence(LivenessPolicy())
    for e in same + [_unit(rng.normal(size=512))] + same[:1]:    # a blurred frame unlike anyone
        ev.add(FrameCues(0.9, np.zeros((68, 2)), 0.9, 0.0, identity=e))
    assert ev.people() == 1 and "identity_switch" not in ev.decide(final=True).reasons
    for _ in range(2):                                            # then someone else, checked twice
        ev.add(FrameCues(0.9, np.zeros((68, 2)), 0.9, 0.0, identity=_unit(b + 0.3 * rng.normal(size=512))))
    d = ev.decide()
    assert ev.people() == 2 and d.verdict == "attack" and d.reasons[0] == "identity_switch"


class Ticks:
    def __init__(self, step=0.05):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


@pytest.fixture(scope="module")
def pad_dev(shared_dir):
    root = shared_dir / "data" / "pad-dev"
    if not (root / "labels.csv").is_file():
        pytest.skip("pad-dev data not found")
    return root


def live_frames(root, person):
    rows = [r for r in csv.DictReader((root / "labels.csv").open())
            if f"/{person}/" in r["path"] and r["label"] == "live"]
    return [cv2.imread(str(root / r["path"])) for r in rows]


def _copy(v, **kw):
    """The verifier with another liveness policy (sessions shared)."""
    import copy
    w = copy.copy(v)
    w.liveness_policy = dataclasses.replace(v.liveness_policy, **kw)
    return w


@pytest.mark.models
def test_a_feed_that_switches_to_another_person_is_refused_with_its_own_reason(verifier, pad_dev):
    holder, other = live_frames(pad_dev, "BalveerSinghYT"), live_frames(pad_dev, "WOLF-huo")
    v = _copy(verifier, challenge=False)
    res = v.verify(ImageSequenceCamera(holder[1:5] + other, loop=False), v.reference(holder[0]),
                   window_s=5, clock=Ticks())
    assert res.liveness == "attack" and res.outcome == "no_match"
    assert res.reasons[0] == "identity_switch", res.reasons
    assert res.liveness_cues["people"] == 2


@pytest.mark.models
def test_the_same_person_turning_and_blinking_stays_one_person(verifier, pad_dev):
    """The answering recording's every frame (its blink, its rendered turns) is one identity."""
    from biometrics.camera import PAD_DEV_PERSON, PAD_DEV_TURN_FROM, head_turn
    chip, cam = RespondingCamera.pad_dev(pad_dev)
    frames = live_frames(pad_dev, PAD_DEV_PERSON)
    turn_from = cv2.imread(str(pad_dev / "images" / PAD_DEV_PERSON / f"{PAD_DEV_TURN_FROM}.png"))
    frames[3:3] = [head_turn(turn_from, d) for d in (12, 24, -12, -24)]
    v = _copy(verifier, challenge=False)
    res = v.verify(ImageSequenceCamera(frames, loop=True), v.reference(chip.read_bytes()), window_s=3,
                   clock=Ticks())
    assert "identity_switch" not in res.reasons and res.liveness_cues.get("people", 1) == 1


def prompted(verifier, chip, cam, window_s):
    """The capture loop with the challenge on; the kiosk's prompts reach the recorded person."""
    v = _copy(verifier, challenge=True)
    seen = []

    def prompt(g):
        seen.append(g.code)
        cam.respond(g.code)

    return v.verify(cam, v.reference(chip.read_bytes()), window_s=window_s, clock=Ticks(0.5 / 15),
                    on_guidance=prompt), seen   # the camera's 15 frames a second, one frame per step


@pytest.mark.models
@pytest.mark.parametrize("kinds,seed", [(("turn_left", "blink"), 1), (("blink", "turn_right"), 2),
                                        (("turn_right", "turn_left"), 3), (("look_up", "turn_left"), 6),
                                        (("look_down", "blink"), 7)])
def test_a_recorded_person_answers_both_actions_and_passes(verifier, pad_dev, monkeypatch, kinds, seed):
    """He reacts 0.3-1.0 s after each prompt (seeded), as a person does, and rests between."""
    monkeypatch.setattr(Challenge, "random", classmethod(lambda cls, *a, **k: cls(kinds, 0.8, gaps=(1.2,))))
    chip, cam = RespondingCamera.pad_dev(pad_dev, seed=seed)
    res, seen = prompted(verifier, chip, cam, window_s=8)
    asked = [g for g in seen if g.startswith("challenge_")]
    assert asked == [f"challenge_{kinds[0]}", "challenge_next", f"challenge_{kinds[1]}", "challenge_done"], seen
    assert len(cam.reactions) == 2 and all(0.3 <= r <= 1.0 for r in cam.reactions)
    assert res.liveness_cues["challenge_steps_met"] == 2.0
    assert res.outcome == "match" and res.liveness == "live", res.reasons


@pytest.mark.models
def test_a_replay_of_the_person_acting_outside_the_reaction_window_is_refused(verifier, pad_dev, monkeypatch):
    """The same turns and blink, on the replay's own schedule: each starts 2 s after its prompt
    (a person reacts within 1.5 s), so none answers, though each is the asked action."""
    from biometrics.bench import _replay_clips, self_acting_replay
    monkeypatch.setattr(Challenge, "random", classmethod(lambda cls, *a, **k: cls(("turn_left", "blink"), 0.8)))
    chip, _ = RespondingCamera.pad_dev(pad_dev)
    res, seen = prompted(verifier, chip, RespondingCamera(self_acting_replay(_replay_clips(pad_dev), "L", 10.0, 2.8)),
                         window_s=8)
    assert seen.count("challenge_turn_left") == 1 and "challenge_done" not in seen
    assert res.liveness == "undetermined" and res.outcome == "failure_to_acquire"
    assert "challenge_timeout:turn_left" in res.reasons and "onset_late" in res.reasons, res.reasons


@pytest.mark.models
@pytest.mark.parametrize("kinds", [("blink", "turn_left"), ("turn_left", "blink")])
def test_without_one_asked_action_the_window_is_referred(verifier, pad_dev, monkeypatch, kinds):
    """The same recording, minus the turn clip: the loop keeps playing, nothing answers the turn."""
    monkeypatch.setattr(Challenge, "random", classmethod(lambda cls, *a, **k: cls(kinds, 0.8)))
    res, seen = prompted(verifier, *RespondingCamera.pad_dev(pad_dev, drop=("challenge_turn_left",), seed=4), window_s=8)
    assert "challenge_turn_left" in seen and "challenge_done" not in seen
    assert res.outcome == "failure_to_acquire" and res.liveness == "undetermined"
    assert "challenge_timeout:turn_left" in res.reasons, res.reasons


@pytest.mark.models
@pytest.mark.parametrize("kinds", [("turn_left", "blink"), ("blink", "turn_right"), ("look_up", "blink")])
def test_a_turn_or_nod_to_the_wrong_side_is_refused(verifier, pad_dev, monkeypatch, kinds):
    monkeypatch.setattr(Challenge, "random", classmethod(lambda cls, *a, **k: cls(kinds, 0.8)))
    res, _ = prompted(verifier, *RespondingCamera.pad_dev(pad_dev, wrong_side=True, seed=5), window_s=8)
    turn = next(k for k in kinds if k != "blink")
    assert res.liveness == "undetermined" and res.outcome == "failure_to_acquire"
    assert f"challenge_wrong:{turn}" in res.reasons, res.reasons


@pytest.mark.models
@pytest.mark.parametrize("kinds", [("blink", "turn_left"), ("turn_right", "blink")])
def test_a_replay_that_blinks_by_itself_is_refused(verifier, pad_dev, monkeypatch, kinds):
    """A video of the holder, deaf to the prompts, blinking every second: whatever blink it shows
    inside the blink's window, it never turns its head, let alone to the side asked."""
    from biometrics.camera import PAD_DEV_BLINK, PAD_DEV_NEUTRAL, PAD_DEV_PERSON
    monkeypatch.setattr(Challenge, "random", classmethod(lambda cls, *a, **k: cls(kinds, 0.8)))
    d = pad_dev / "images" / PAD_DEV_PERSON
    loop = [d / f"{n}.png" for n in PAD_DEV_NEUTRAL[:6]] + [d / f"{PAD_DEV_BLINK[0]}.png"] * 2
    chip, _ = RespondingCamera.pad_dev(pad_dev)
    res, seen = prompted(verifier, chip, RespondingCamera(loop), window_s=8)
    assert "challenge_turn_left" in seen or "challenge_turn_right" in seen
    assert res.liveness != "live" and res.outcome != "match", res.reasons
    assert any(r.startswith("challenge_timeout:turn") for r in res.reasons), res.reasons


def _answer_times(seed, prompts=(5, 40, 80), n=110, reaction_s=(0.3, 1.0)):
    """(reactions drawn, seconds from each prompt to its clip's first frame) of a camera whose loop
    is black frames and whose one answer clip is white, prompted before the given frame numbers."""
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    cam = RespondingCamera([black], {"challenge_blink": [white]}, reaction_s=reaction_s, seed=seed)
    starts = []
    for f in itertools.islice(cam.frames(), n):
        if f.index in prompts:
            cam.respond("challenge_blink")   # reaches the person before the next frame
            asked = f.timestamp + 1 / 15
        if f.image[0, 0, 0] == 255:
            starts.append(f.timestamp - asked)
    return cam.reactions, starts


def test_the_recorded_person_reacts_after_a_seeded_human_reaction_time():
    reactions, starts = _answer_times(seed=11)
    assert len(reactions) == 3 and all(0.3 <= r <= 1.0 for r in reactions)
    assert all(abs(s - r) <= 0.5 / 15 + 1e-9 for s, r in zip(starts, reactions)), (starts, reactions)   # nearest frame
    assert _answer_times(seed=11)[0] == reactions and _answer_times(seed=12)[0] != reactions
    assert _answer_times(seed=3, reaction_s=0.6)[0] == [0.6] * 3
    with pytest.raises(ValueError):
        RespondingCamera([np.zeros((4, 4, 3), np.uint8)], reaction_s=(1.0, 0.3))
