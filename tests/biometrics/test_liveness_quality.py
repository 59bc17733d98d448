"""Evidence accumulation for liveness, the MiniFASNet crop rule, pose from landmarks, guidance."""
from __future__ import annotations

import cv2
import numpy as np

from biometrics.align import ARCFACE_112
from biometrics.liveness import (FrameCues, LivenessEvidence, LivenessPolicy, minifas_crop, moire_score,
                                 nonrigid_motion, screen_border_sides)
from biometrics.quality import GUIDANCE, pose_from_landmarks


def cues(model=0.9, lm=None, eyes=0.9, moire=0.0, identical=False):
    return FrameCues(model, ARCFACE_112.copy() if lm is None else lm, eyes, moire, identical)


def test_still_frames_are_an_attack_even_when_the_model_says_live():
    ev = LivenessEvidence(LivenessPolicy(min_frames=4))
    for i in range(6):
        ev.add(cues(identical=i > 0))
    d = ev.decide()
    assert d.verdict == "attack" and "no_natural_motion" in d.reasons


def test_live_needs_model_and_motion_and_enough_frames():
    rng = np.random.default_rng(0)
    ev = LivenessEvidence(LivenessPolicy(min_frames=4))
    ev.add(cues())
    assert ev.decide().verdict == "undetermined"
    for _ in range(5):
        ev.add(cues(lm=ARCFACE_112 + rng.normal(0, 0.5, ARCFACE_112.shape)))
    assert ev.decide().verdict == "live"


def test_low_model_score_or_moire_is_an_attack():
    rng = np.random.default_rng(0)
    for kw, reason in (({"model": 0.1}, "pad_model_attack"), ({"moire": 0.5}, "screen_moire")):
        ev = LivenessEvidence(LivenessPolicy(min_frames=3))
        for _ in range(4):
            ev.add(cues(lm=ARCFACE_112 + rng.normal(0, 0.5, ARCFACE_112.shape), **kw))
        d = ev.decide()
        assert d.verdict == "attack" and reason in d.reasons


def test_blink_is_counted_once_per_close_and_reopen():
    ev = LivenessEvidence()
    for p in (0.9, 0.05, 0.02, 0.95, 0.9, 0.03, 0.8):
        ev.add(cues(eyes=p))
    assert ev.blinks == 2


def test_rigid_motion_is_not_nonrigid():
    ang = np.radians(5)
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    moved = 1.1 * ARCFACE_112 @ r.T + 7
    assert nonrigid_motion(ARCFACE_112, moved) < 1e-4
    warped = moved.copy()
    warped[2] += 3  # the nose moves relative to the eyes
    assert nonrigid_motion(ARCFACE_112, warped) > 0.01


def test_minifas_crop_scales_clips_and_stays_inside():
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, 320:] = 255
    crop = minifas_crop(img, (280, 200, 80, 100), 2.7)
    assert crop.shape == (80, 80, 3)
    assert 0 < crop.mean() < 255  # centred on the split
    edge = minifas_crop(img, (600, 440, 40, 40), 4.0)  # overhanging box is shifted inside
    assert edge.shape == (80, 80, 3) and edge.mean() > 200


def test_frontal_template_has_near_zero_pose_and_turns_are_seen():
    yaw, pitch, roll = pose_from_landmarks(ARCFACE_112)
    assert abs(yaw) < 3 and abs(pitch) < 5 and abs(roll) < 1
    turned = ARCFACE_112.copy()
    turned[2, 0] += 15  # nose towards the image's right
    assert abs(pose_from_landmarks(turned)[0]) > 20
    tilted = ARCFACE_112.copy()
    tilted[1, 1] += 20
    assert pose_from_landmarks(tilted)[2] > 20


def test_guidance_is_bilingual():
    g = GUIDANCE["move_closer"]
    assert g.vi == "Vui lòng lại gần hơn" and g.en == "Please move closer"
    assert GUIDANCE["look_straight"].vi == "Vui lòng nhìn thẳng vào camera"
    assert all(x.vi and x.en and x.vi != x.en for x in GUIDANCE.values())


def phone_scene(bezel: bool) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A textured 'face' blob on a noisy background, optionally inside a phone's dark bezel."""
    rng = np.random.default_rng(3)
    img = rng.integers(90, 140, (480, 640, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    if bezel:
        cv2.rectangle(img, (210, 90), (430, 420), (20, 20, 20), 14)
        img[104:407, 224:417] = (200, 190, 180)
    cv2.ellipse(img, (320, 250), (55, 70), 0, 0, 360, (150, 170, 210), -1)
    return img, (265.0, 180.0, 110.0, 140.0)


def test_screen_border_seen_around_a_held_device_only():
    img, box = phone_scene(bezel=True)
    assert screen_border_sides(img, box) >= 3
    img, box = phone_scene(bezel=False)
    assert screen_border_sides(img, box) == 0


def test_border_in_most_frames_is_an_attack():
    rng = np.random.default_rng(0)
    ev = LivenessEvidence(LivenessPolicy(min_frames=3))
    for _ in range(4):
        c = cues(lm=ARCFACE_112 + rng.normal(0, 0.5, ARCFACE_112.shape))
        c.border_sides = 4
        ev.add(c)
    d = ev.decide()
    assert d.verdict == "attack" and "screen_border" in d.reasons


def test_moire_score_sees_a_fine_periodic_pattern():
    rng = np.random.default_rng(4)
    skin = cv2.GaussianBlur(rng.integers(100, 160, (200, 200, 3), dtype=np.uint8), (0, 0), 2)
    yy, xx = np.mgrid[0:200, 0:200]
    grid = (12 * np.sin(2 * np.pi * (xx * 0.31 + yy * 0.07))).astype(np.float32)
    screen = np.clip(skin.astype(np.float32) + grid[:, :, None], 0, 255).astype(np.uint8)
    assert moire_score(screen) > 0.02 > moire_score(skin)
    assert moire_score(np.zeros((0, 0, 3), np.uint8)) == 0.0
