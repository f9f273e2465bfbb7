"""Generator parameters: the splits' parameter ranges, the actions' base tempos, framing and view shares, and
the sampling of one subject (body proportions, camera, detector noise) from them."""
from __future__ import annotations

import numpy as np

from ..dataset import FRAME_H

GENERATOR_VERSION = "1.4"
IDLE = -1  # pseudo-label for idle / transition frames

# (low, high) ranges; the test split samples from ``test`` ranges, given as lists of intervals.
SPLIT_PARAMS: dict[str, dict[str, list[tuple[float, float]]]] = {
    "train": {
        "stature_px": [(190.0, 430.0)],       # standing height in pixels (camera distance)
        "shoulder_w": [(0.20, 0.25)],         # shoulder joint separation / stature
        "hip_w": [(0.11, 0.15)],
        "arm_len": [(0.30, 0.35)],            # upper arm + forearm / stature
        "leg_len": [(0.47, 0.52)],            # hip joint to ankle / stature
        "yaw_deg": [(-40.0, 40.0)],           # body turned away from the camera
        "pitch_deg": [(-8.0, 8.0)],
        "roll_deg": [(-4.0, 4.0)],
        "center_x": [(0.30, 0.70)],           # hip midpoint x / frame width
        "tempo": [(0.90, 1.10)],              # multiplier on the action's base tempo range
    },
    "test": {
        "stature_px": [(150.0, 190.0), (430.0, 460.0)],
        "shoulder_w": [(0.18, 0.20), (0.25, 0.27)],
        "hip_w": [(0.09, 0.11), (0.15, 0.17)],
        "arm_len": [(0.28, 0.30), (0.35, 0.37)],
        "leg_len": [(0.45, 0.47), (0.52, 0.54)],
        "yaw_deg": [(-55.0, -40.0), (40.0, 55.0)],
        "pitch_deg": [(-12.0, -8.0), (8.0, 12.0)],
        "roll_deg": [(-7.0, -4.0), (4.0, 7.0)],
        "center_x": [(0.20, 0.30), (0.70, 0.80)],
        "tempo": [(0.85, 0.90), (1.10, 1.15)],
    },
}
SPLIT_PARAMS["val"] = SPLIT_PARAMS["train"]

# base tempo (cycles per second) of each action
BASE_TEMPO_HZ = {
    0: (1.3, 2.2),   # JUMPING
    1: (0.8, 1.4),   # JUMPING_JACKS
    2: (0.8, 1.5),   # BOXING (one cycle = a punch with each hand)
    3: (1.2, 2.4),   # WAVING_2HANDS
    4: (1.2, 2.4),   # WAVING_1HAND
    5: (0.9, 4.0),   # CLAPPING_HANDS: slow single claps to fast applause
}
# share of sequences filmed as an upper-body shot: the frame's bottom edge cuts the body between mid-thigh and
# waist, and the visible part fills half to most of the frame height (close-ups, seated people, webcams)
P_UPPER_BODY = 0.4
UPPER_BODY_CUT = (0.36, 0.62)   # height of the frame's bottom edge above the feet / stature: mid-thigh to waist
UPPER_BODY_FILL = (0.5, 0.85)   # visible part of the body / frame height (headroom for raised hands)
# views beyond the split's yaw range, in every split: the person seen from the side (profile) or from behind
P_SIDE_VIEW, SIDE_VIEW_YAW = 0.2, (60.0, 95.0)
P_BACK_VIEW, BACK_VIEW_YAW = 0.07, (150.0, 210.0)


def _u(rng: np.random.Generator, intervals) -> float:
    """Uniform over a union of intervals (weighted by length)."""
    lengths = np.array([hi - lo for lo, hi in intervals], dtype=np.float64)
    k = rng.choice(len(intervals), p=lengths / lengths.sum()) if len(intervals) > 1 else 0
    lo, hi = intervals[k]
    return float(rng.uniform(lo, hi))


def sample_subject(rng: np.random.Generator, split: str = "train") -> dict:
    """Body, camera and detector-noise parameters for one sequence."""
    if split not in SPLIT_PARAMS:
        raise ValueError(f"split must be one of {sorted(SPLIT_PARAMS)}")
    p = SPLIT_PARAMS[split]
    s = {k: _u(rng, v) for k, v in p.items()}
    arm = s.pop("arm_len")
    upper = arm * rng.uniform(0.52, 0.56)
    s["upper_arm"], s["forearm"] = upper, arm - upper
    leg = s.pop("leg_len")
    thigh = leg * rng.uniform(0.49, 0.53)
    s["thigh"], s["shin"] = thigh, leg - thigh
    s["torso"] = rng.uniform(0.27, 0.31)          # hip midpoint to shoulder midpoint
    s["head"] = rng.uniform(0.11, 0.13)           # neck to eyes
    s["ankle_h"] = 0.04
    # where the feet stand (fraction of frame height); people may be cut off at the bottom
    stature = s["stature_px"]
    lo = max(stature + 20.0, 0.6 * FRAME_H)
    hi = max(lo + 1.0, FRAME_H + 0.15 * stature)
    s["feet_y"] = float(rng.uniform(lo, hi))
    view = rng.random()
    s["view"] = "front"
    if view < P_SIDE_VIEW:
        s["view"], s["yaw_deg"] = "side", float(rng.choice([-1.0, 1.0]) * rng.uniform(*SIDE_VIEW_YAW))
    elif view < P_SIDE_VIEW + P_BACK_VIEW:
        s["view"], s["yaw_deg"] = "back", float((rng.uniform(*BACK_VIEW_YAW) + 180.0) % 360.0 - 180.0)
    s["upper_body"] = bool(rng.random() < P_UPPER_BODY)
    if s["upper_body"]:
        cut = rng.uniform(*UPPER_BODY_CUT)
        s["stature_px"] = stature = float(rng.uniform(*UPPER_BODY_FILL) * FRAME_H / (1.0 - cut))
        s["feet_y"] = float(FRAME_H + cut * stature)
    # per-joint noise / stature, log-uniform: a sharp large person to a small blurred one in a low-resolution clip
    s["jitter"] = float(np.exp(rng.uniform(np.log(0.002), np.log(0.025))))
    if s["upper_body"]:  # the detector's noise follows the visible part's size, not the whole body's
        s["jitter"] *= 1.0 - (s["feet_y"] - FRAME_H) / s["stature_px"]
    s["shake"] = float(rng.uniform(0.0, 0.004))          # per-frame global shake / stature
    s["p_drop"] = float(rng.uniform(0.0, 0.05))          # per joint-frame drop probability
    s["p_occlude"] = float(rng.uniform(0.0, 0.35))       # chance of a short limb occlusion
    s["hand"] = "right" if rng.random() < 0.5 else "left"  # waving hand for WAVING_1HAND
    s["mirror_2hands"] = bool(rng.random() < 0.5)        # 2-hand wave: mirrored or same direction
    s["guard"] = "orthodox" if rng.random() < 0.7 else "southpaw"
    return s
