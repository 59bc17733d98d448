"""Presentation-attack cues over a capture window: planar motion of a moved photo, the randomised
blink / head-turn / nod challenge, on generated landmark sequences and on real images warped by homographies."""
from __future__ import annotations

import csv
import itertools
from collections import Counter

import cv2
import numpy as np
import pytest

from biometrics.liveness import (CHALLENGES, Challenge, FrameCues, LivenessEvidence, LivenessPolicy,
                                 planar_residuals)
from biometrics.quality import GUIDANCE


def face3d() -> np.ndarray:
    """68 points in the iBUG order on a face-shaped 3-D surface (units: about one inter-eye distance):
    jaw curving back, brows, nose rising out of the plane, eyes, mouth."""
    p = [(1.1 * np.sin(a), 0.3 + 0.9 * np.cos(a), -0.8 * (1 - np.cos(a))) for a in np.linspace(-1.4, 1.4, 17)]
    p += [(x, -0.45, 0.1) for x in np.r_[np.linspace(-0.8, -0.2, 5), np.linspace(0.2, 0.8, 5)]]
    p += [(0.0, -0.3 + 0.2 * i, 0.2 + 0.13 * i) for i in range(4)]
    p += [(x, 0.4, 0.3) for x in np.linspace(-0.2, 0.2, 5)]
    ring = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    p += [(cx + 0.15 * np.cos(a), -0.25 + 0.06 * np.sin(a), 0.0) for cx in (-0.5, 0.5) for a in ring]
    p += [(0.4 * np.cos(a), 0.75 + 0.15 * np.sin(a), 0.15) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    p += [(0.25 * np.cos(a), 0.75 + 0.05 * np.sin(a), 0.15) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    return np.array(p)


def project(pts3: np.ndarray, yaw: float, pitch: float, shift=(0.0, 0.0), dist=5.0, f=600.0) -> np.ndarray:
    y, p = np.radians(yaw), np.radians(pitch)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    q = pts3 @ (ry @ rx).T
    z = dist - q[:, 2]
    return np.c_[f * q[:, 0] / z + 320 + shift[0], f * q[:, 1] / z + 240 + shift[1]]


def sequence(flat: bool, seed: int, n: int = 10, noise: float = 0.5) -> list[np.ndarray]:
    """A head (or a photo of it: all depth set to 0, so every frame is a homography of the first)
    turning and nodding up to 20 degrees while drifting, with landmark noise of `noise` pixels."""
    rng = np.random.default_rng(seed)
    pts = face3d()
    if flat:
        pts[:, 2] = 0.0
    angles = np.linspace(0, 20, n) * rng.choice([-1, 1])
    return [project(pts, a, a / 3 * rng.choice([-1, 1]), (a, 0.3 * a)) + rng.normal(0, noise, (68, 2))
            for a in angles]


def cues(lm, model=0.9, eyes=0.9, t=None, yaw=None, pitch=None) -> FrameCues:
    return FrameCues(model, lm, eyes, 0.0, t=t, yaw=yaw, pitch=pitch)


def decide(frames, policy=None, challenge=None, final=True):
    ev = LivenessEvidence(policy or LivenessPolicy(min_frames=4), challenge)
    for c in frames:
        ev.add(c)
    return ev, ev.decide(final=final)


def test_a_photo_moved_in_front_of_the_camera_follows_one_homography():
    live, photo = sequence(False, 1), sequence(True, 1)
    s_live, h_live = planar_residuals(live[0], live[-1])
    s_photo, h_photo = planar_residuals(photo[0], photo[-1])
    assert s_photo > 0.02 and h_photo < 0.35 * s_photo   # moved clearly, yet explained by a homography
    assert s_live > 0.02 and h_live > 0.5 * s_live       # the nose and jaw show parallax


@pytest.mark.parametrize("seed", range(5))
def test_planar_motion_rejects_the_moved_photo_and_not_the_turning_head(seed):
    _, d_photo = decide([cues(lm) for lm in sequence(True, seed)])
    assert d_photo.verdict == "attack" and "planar_motion" in d_photo.reasons
    _, d_live = decide([cues(lm) for lm in sequence(False, seed)])
    assert "planar_motion" not in d_live.reasons and d_live.verdict == "live"


def test_planar_cue_stays_silent_when_nothing_moved_enough():
    # a traveller standing still: residuals are detector noise, which says nothing about planarity
    _, d = decide([cues(lm) for lm in sequence(True, 3, n=8)[:1] * 8])
    assert "planar_motion" not in d.reasons


def _answer_frames(seed: int, eyes: list[float], yaws: list[float] | None = None):
    lms = sequence(False, seed, n=len(eyes))
    return [cues(lm, eyes=e, t=0.25 * i, yaw=None if yaws is None else yaws[i])
            for i, (lm, e) in enumerate(zip(lms, eyes))]


def test_blink_after_the_request_answers_the_blink_challenge():
    eyes = [0.9, 0.9, 0.9, 0.9, 0.05, 0.02, 0.9, 0.95]   # request at 0.4 s, eyes open, blink at 1.0-1.5 s
    ev, d = decide(_answer_frames(0, eyes), challenge=Challenge("blink", 0.4))
    assert ev.challenge_met and d.verdict == "live"


def test_a_blink_already_under_way_at_the_request_does_not_answer_it():
    """The eyes must be seen open for a moment after the prompt: closing at the prompt is no reply."""
    eyes = [0.9, 0.9, 0.05, 0.05, 0.9, 0.9, 0.9, 0.9]    # request at 0.5 s, eyes shut 0.5-0.75 s
    ev, d = decide(_answer_frames(0, eyes), challenge=Challenge("blink", 0.5))
    assert not ev.challenge_met and d.reasons == ["challenge_timeout:blink"]
    eyes = [0.9, 0.9, 0.05, 0.05, 0.9, 0.9, 0.02, 0.9]    # ... then open, and a fresh blink at 1.5 s
    ev, d = decide(_answer_frames(0, eyes), challenge=Challenge("blink", 0.5))
    assert ev.challenge_met and d.verdict == "live"


def test_blink_before_the_request_does_not_count_and_times_out_into_a_referral():
    eyes = [0.9, 0.05, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]    # blinked at 0.25 s, request only at 1.0 s
    ev, d = decide(_answer_frames(0, eyes), challenge=Challenge("blink", 1.0))
    assert not ev.challenge_met
    assert d.verdict == "undetermined" and d.reasons == ["challenge_timeout:blink"]
    _, early = decide(_answer_frames(0, eyes), challenge=Challenge("blink", 1.0), final=False)
    assert early.verdict == "undetermined" and early.reasons == ["challenge_pending:blink"]


def turn_frames(sign: int, flat: bool = False, back: bool = True, seed: int = 0) -> list[FrameCues]:
    """A head at rest, then turning 20 degrees (sign +1: to the person's left, a rising yaw) and back,
    4 frames a second; `flat`: a photo of it (no depth) tilted so that the yaw reads the same."""
    rng = np.random.default_rng(seed)
    pts = face3d()
    if flat:
        pts[:, 2] = 0.0
    yaws = [0.0] * 5 + [6.0, 13.0, 20.0, 13.0] + ([4.0, 0.0, 0.0] if back else [20.0, 20.0, 20.0])
    return [cues(project(pts, -sign * y, 0.0) + rng.normal(0, 0.3, (68, 2)), t=0.25 * i, yaw=sign * y)
            for i, y in enumerate(yaws)]


@pytest.mark.parametrize("kind,sign", [("turn_left", 1), ("turn_right", -1)])
def test_head_turn_challenge_needs_the_asked_direction_in_depth_and_back(kind, sign):
    ev, d = decide(turn_frames(sign), challenge=Challenge(kind, 0.6))
    assert ev.challenge_met and d.verdict == "live"
    ev, d = decide(turn_frames(-sign), challenge=Challenge(kind, 0.6))   # the other side: failed for good
    assert ev.challenge_wrong and d.verdict == "undetermined" and d.reasons == [f"challenge_wrong:{kind}"]
    ev, d = decide(turn_frames(sign, back=False), challenge=Challenge(kind, 0.6))   # turned, never back
    assert not ev.challenge_met and d.reasons == [f"challenge_timeout:{kind}"]
    ev, d = decide(turn_frames(sign, flat=True), LivenessPolicy(min_frames=4, require_motion=False,
                                                                planar_min_pairs=99), Challenge(kind, 0.6))
    assert not ev.challenge_met and d.reasons == [f"challenge_timeout:{kind}", "turn_not_3d"]


def nod_frames(sign: int, flat: bool = False, seed: int = 0, turn: float = 0.0) -> list[FrameCues]:
    """`turn_frames` about the horizontal axis: a head looking up (sign +1; the landmark pitch falls) or
    down by 20 degrees and back; `turn`: the yaw (degrees) the landmarks read at the nod's peak."""
    rng = np.random.default_rng(seed)
    pts = face3d()
    if flat:
        pts[:, 2] = 0.0
    angles = [0.0] * 5 + [6.0, 13.0, 20.0, 13.0, 4.0, 0.0, 0.0]
    return [cues(project(pts, 0.0, sign * a) + rng.normal(0, 0.3, (68, 2)), t=0.25 * i, pitch=-sign * a,
                 yaw=turn * a / 20) for i, a in enumerate(angles)]


@pytest.mark.parametrize("kind,sign", [("look_up", 1), ("look_down", -1)])
def test_a_nod_answers_the_asked_vertical_direction_in_depth_only(kind, sign):
    ev, d = decide(nod_frames(sign), challenge=Challenge(kind, 0.6))
    assert ev.challenge_met and d.verdict == "live"
    ev, d = decide(nod_frames(-sign), challenge=Challenge(kind, 0.6))   # the other way: failed for good
    assert ev.challenge_wrong and d.reasons == [f"challenge_wrong:{kind}"]
    ev, d = decide(nod_frames(sign, flat=True), LivenessPolicy(min_frames=4, require_motion=False,
                                                               planar_min_pairs=99), Challenge(kind, 0.6))
    assert not ev.challenge_met and d.reasons == [f"challenge_timeout:{kind}", "nod_not_3d"]   # a tilted photo
    ev, d = decide(nod_frames(sign, turn=15.0), challenge=Challenge(kind, 0.6))   # some yaw on the way: a nod
    assert ev.challenge_met and d.verdict == "live", d.reasons
    ev, d = decide(nod_frames(sign, turn=25.0), challenge=Challenge(kind, 0.6))   # a turn on the way: not asked
    assert ev.challenge_wrong and d.reasons == [f"challenge_wrong:{kind}"]


@pytest.mark.parametrize("kind,sign", [("turn_left", 1), ("turn_right", -1)])
def test_a_turn_may_carry_some_pitch_but_not_a_nod(kind, sign):
    def with_pitch(peak):   # the landmark pitch rises with the turn to `peak` degrees at its height
        return [cues(c.landmarks, t=c.t, yaw=c.yaw, pitch=peak * abs(c.yaw) / 20) for c in turn_frames(sign)]
    ev, d = decide(with_pitch(14.0), challenge=Challenge(kind, 0.6))
    assert ev.challenge_met and d.verdict == "live", d.reasons
    ev, d = decide(with_pitch(-14.0), challenge=Challenge(kind, 0.6))
    assert ev.challenge_met and d.verdict == "live", d.reasons
    ev, d = decide(with_pitch(22.0), challenge=Challenge(kind, 0.6))   # a nod as well: not asked
    assert ev.challenge_wrong and d.reasons == [f"challenge_wrong:{kind}"]


@pytest.mark.parametrize("kind", ["turn_left", "turn_right", "blink"])
def test_a_nod_during_a_turn_or_blink_request_loses(kind):
    ev, d = decide(nod_frames(1), challenge=Challenge(kind, 0.6))
    assert ev.challenge_wrong and d.reasons == [f"challenge_wrong:{kind}"]
    up_then_left = nod_frames(1)[:-1] + [cues(c.landmarks, t=c.t + 3.0, yaw=c.yaw, pitch=0.0) for c in turn_frames(1)]
    ev, d = decide(up_then_left, challenge=Challenge(("look_up", "turn_left"), 0.6, gaps=(0.5,)))
    assert ev.challenge_met and d.verdict == "live", d.reasons
    ev, d = decide(up_then_left, challenge=Challenge(("look_up", "look_up"), 0.6, gaps=(0.5,)))   # a turn, not a nod
    assert ev.steps_met == 1 and d.reasons == ["challenge_wrong:look_up"]


def test_a_nan_is_never_judged_live():
    """NaN fails every `<` and `>`: a broken score or angle must not slip past the thresholds."""
    frames = [cues(lm) for lm in sequence(False, 0)]
    frames[3] = cues(frames[3].landmarks, model=float("nan"))
    ev, d = decide(frames)
    assert d.verdict == "undetermined" and d.reasons == ["cue_not_finite:model"]
    nod = nod_frames(1)
    nod[0] = cues(nod[0].landmarks, t=nod[0].t, yaw=0.0, pitch=float("nan"))   # in the baseline: skipped
    ev, d = decide(nod, challenge=Challenge("turn_left", 0.6))
    assert ev.challenge_wrong and d.reasons == ["challenge_wrong:turn_left"]


def test_frame_cues_keep_the_face_out_of_their_repr():
    c = FrameCues(0.9, np.full((68, 2), 123.25), 0.8, 0.0, yaw=4.5, identity=np.full(4, 0.375))
    assert "123.25" not in repr(c) and "0.375" not in repr(c) and "yaw=4.5" in repr(c)


def test_two_actions_are_answered_in_order_each_after_its_own_prompt():
    left = turn_frames(1)                                  # the turn is answered (back at rest) at 2.5 s
    blink = [cues(left[-1].landmarks, eyes=e, t=2.75 + 0.25 * i, yaw=0.0) for i, e in enumerate([0.9, 0.9, 0.05, 0.9])]
    ev, d = decide(left + blink, challenge=Challenge(("turn_left", "blink"), 0.6))
    assert ev.steps_met == 2 and ev.challenge_met and d.verdict == "live"
    ev, d = decide(left + blink, challenge=Challenge(("blink", "turn_left"), 0.6))   # asked in the other order:
    assert ev.steps_met == 0 and d.reasons == ["challenge_wrong:blink"]   # a turn nobody asked for loses it


def test_attack_cues_win_over_an_answered_challenge():
    # a photo answers nothing by itself, but even a "met" challenge cannot outvote planar motion
    frames = [cues(lm, eyes=e, t=0.25 * i) for i, (lm, e) in
              enumerate(zip(sequence(True, 4), [0.9, 0.9, 0.9, 0.02, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]))]
    ev, d = decide(frames, challenge=Challenge("blink", 0.2))
    assert ev.challenge_met and d.verdict == "attack" and "planar_motion" in d.reasons


def test_challenges_are_random_actions_with_a_head_movement_bilingual_and_timed_inside_the_window():
    drawn = [Challenge.random() for _ in range(3100)]
    assert all(len(c.kinds) == 3 and set(c.kinds) - {"blink"} for c in drawn)
    orders = Counter(c.kinds for c in drawn)   # every order but blink-blink-blink, about equally (1/124 each)
    assert len(orders) == 124 == Challenge.orders(3) and ("blink",) * 3 not in orders
    assert all(5 <= k <= 55 for k in orders.values()), orders
    times, gaps = [c.issue_at for c in drawn], [g for c in drawn for g in c.gaps]
    assert Challenge.FIRST[0] <= min(times) and max(times) <= Challenge.FIRST[1] and len(set(times)) > 3000
    assert len(gaps) == 2 * 3100 and Challenge.GAP[0] <= min(gaps) and max(gaps) <= Challenge.GAP[1]
    assert all(c.kinds != ("blink",) for c in (Challenge.random(1) for _ in range(50)))
    for kind in CHALLENGES:
        g = GUIDANCE[Challenge.guidance_code(kind)]
        assert g.vi and g.en and g.vi != g.en
    assert GUIDANCE["challenge_next"].vi and GUIDANCE["challenge_next"].en
    assert (GUIDANCE["challenge_look_up"].vi, GUIDANCE["challenge_look_up"].en) == (
        "Vui lòng ngẩng đầu nhẹ lên", "Please tilt your head slightly up")
    assert (GUIDANCE["challenge_look_down"].vi, GUIDANCE["challenge_look_down"].en) == (
        "Vui lòng cúi đầu nhẹ xuống", "Please tilt your head slightly down")
    with pytest.raises(ValueError):
        Challenge(("blink", "smile"), 1.0)
    with pytest.raises(ValueError):
        Challenge.random(0)


FPS = 15.0


def timed_actions(actions: dict[float, str], seconds: float = 6.0, seed: int = 0) -> list[FrameCues]:
    """15 frames a second of a head at rest that starts each action at its time (seconds): 'L'/'R' a
    20-degree turn to the person's left/right and back over 0.4 s, 'B' a blink over 0.13 s."""
    rng = np.random.default_rng(seed)
    pts, n = face3d(), int(seconds * FPS)
    yaw, eyes = np.zeros(n), np.full(n, 0.95)
    for at, a in actions.items():
        i = int(round(at * FPS))
        if a == "B":
            eyes[i:i + 2] = [0.3, 0.02][:len(eyes[i:i + 2])]
        else:
            yaw[i:i + 6] = np.array([7.0, 14.0, 20.0, 20.0, 13.0, 5.0])[:len(yaw[i:i + 6])] * (1 if a == "L" else -1)
    return [cues(project(pts, -y, 0.0) + rng.normal(0, 0.3, (68, 2)), eyes=e, t=i / FPS, yaw=y)
            for i, (y, e) in enumerate(zip(yaw, eyes))]


PROMPT = 1.0   # the first prompt; the answer's onset is timed from it


@pytest.mark.parametrize("kind,act", [("turn_left", "L"), ("turn_right", "R"), ("blink", "B")])
def test_an_action_counts_only_if_it_starts_within_a_human_reaction_time_of_its_prompt(kind, act):
    for reaction in (0.3, 0.7, 1.2, 1.55):   # a person who read the prompt: passes
        ev, d = decide(timed_actions({PROMPT + reaction: act}), challenge=Challenge(kind, PROMPT))
        assert ev.challenge_met and d.verdict == "live", (reaction, d.reasons)
    for late in (1.85, 2.4):   # acting on its own schedule, after the window: refused though it did the action
        ev, d = decide(timed_actions({PROMPT + late: act}), challenge=Challenge(kind, PROMPT))
        assert not ev.challenge_met and d.reasons == [f"challenge_timeout:{kind}", "onset_late"], (late, d.reasons)


@pytest.mark.parametrize("early", [-0.1, 0.0, 0.1])
def test_a_turn_started_before_the_prompt_could_be_read_is_anticipation_and_loses(early):
    """Under way at the prompt or started within `challenge_settle_s` of it: no reaction to the prompt."""
    ev, d = decide(timed_actions({PROMPT + early: "L"}), challenge=Challenge("turn_left", PROMPT))
    assert ev.challenge_wrong and d.reasons == ["challenge_wrong:turn_left", "onset_early"], (early, d.reasons)
    assert ev.challenge_failed
    ev, d = decide(timed_actions({PROMPT - 0.4: "L"}), challenge=Challenge("turn_left", PROMPT))
    assert not ev.challenge_met and d.reasons == ["challenge_timeout:turn_left", "onset_late"]   # over before it


def test_a_blink_at_the_prompt_answers_nothing_but_a_blink_after_it_does():
    ev, d = decide(timed_actions({PROMPT + 0.05: "B"}), challenge=Challenge("blink", PROMPT))
    assert not ev.challenge_met and d.reasons == ["challenge_timeout:blink", "onset_late"]
    ev, d = decide(timed_actions({PROMPT + 0.05: "B", PROMPT + 0.9: "B"}), challenge=Challenge("blink", PROMPT))
    assert ev.challenge_met and d.verdict == "live"


def test_the_next_prompt_waits_for_rest_and_a_turn_during_the_rest_loses():
    c = Challenge(("turn_left", "turn_right"), PROMPT, gaps=(1.0,))
    ev, d = decide(timed_actions({1.6: "L", 3.5: "R"}), challenge=c)   # left answered ~2.1 s; right prompted ~3.1 s
    assert ev.challenge_met and d.verdict == "live" and 3.0 <= ev.answered_at - 0.0 <= 4.5
    ev, d = decide(timed_actions({1.6: "L", 2.4: "R"}), challenge=c)   # right before its prompt: not asked yet
    assert ev.steps_met == 1 and ev.challenge_wrong and d.reasons == ["challenge_wrong:turn_right"]
    ev, d = decide(timed_actions({1.6: "L", 5.0: "R"}), challenge=c)   # right too long after its prompt
    assert ev.steps_met == 1 and d.reasons == ["challenge_timeout:turn_right", "onset_late"]


def test_a_replay_acting_on_a_fixed_schedule_rarely_meets_random_prompts():
    """Left, right, blink every 1.5 s at a random phase against random challenges: each action must
    start 0.2-1.7 s after a prompt it cannot foresee, and no other head movement may come, so it passes only
    by chance; the same schedule acted on cue passes."""
    rng = np.random.default_rng(7)
    # the 26 orders of blinks and turns alone: the ones this replay's kinds could match (of 124), so
    # only the timing stands between it and a pass
    orders = [o for o in itertools.product(("blink", "turn_left", "turn_right"), repeat=3) if set(o) != {"blink"}]
    passed = 0
    for k, order in enumerate(orders):
        phase = rng.uniform(0, 4.5)
        sched = {phase + 1.5 * i: "LRB"[i % 3] for i in range(6) if phase + 1.5 * i < 7.0}
        c = Challenge(order, rng.uniform(*Challenge.FIRST), tuple(rng.uniform(*Challenge.GAP, 2)))
        passed += decide(timed_actions(sched, 7.0, seed=k), challenge=c)[0].challenge_met
    assert passed <= 1, passed
    c = Challenge(("blink", "turn_right", "turn_right"), 0.8, gaps=(0.7, 0.4))
    on_cue = {1.3: "B", 1.3 + 0.13 + 0.7 + 0.6: "R", 1.3 + 0.13 + 0.7 + 0.6 + 0.47 + 0.4 + 0.9: "R"}
    ev, d = decide(timed_actions(on_cue, 7.0), challenge=c)
    assert ev.challenge_met and d.verdict == "live", d.reasons


def test_the_share_of_orders_a_fixed_schedule_can_match():
    assert Challenge.fixed_pattern_chance(3) == pytest.approx(3 / 124)   # one or two head movements, anywhere
    assert Challenge.fixed_pattern_chance(2) == pytest.approx(2 / 24)
    assert Challenge.fixed_pattern_chance(4) < Challenge.fixed_pattern_chance(3)


# ---- real images: the detector and 68-point landmark model on a photo warped by homographies ----

def _plane_homographies(w: int, h: int, n: int, seed: int) -> list[np.ndarray]:
    """A sheet tilted up to ~25 degrees about both axes and drifting: the image of a plane under a
    pinhole camera, i.e. one homography per frame."""
    rng = np.random.default_rng(seed)
    f, out = 1.2 * w, []
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    sy, sx = rng.choice([-1, 1], 2)
    for a in np.linspace(0, 25, n):
        ry, rx = np.radians(sy * a), np.radians(sx * a / 2)
        r = (np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
             @ np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]]))
        t = np.array([a * 0.002 * w, 0.0, f])
        m = k @ np.c_[r[:, :2], t] @ np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
        out.append(m / m[2, 2])
    base = np.linalg.inv(out[0])
    return [m @ base for m in out]


@pytest.mark.models
def test_real_landmarks_of_a_warped_photo_are_planar(verifier, demo_dir):
    v = verifier
    photo = cv2.imread(str(demo_dir / "eileen_collins_nasa.png"))
    h, w = photo.shape[:2]
    canvas = cv2.copyMakeBorder(photo, h // 4, h // 4, w // 4, w // 4, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    H, W = canvas.shape[:2]
    ev = LivenessEvidence(LivenessPolicy(min_frames=4))
    for m in _plane_homographies(W, H, 10, seed=0):
        img = cv2.warpPerspective(canvas, m, (W, H), borderValue=(90, 90, 90))
        faces = v.detector.detect(img)
        assert faces
        face = max(faces, key=lambda f: f.score)
        ev.add(cues(v.landmarks.predict(img, face.box)))
    d = ev.decide(final=True)
    assert d.verdict == "attack" and "planar_motion" in d.reasons, d.cues


@pytest.mark.models
def test_real_live_frames_are_not_planar(verifier, shared_dir):
    """The gate's passing traveller (pad-dev live frames of one person) moves like a head."""
    v = verifier
    paths = sorted((shared_dir / "data" / "pad-dev" / "images" / "BalveerSinghYT").glob("*.png"))
    labels = {r["path"]: r["label"] for r in csv.DictReader(open(shared_dir / "data" / "pad-dev" / "labels.csv"))}
    ev = LivenessEvidence(LivenessPolicy(min_frames=4))
    for p in paths:
        if labels.get(f"images/BalveerSinghYT/{p.name}") != "live":
            continue
        img = cv2.imread(str(p))
        faces = v.detector.detect(img)
        if faces:
            ev.add(cues(v.landmarks.predict(img, max(faces, key=lambda f: f.score).box)))
    d = ev.decide(final=True)
    assert d.cues["planar_pairs"] >= 3 and "planar_motion" not in d.reasons, d.cues


# ---- simulated attack generator -----------------------------------------------------------------

def _face_like(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((160, 160, 3), (60, 110, 170), np.uint8)
    cv2.ellipse(img, (80, 85), (45, 60), 0, 0, 360, (120, 160, 210), -1)
    for cx in (62, 98):
        cv2.circle(img, (cx, 70), 6, (40, 40, 40), -1)
    return cv2.GaussianBlur(img, (5, 5), 0) + rng.integers(0, 3, img.shape, dtype=np.uint8)


@pytest.mark.parametrize("kind", ["print", "replay"])
def test_attack_generator_is_reproducible_by_seed_and_changes_the_image(kind):
    from biometrics.pad_synth import ATTACKS
    img = _face_like(0)
    a = ATTACKS[kind](img, np.random.default_rng(7))
    b = ATTACKS[kind](img, np.random.default_rng(7))
    c = ATTACKS[kind](img, np.random.default_rng(8))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a.astype(int) - img).mean() > 5


def test_simulated_replay_raises_the_moire_cue():
    from biometrics.liveness import moire_score
    from biometrics.pad_synth import replay_attack
    img = cv2.resize(_face_like(1), (320, 320))
    base = moire_score(img)
    scores = [moire_score(replay_attack(img, np.random.default_rng(s))) for s in range(6)]
    assert np.median(scores) > 2 * base, (base, scores)


@pytest.mark.models
def test_capture_loop_asks_a_challenge_and_an_unanswered_one_is_referred(models_dir, shared_dir):
    """Recorded live frames without a blink or a turn cannot answer a request drawn at run time: the
    window ends undetermined (a referral), whichever challenge was drawn."""
    import dataclasses

    from biometrics.camera import ImageSequenceCamera
    from biometrics.pipeline import FaceVerifier
    v = FaceVerifier.load(models_dir)   # its own instance: the policy is changed below
    v.liveness_policy = dataclasses.replace(v.liveness_policy, challenge=True)
    root = shared_dir / "data" / "pad-dev"
    rows = [r for r in csv.DictReader((root / "labels.csv").open())
            if "/BalveerSinghYT/" in r["path"] and r["label"] == "live"]
    frames = []
    for r in rows:   # one recorded frame has the eyes shut (a blink in the recording): leave it out
        img = cv2.imread(str(root / r["path"]))
        face = max(v.detector.detect(img), key=lambda f: f.score)
        if v.eyes.p_open(img, v.landmarks.predict(img, face.box)) > 0.5:
            frames.append(img)
    seen = []
    t = iter(np.arange(0.0, 100.0, 0.1))
    res = v.verify(ImageSequenceCamera(frames[1:], loop=True), v.reference(frames[0]), window_s=4,
                   clock=lambda: float(next(t)), on_guidance=seen.append)
    assert res.liveness == "undetermined"
    assert any(r.startswith("challenge_timeout:") for r in res.reasons), res.reasons
    assert any(g.code.startswith("challenge_") for g in seen)


def test_an_answer_long_after_the_request_does_not_count():
    eyes = [0.9] * 6 + [0.02, 0.9]                      # blink at 1.5 s, request at 0.2 s, 1 s to answer
    ev, d = decide(_answer_frames(0, eyes), LivenessPolicy(min_frames=4, challenge_response_s=1.0),
                   Challenge("blink", 0.2))
    assert not ev.challenge_met and d.reasons == ["challenge_timeout:blink", "onset_late"]
