"""Procedural 2D pose sequences for the six actions of the RNN-HAR-2D-Pose-database.

A 3D stick figure with sampled body proportions performs an action (wrist and ankle targets
solved with two-link inverse kinematics), is turned to a sampled view angle (yaw, pitch,
roll), projected orthographically into a 640x480 frame at a sampled distance and position,
and degraded like a 2D pose detector: per-joint jitter, camera shake, dropped joints, short
limb occlusions, the far ear hidden when the head turns, and joints outside the frame missing.
Tempo (with drift), amplitude and phase vary per sequence; one-hand waving uses either hand;
some windows start or end with idle/transition frames; some are filmed with a slowly panning and
zooming camera.

Negative ("no action") windows, :func:`generate_negatives`, teach the model that an action needs
its motion, not its pose: frozen or nearly frozen frames of every action (a random phase held
still), everyday still poses (hands clasped, in pockets, arms crossed, hand on hip, holding
something at chest height, phone at the face...), slow non-action movement (shifting weight,
turning, stepping in place slowly) and the plain idle stance, all with detector jitter and
mostly with a slow camera pan/zoom. Training pushes them toward the uniform distribution so the
calibrated "uncertain" threshold rejects them. A share of them carry a real pose detector's errors
on a hard, still person (seen from the side, cut by the frame edge, a slow non-rigid wobble of the
keypoints, left/right swaps, flickering joints), seen on real keypoints of still photos.

Output is OpenPose-18 (x, y) pixels, missing joints (0, 0), ~22 Hz, like the real dataset.

Splits draw from different generator parameters: ``train`` and ``val`` share the training
ranges (different seeds); ``test`` uses held-out ranges (body proportions, camera distance,
position and view angles outside the training ranges, slightly wider tempos), so the test set
is not the training distribution. See :data:`SPLIT_PARAMS`.
"""
from __future__ import annotations

import numpy as np

from ..layouts import OPENPOSE18
from .dataset import CLASSES, FPS, FRAME_H, FRAME_W, WINDOW
from .features import pad_indices

GENERATOR_VERSION = "1.3"
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
# windows of short clips: a share of windows keep only 15..31 of their frames, played back and forth to fill
# the window (features.pad_indices), as the timeline does for tracks shorter than one window
SHORT_CLIP_FRAMES = (15, 31)
# low_rate: poses taken every LOW_RATE_STEPS-th frame (11 or 7.3 Hz of a 22 Hz window), the rest interpolated
LOW_RATE_STEPS = (2, 3)
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


def _phase(rng, t: np.ndarray, hz: float) -> np.ndarray:
    """Phase with tempo drift (a slow sinusoidal modulation of the frequency)."""
    dt = np.diff(t, prepend=t[0] - 1.0 / FPS)
    drift = rng.uniform(0.0, 0.12)
    mod = 1.0 + drift * np.sin(2 * np.pi * t / rng.uniform(1.5, 4.0) + rng.uniform(0, 2 * np.pi))
    return rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(hz * mod * dt)


def _targets(action: int, t: np.ndarray, s: dict, rng: np.random.Generator) -> dict:
    """Per-frame targets in the body frame (x = person's left, y up, z toward the camera).

    Wrist targets are relative to each shoulder with x pointing *outward* for both arms
    (mirrored for the right arm later); ankles relative to each hip the same way.
    """
    T = len(t)
    arm = s["upper_arm"] + s["forearm"]
    leg = s["thigh"] + s["shin"]
    z = np.zeros(T)
    one = np.ones(T)
    # idle defaults
    rest = np.stack([0.05 * arm * one, -0.96 * arm * one, 0.05 * arm * one], -1)
    out = {
        "wrist_l": rest.copy(), "wrist_r": rest.copy(),
        "pole_l": np.tile([0.2, -0.2, -1.0], (T, 1)), "pole_r": np.tile([0.2, -0.2, -1.0], (T, 1)),
        "ankle_l": np.stack([0.02 * one, -0.985 * leg * one, z], -1),
        "ankle_r": np.stack([0.02 * one, -0.985 * leg * one, z], -1),
        "root_y": z.copy(), "airborne": z.copy(), "twist": z.copy(), "lean": z.copy(),
        "head_tilt": z.copy(), "root_x": z.copy(), "yaw": z.copy(),
    }
    sway = 0.004 * np.sin(2 * np.pi * t * rng.uniform(0.2, 0.5) + rng.uniform(0, 6))
    out["lean"] = sway
    if isinstance(action, str):  # a named still pose or slow non-action movement (negatives)
        return _negative_targets(action, out, t, s, rng)
    if action == IDLE:
        # standing with the arms down, or holding any other pose (hand raised, on the hip, pointing,
        # arms crossed...) with only a slow drift: no periodic motion, so no action
        for side in ("l", "r"):
            drift = np.stack([0.03 * arm * np.sin(2 * np.pi * t * rng.uniform(0.1, 0.6) + rng.uniform(0, 6)),
                              0.02 * arm * np.sin(2 * np.pi * t * rng.uniform(0.1, 0.6) + rng.uniform(0, 6)), z], -1)
            if rng.random() < 0.5:
                a = np.deg2rad(rng.uniform(-30, 175))
                r = rng.uniform(0.45, 0.97) * arm
                static = np.array([np.sin(a) * r, -np.cos(a) * r, rng.uniform(-0.1, 0.6) * arm])
                out[f"wrist_{side}"] = np.tile(static, (T, 1))
                out[f"pole_{side}"] = np.tile([rng.uniform(0, 1), -rng.uniform(0, 1), -rng.uniform(-0.5, 1)], (T, 1))
            out[f"wrist_{side}"] = out[f"wrist_{side}"] + drift
        return out
    lo, hi = BASE_TEMPO_HZ[action]
    hz = rng.uniform(lo, hi) * s["tempo"]
    ph = _phase(rng, t, hz)
    amp = rng.uniform(0.75, 1.15)
    if action == 0:  # JUMPING: crouch, take off, land; arms swing a little
        h = rng.uniform(0.06, 0.14) * amp
        crouch = rng.uniform(0.03, 0.07) * amp
        sp = np.sin(ph)
        out["root_y"] = h * np.maximum(sp, 0) - crouch * np.maximum(-sp, 0) ** 1.5
        out["airborne"] = np.maximum(sp, 0) * h
        style = rng.choice(4, p=[0.35, 0.25, 0.2, 0.2])
        if style == 0:  # arms low, swinging a little
            swing = rng.uniform(0.15, 0.45) * amp
            a = 0.12 + swing * np.maximum(sp, 0) + 0.08 * np.maximum(-sp, 0)  # abduction-ish
            fwd = rng.uniform(0.05, 0.25) + 0.3 * swing * sp
        elif style == 1:  # arms swing forward and up on take-off, back down on landing
            swing = rng.uniform(0.8, 2.2) * amp
            a = 0.1 + 0.35 * swing * np.maximum(sp, 0) + rng.uniform(0.0, 0.3)
            fwd = rng.uniform(0.1, 0.3) + 0.6 * swing * np.maximum(sp, 0)
        elif style == 2:  # arms up over the head (a trampoline, a celebration), moving with the jump
            a = rng.uniform(2.3, 3.0) - 0.15 * sp
            fwd = rng.uniform(-0.05, 0.3) * one
        else:  # arms bent, hands at the chest
            a = rng.uniform(0.5, 1.0) + 0.1 * sp
            fwd = rng.uniform(0.45, 0.8) * one
        r = (0.95 if style != 3 else 0.6) * arm
        for side in ("l", "r"):
            out[f"wrist_{side}"] = np.stack([np.sin(a) * r, -np.cos(a) * r, fwd * arm], -1)
    elif action == 1:  # JUMPING_JACKS: arms and legs open and close, hop at each transition
        s_open = (1 - np.cos(ph)) / 2
        top = np.deg2rad(rng.uniform(140, 175)) * min(amp, 1.0)
        a = np.deg2rad(12) + s_open * (top - np.deg2rad(12))
        r = 0.97 * arm
        for side in ("l", "r"):
            out[f"wrist_{side}"] = np.stack([np.sin(a) * r, -np.cos(a) * r, 0.05 * arm * one], -1)
            out[f"pole_{side}"] = np.tile([0.0, -0.3, -1.0], (T, 1))
        g = np.deg2rad(rng.uniform(12, 24) * amp) * s_open
        out["ankle_l"] = np.stack([np.sin(g) * leg, -np.cos(g) * leg * 0.985, z], -1)
        out["ankle_r"] = out["ankle_l"].copy()
        hop = rng.uniform(0.02, 0.06) * np.abs(np.sin(ph))
        out["root_y"] = hop
        out["airborne"] = hop
    elif action == 2:  # BOXING: guard at the chin, alternating straight punches
        for side, off in (("l", 0.0), ("r", np.pi)):
            p = np.maximum(np.sin(ph + off), 0) ** rng.uniform(1.5, 3.0)
            guard = np.array([0.02 * arm, rng.uniform(0.02, 0.10), 0.22 * arm])
            reach = rng.uniform(0.80, 0.95) * arm * min(amp, 1.05)
            punch = np.array([-0.45 * s["shoulder_w"], rng.uniform(-0.02, 0.04), reach])
            out[f"wrist_{side}"] = guard[None] + p[:, None] * (punch - guard)[None]
            out[f"pole_{side}"] = np.tile([0.8, -0.6, 0.0], (T, 1))
        pl = np.maximum(np.sin(ph), 0)
        pr = np.maximum(np.sin(ph + np.pi), 0)
        out["twist"] = np.deg2rad(rng.uniform(6, 18)) * (pl - pr)
        out["root_y"] = 0.008 * np.sin(2 * ph)
        st = 0.5 * s["hip_w"]
        out["ankle_l"] = np.stack([st * one, -0.97 * leg * one, (0.12 if s["guard"] == "orthodox" else -0.08) * one], -1)
        out["ankle_r"] = np.stack([st * one, -0.97 * leg * one, (-0.08 if s["guard"] == "orthodox" else 0.12) * one], -1)
    elif action in (3, 4):  # WAVING: forearm up, hand sways side to side
        sides = ("l", "r") if action == 3 else (("r",) if s["hand"] == "right" else ("l",))
        for side in sides:
            sw = np.deg2rad(rng.uniform(18, 40) * amp)
            high = rng.uniform(0.0, 1.0)  # 0: hand at head height, 1: fully above the head
            elbow_up = np.deg2rad(60 + 50 * high)
            ex = np.sin(elbow_up) * s["upper_arm"]
            ey = -np.cos(elbow_up) * s["upper_arm"]
            # x is outward per arm: symmetric waving keeps the sign, same-direction waving flips it
            sgn = 1.0 if (side == "l" or s["mirror_2hands"]) else -1.0
            ang = sgn * sw * np.sin(ph)
            fx = ex + np.sin(ang) * s["forearm"]
            fy = ey + np.cos(ang) * s["forearm"]
            out[f"wrist_{side}"] = np.stack([fx, fy, 0.08 * arm * one], -1)
            out[f"pole_{side}"] = np.tile([1.0, -0.5, -0.2], (T, 1))
        out["head_tilt"] = 0.02 * np.sin(ph)
    elif action == 5:  # CLAPPING: both hands come together, and part, at the body's midline
        sw_full = s["shoulder_w"]
        contact = rng.uniform(0.08, 0.45) * sw_full          # wrist separation when the palms meet
        gap = max(rng.uniform(0.35, 1.6) * sw_full * amp, contact + 0.15 * sw_full)  # widest separation
        where = rng.random()
        if where < 0.6:  # chest or belly
            hy, fwd, pole = rng.uniform(-0.24, -0.02), rng.uniform(0.25, 0.65), [0.7, -0.7, -0.2]
        elif where < 0.85:  # face height
            hy, fwd, pole = rng.uniform(0.0, 0.14), rng.uniform(0.2, 0.5), [0.9, -0.4, 0.0]
        else:  # over the head
            hy, fwd, pole = rng.uniform(0.16, 0.32), rng.uniform(0.0, 0.3), [1.0, 0.3, 0.0]
        # how long the hands stay apart vs together, and how the motion is shared between them
        apart = ((1 + np.cos(ph)) / 2) ** rng.uniform(0.5, 1.6)
        sep = contact + (gap - contact) * apart
        bal = rng.uniform(0.25, 0.75)                        # the left hand's share of the motion
        off = rng.uniform(-0.25, 0.25) * sw_full             # where the hands meet, from the midline
        bob = rng.uniform(0.0, 0.03) * np.sin(ph + rng.uniform(0, 2 * np.pi))
        # body x (person's left +) -> each shoulder's outward x
        xl = (off + bal * sep) - sw_full / 2
        xr = (1 - bal) * sep - off - sw_full / 2
        for side, x in (("l", xl), ("r", xr)):
            out[f"wrist_{side}"] = np.stack([x, (hy + bob) * one, fwd * arm * one], -1)
            out[f"pole_{side}"] = np.tile(pole, (T, 1))
        if rng.random() < P_GROOVE:
            _groove(out, t, ph, rng)
    return out


P_GROOVE = 0.4  # share of clapping sequences where the body moves to the beat (dancing, singing along)


def _groove(out: dict, t: np.ndarray, ph: np.ndarray, rng: np.random.Generator) -> None:
    """The body moves to the rhythm while the hands act: a knee bounce on the beat (feet on the ground), a sway
    and a slow turn of the shoulders, sometimes stepping from foot to foot. Far smaller than a jump."""
    beat = ph * rng.choice([0.5, 1.0]) + rng.uniform(0, 2 * np.pi)
    out["root_y"] = out["root_y"] - rng.uniform(0.004, 0.025) * (1 + np.cos(beat)) / 2
    sway = 2 * np.pi * t * rng.uniform(0.2, 0.8) + rng.uniform(0, 2 * np.pi)
    out["lean"] = out["lean"] + rng.uniform(0.0, 0.08) * np.sin(sway)
    out["twist"] = out["twist"] + np.deg2rad(rng.uniform(0, 15)) * np.sin(sway + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.4:
        shift = rng.uniform(0.01, 0.04) * np.sin(beat / 2)
        out["root_x"] = out["root_x"] + shift
        for side, sg in (("l", 1.0), ("r", -1.0)):  # feet stay put: the ankle moves against the hips
            out[f"ankle_{side}"] = out[f"ankle_{side}"] - np.stack([sg * shift, 0 * t, 0 * t], -1)


def _ik(root: np.ndarray, target: np.ndarray, l1: float, l2: float, pole: np.ndarray):
    """Two-link inverse kinematics: returns (middle joint, end joint) positions, (T, 3) each."""
    v = target - root
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / np.maximum(d, 1e-9)
    d = np.clip(d, abs(l1 - l2) + 1e-4, l1 + l2 - 1e-4)
    a = (l1 ** 2 - l2 ** 2 + d ** 2) / (2 * d)
    h = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0))
    p = pole - np.sum(pole * u, -1, keepdims=True) * u
    p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-9)
    mid = root + a * u + h * p
    end = root + d * u
    return mid, end


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(np.shape(a) + (3, 3))
    R[..., 0, 0] = c; R[..., 0, 2] = s; R[..., 1, 1] = 1; R[..., 2, 0] = -s; R[..., 2, 2] = c  # noqa: E702
    return R


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(np.shape(a) + (3, 3))
    R[..., 0, 0] = c; R[..., 0, 1] = -s; R[..., 1, 0] = s; R[..., 1, 1] = c; R[..., 2, 2] = 1  # noqa: E702
    return R


def _blend_weights(n_frames: int, segments: list[tuple[int, int]], ramp: int) -> np.ndarray:
    """Soft one-hot weights (n_segments, T) with linear ramps of ``ramp`` frames at boundaries."""
    W = np.zeros((len(segments), n_frames))
    for k, (a, b) in enumerate(segments):
        W[k, a:b] = 1.0
    if ramp > 1 and len(segments) > 1:
        kern = np.ones(ramp) / ramp
        W = np.stack([np.convolve(np.pad(w, (ramp // 2, ramp - 1 - ramp // 2), mode="edge"), kern, "valid")
                      for w in W])
    return W / np.maximum(W.sum(0, keepdims=True), 1e-9)


def render(segments: list[tuple[int, int]], rng: np.random.Generator, subject: dict | None = None,
           split: str = "train", fps: float = FPS, ramp: int = 4, time_scale: float = 1.0,
           camera_drift: bool = False, artefacts: bool = False) -> np.ndarray:
    """Render a sequence of ``(action, n_frames)`` segments (action ``IDLE`` = -1 for idle, or the name
    of a still pose / slow movement from :data:`STILL_POSES` / :data:`SLOW_MOVES`).

    ``time_scale`` slows the body's motion (0 = one frozen frame; detector noise stays per frame);
    ``camera_drift`` adds a slow camera pan and zoom over the sequence; ``artefacts`` adds the errors of a
    real pose detector on a hard, still person (slow non-rigid wobble, left/right swaps, flickering joints).
    Returns float32 (T, 18, 2): OpenPose-18 (x, y) pixels in a 640x480 frame, missing = (0, 0).
    """
    s = subject if subject is not None else sample_subject(rng, split)
    T = int(sum(n for _, n in segments))
    t = np.arange(T) / fps * float(time_scale)
    bounds, a = [], 0
    for _, n in segments:
        bounds.append((a, a + int(n)))
        a += int(n)
    W = _blend_weights(T, bounds, ramp)
    parts = [_targets(act, t, s, rng) for act, _ in segments]
    tg = {k: sum(W[i].reshape((T,) + (1,) * (parts[i][k].ndim - 1)) * parts[i][k] for i in range(len(parts)))
          for k in parts[0]}

    # --- skeleton in the body frame (units of stature), origin at the standing hip midpoint
    hw, sw = s["hip_w"] / 2, s["shoulder_w"] / 2
    root = np.stack([tg["root_x"], tg["root_y"], np.zeros(T)], -1)
    R_up = _rot_y(tg["twist"]) @ _rot_z(tg["lean"])
    def up(v):  # upper-body offsets rotate with twist and lean  # noqa: E306
        return root + np.einsum("tij,tj->ti", R_up, np.broadcast_to(v, (T, 3)))
    J: dict[str, np.ndarray] = {}
    J["r_hip"] = root + np.array([-hw, 0, 0])
    J["l_hip"] = root + np.array([hw, 0, 0])
    neck = up(np.array([0, s["torso"], 0]))
    J["neck"] = neck + np.array([0, 0.01, 0])
    J["r_shoulder"] = up(np.array([-sw, s["torso"], 0]))
    J["l_shoulder"] = up(np.array([sw, s["torso"], 0]))
    for side, sg in (("l", 1.0), ("r", -1.0)):
        m = np.array([sg, 1.0, 1.0])
        sh = J[f"{side}_shoulder"]
        target = sh + np.einsum("tij,tj->ti", R_up, tg[f"wrist_{side}"] * m)
        pole = np.einsum("tij,tj->ti", R_up, tg[f"pole_{side}"] * m)
        J[f"{side}_elbow"], J[f"{side}_wrist"] = _ik(sh, target, s["upper_arm"], s["forearm"], pole)
        hip = J[f"{side}_hip"]
        ground = -(s["thigh"] + s["shin"])
        ank = tg[f"ankle_{side}"] * m
        ank_world = np.stack([hip[:, 0] + ank[:, 0],
                              np.maximum(ground * 0.985, ank[:, 1]) + tg["airborne"],
                              ank[:, 2]], -1)
        ank_world[:, 1] = np.minimum(ank_world[:, 1], hip[:, 1] - 0.6 * (s["thigh"] + s["shin"]))
        J[f"{side}_knee"], J[f"{side}_ankle"] = _ik(hip, ank_world, s["thigh"], s["shin"],
                                                    np.tile([0.0, 0.0, 1.0], (T, 1)))
    hd = s["head"]
    R_head = R_up @ _rot_z(tg["head_tilt"])
    def head(v):  # noqa: E306
        return neck + np.einsum("tij,tj->ti", R_head, np.broadcast_to(np.asarray(v, float), (T, 3)))
    J["nose"] = head([0, 0.85 * hd, 0.07])
    J["r_eye"] = head([-0.025, 0.97 * hd, 0.055])
    J["l_eye"] = head([0.025, 0.97 * hd, 0.055])
    J["r_ear"] = head([-0.065, 0.9 * hd, 0.0])
    J["l_ear"] = head([0.065, 0.9 * hd, 0.0])

    # --- camera: yaw (body turned), pitch, orthographic projection, roll, scale and position
    P = np.stack([J[n] for n in OPENPOSE18], 1)  # (T, 18, 3)
    yaw, pitch, roll = (np.deg2rad(s[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
    P = np.einsum("tij,tkj->tki", _rot_y(yaw + tg["yaw"]), P)  # per-frame yaw (turning)
    cy_, sy_ = np.cos(pitch), np.sin(pitch)
    X, Y = P[..., 0], P[..., 1] * cy_ + P[..., 2] * sy_  # orthographic: depth drops out
    cr, sr = np.cos(roll), np.sin(roll)
    X, Y = X * cr - Y * sr, X * sr + Y * cr
    stature = s["stature_px"]
    hip_h = s["thigh"] + s["shin"] + s["ankle_h"]
    u = s["center_x"] * FRAME_W + stature * X
    v = s["feet_y"] - stature * (Y + hip_h)
    if camera_drift:
        u, v = _camera_drift(u, v, s, rng)
    # camera shake and detector jitter
    u = u + rng.normal(0, s["shake"] * stature, (T, 1)) + rng.normal(0, s["jitter"] * stature, u.shape)
    v = v + rng.normal(0, s["shake"] * stature, (T, 1)) + rng.normal(0, s["jitter"] * stature, v.shape)

    # --- missing joints
    present = np.ones((T, 18), bool)
    idx = {n: i for i, n in enumerate(OPENPOSE18)}
    ay = abs((s["yaw_deg"] + 180.0) % 360.0 - 180.0)  # 0 = facing the camera, 180 = seen from behind
    far = "l" if s["yaw_deg"] > 0 else "r"
    if 12 < ay < 125:  # the far ear turns away from the camera
        present[:, idx[f"{far}_ear"]] &= rng.random(T) < np.clip(1.5 - ay / 20, 0, 1)
    if 55 < ay < 125:  # profile: the far eye is hidden, the far arm often behind the body
        present[:, idx[f"{far}_eye"]] &= rng.random(T) < 0.1
        for part in ("shoulder", "elbow", "wrist"):
            present[:, idx[f"{far}_{part}"]] &= rng.random(T) >= 0.25
    if ay >= 125:  # from behind: no face
        for name in ("nose", "l_eye", "r_eye"):
            present[:, idx[name]] &= rng.random(T) < 0.1
    present &= rng.random((T, 18)) >= s["p_drop"]
    if artefacts:
        u, v, present = _detector_artefacts(u, v, present, s, rng, fps)
    if rng.random() < s["p_occlude"]:
        limb = [["r_elbow", "r_wrist"], ["l_elbow", "l_wrist"], ["r_knee", "r_ankle"],
                ["l_knee", "l_ankle"], ["r_wrist"], ["l_wrist"]][rng.integers(6)]
        length = int(rng.integers(2, 9))
        start = int(rng.integers(0, max(1, T - length)))
        for name in limb:
            present[start:start + length, idx[name]] = False
    present &= (u >= 0) & (u < FRAME_W) & (v >= 0) & (v < FRAME_H)
    out = np.stack([u, v], -1).astype(np.float32)
    out[~present] = 0.0
    return out


# --- negatives: no action (still poses, frozen action frames, slow non-action movement)

# everyday still poses; "_2" poses use both arms together, the others are chosen per arm
STILL_POSES = ("arms_down", "hands_clasped_2", "hand_in_pocket", "arms_crossed_2", "hand_on_hip",
               "holding_at_chest_2", "phone_at_face", "phone_in_front", "hand_behind_back", "hand_at_chin",
               "hand_on_belly", "arm_raised_still")
SLOW_MOVES = ("weight_shift", "turn", "step_in_place")
NEGATIVE_KINDS = ("idle", "frozen_action", "still_pose", "slow_move")
NEGATIVE_MIX = (0.1, 0.45, 0.3, 0.15)  # share of each kind in generate_negatives
MAX_FROZEN_TIME_SCALE = 0.06  # "nearly frozen" actions move at most this fast (0.06 x real tempo)


def _arm_pose(name: str, s: dict, rng: np.random.Generator, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(wrist target relative to the shoulder, x outward; elbow pole) for a still arm pose."""
    arm = s["upper_arm"] + s["forearm"]
    mid = -0.5 * s["shoulder_w"]  # body midline, relative to the shoulder (x outward)
    tor = s["torso"]
    u = rng.uniform
    if name == "arms_down":
        return np.array([u(0.0, 0.12) * arm, -0.95 * arm, u(-0.05, 0.12) * arm]), np.array([0.2, -0.2, -1.0])
    if name == "hands_clasped_2":
        return np.array([mid + u(0.0, 0.04), -u(0.5, 1.0) * tor, u(0.08, 0.3) * arm]), np.array([0.6, -0.5, -0.3])
    if name == "hand_in_pocket":
        return np.array([u(-0.01, 0.04), -u(0.85, 1.02) * tor, u(-0.02, 0.06)]), np.array([1.0, -0.2, -0.6])
    if name == "arms_crossed_2":
        z = u(0.1, 0.2) + (0.03 if side == "l" else 0.0)
        return np.array([mid - u(0.02, 0.09), -u(0.25, 0.5) * tor, z]), np.array([0.4, -1.0, 0.2])
    if name == "hand_on_hip":
        return np.array([u(-0.01, 0.05), -u(0.78, 0.95) * tor, u(-0.03, 0.04)]), np.array([1.0, 0.0, -0.3])
    if name == "holding_at_chest_2":
        return (np.array([mid + u(0.02, 0.13), -u(0.0, 0.6) * tor, u(0.2, 0.6) * arm]),
                np.array([0.7, -0.7, -0.2]))
    if name == "phone_at_face":
        return np.array([mid + u(0.0, 0.1), u(0.0, 0.12), u(0.04, 0.2)]), np.array([0.3, -1.0, 0.0])
    if name == "phone_in_front":
        return np.array([mid + u(0.02, 0.12), -u(0.05, 0.5) * tor, u(0.3, 0.65) * arm]), np.array([0.5, -1.0, 0.0])
    if name == "hand_behind_back":
        return np.array([mid + u(0.03, 0.1), -u(0.7, 0.95) * tor, -u(0.04, 0.12)]), np.array([0.5, -0.3, 1.0])
    if name == "hand_at_chin":
        return np.array([mid + u(0.0, 0.06), u(0.02, 0.1), u(0.08, 0.16)]), np.array([0.2, -1.0, 0.3])
    if name == "hand_on_belly":
        return np.array([mid + u(0.02, 0.08), -u(0.4, 0.75) * tor, u(0.06, 0.14)]), np.array([0.6, -0.6, -0.2])
    if name == "arm_raised_still":  # holding a rail, a raised hand held still
        a = np.deg2rad(u(60, 175))
        r = u(0.55, 0.97) * arm
        return (np.array([np.sin(a) * r, -np.cos(a) * r, u(-0.1, 0.5) * arm]),
                np.array([u(0, 1), -u(0, 1), -u(-0.5, 1)]))
    raise ValueError(f"unknown still pose {name!r}")


def _negative_targets(name: str, out: dict, t: np.ndarray, s: dict, rng: np.random.Generator) -> dict:
    """Targets of a named still pose (``"pose:<left>:<right>"`` or one of STILL_POSES for both arms)
    or of a slow movement (``"<move>:<left>:<right>"``): arms held still with a small slow drift."""
    T = len(t)
    arm = s["upper_arm"] + s["forearm"]
    leg = s["thigh"] + s["shin"]
    parts = name.split(":")
    kind = parts[0]
    left, right = (parts[1], parts[2]) if len(parts) == 3 else (kind, kind)
    if kind in SLOW_MOVES and len(parts) != 3:
        left = right = "arms_down"
    for side, pose in (("l", left), ("r", right)):
        w, pole = _arm_pose(pose, s, rng, side)
        amp = rng.uniform(0.0, 0.03) * arm
        drift = np.stack([amp * np.sin(2 * np.pi * t * rng.uniform(0.1, 0.5) + rng.uniform(0, 6)),
                          amp * np.sin(2 * np.pi * t * rng.uniform(0.1, 0.5) + rng.uniform(0, 6)),
                          0.5 * amp * np.sin(2 * np.pi * t * rng.uniform(0.1, 0.5) + rng.uniform(0, 6))], -1)
        out[f"wrist_{side}"] = w[None] + drift
        out[f"pole_{side}"] = np.tile(pole, (T, 1))
    if kind == "weight_shift":  # hips sway sideways, the upper body leans against it
        f = rng.uniform(0.12, 0.45)
        ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
        a = rng.uniform(0.01, 0.04)
        out["root_x"] = a * np.sin(ph)
        out["lean"] = out["lean"] - rng.uniform(0.3, 1.0) * a * np.sin(ph)
        for side, sg in (("l", 1.0), ("r", -1.0)):  # feet stay put: the ankle moves against the hips
            out[f"ankle_{side}"] = out[f"ankle_{side}"] - np.stack([sg * out["root_x"], 0 * t, 0 * t], -1)
    elif kind == "turn":  # slowly turning toward / away from the camera
        amp = np.deg2rad(rng.uniform(8, 40))
        f = rng.uniform(0.08, 0.3)
        out["yaw"] = amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        out["twist"] = 0.3 * out["yaw"] * rng.uniform(0, 1)
    elif kind == "step_in_place":  # slow steps, one foot at a time, arms swinging a little
        f = rng.uniform(0.3, 0.7)
        ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
        lift = rng.uniform(0.02, 0.07)
        for side, off in (("l", 0.0), ("r", np.pi)):
            up = lift * np.maximum(np.sin(ph + off), 0) ** 2
            a = out[f"ankle_{side}"].copy()
            a[:, 1] = -0.985 * leg + up
            a[:, 2] = a[:, 2] + 0.5 * up
            out[f"ankle_{side}"] = a
            out[f"wrist_{side}"] = out[f"wrist_{side}"] + np.stack(
                [0 * t, 0 * t, rng.uniform(0.0, 0.08) * arm * np.sin(ph + off + np.pi)], -1)
        out["root_y"] = -0.3 * lift * np.abs(np.sin(ph)) ** 2
    return out


def _camera_drift(u: np.ndarray, v: np.ndarray, s: dict, rng: np.random.Generator):
    """Slow camera pan and zoom over the sequence (pixels, (T, J) each), like a panned still photo or
    a hand-held phone: a linear shift of up to ~0.5 torso lengths and a zoom of up to +-8 % about a
    point of the frame, with an easing so the speed is not constant."""
    T = u.shape[0]
    torso_px = s["torso"] * s["stature_px"]
    a = np.linspace(0.0, 1.0, T)[:, None]
    e = rng.uniform(0.0, 1.0)
    a = (1 - e) * a + e * (3 * a ** 2 - 2 * a ** 3)
    ang = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0.0, 0.5) * torso_px
    zoom = 1.0 + rng.uniform(-0.08, 0.08) * a
    cx, cy = rng.uniform(0, FRAME_W), rng.uniform(0, FRAME_H)
    u = cx + (u - cx) * zoom + shift * np.cos(ang) * a
    v = cy + (v - cy) * zoom + shift * np.sin(ang) * a
    return u, v


_UPPER = [i for i, n in enumerate(OPENPOSE18) if not n.endswith(("hip", "knee", "ankle"))]
_GROUPS = {"head": ("nose", "r_eye", "l_eye", "r_ear", "l_ear"), "r_arm": ("r_elbow", "r_wrist"),
           "l_arm": ("l_elbow", "l_wrist"), "r_side": ("r_shoulder", "r_elbow", "r_wrist", "r_ear", "r_eye"),
           "l_side": ("l_shoulder", "l_elbow", "l_wrist", "l_ear", "l_eye"), "arms": ("r_wrist", "l_wrist",
           "r_elbow", "l_elbow")}
_SWAPS = {"arms": ("elbow", "wrist"), "upper": ("shoulder", "elbow", "wrist"), "legs": ("knee", "ankle"),
          "head": ("eye", "ear")}


def _detector_artefacts(u, v, present, s: dict, rng: np.random.Generator, fps: float):
    """What a real pose detector does to a hard, still person (seen from the side, cut by the frame edge,
    small or blurred): a slow non-rigid wobble of the upper body (up to 0.1 of the stature, < 0.5 Hz) and
    of single joints (up to 0.02, < 0.4 Hz: far slower than any action), left/right labels swapped for a
    few frames, a group of joints flickering."""
    T, J = u.shape
    t = np.arange(T) / fps
    st = s["stature_px"]
    idx = {n: i for i, n in enumerate(OPENPOSE18)}

    def slow(amp, f_max=0.5):
        return amp * np.sin(2 * np.pi * t * rng.uniform(0.05, f_max) + rng.uniform(0, 2 * np.pi))

    up = np.zeros((T, J), bool)
    up[:, _UPPER] = True
    a = rng.uniform(0.0, 0.1) * st
    u = u + np.where(up, slow(0.4 * a)[:, None], 0.0)
    v = v + np.where(up, slow(a)[:, None], 0.0)
    aj = rng.uniform(0.0, 0.02) * st
    u = u + np.stack([slow(aj, 0.4) for _ in range(J)], -1)
    v = v + np.stack([slow(aj, 0.4) for _ in range(J)], -1)
    if rng.random() < 0.5:  # left/right labels swapped for a stretch of frames
        parts = _SWAPS[list(_SWAPS)[int(rng.integers(len(_SWAPS)))]]
        n = int(rng.integers(3, max(4, T // 2)))
        a0 = int(rng.integers(0, max(1, T - n)))
        for part in parts:
            li, ri = idx[f"l_{part}"], idx[f"r_{part}"]
            for arr in (u, v, present):
                arr[a0:a0 + n, [li, ri]] = arr[a0:a0 + n, [ri, li]]
    if rng.random() < 0.6:  # a group of joints flickers (low detector confidence)
        g = _GROUPS[list(_GROUPS)[int(rng.integers(len(_GROUPS)))]]
        cols = [idx[n] for n in g]
        present[:, cols] &= rng.random((T, len(cols))) >= rng.uniform(0.3, 0.9)
    return u, v, present


def _negative_segment(kind: str, rng: np.random.Generator, n: int) -> tuple[list, float]:
    """Segments and time scale of one negative window of ``kind`` (see NEGATIVE_KINDS)."""
    if kind == "idle":
        return [(IDLE, n)], 1.0
    if kind == "frozen_action":  # a random phase of an action held still (or moving at < 6 % of its tempo)
        ts = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, MAX_FROZEN_TIME_SCALE))
        return [(int(rng.integers(len(CLASSES))), n)], ts
    one_arm = [p for p in STILL_POSES if not p.endswith("_2")]
    if rng.random() < 0.45:
        left = right = STILL_POSES[int(rng.integers(len(STILL_POSES)))]
    else:
        left, right = (one_arm[int(rng.integers(len(one_arm)))] for _ in range(2))
    if kind == "still_pose":
        return [(f"pose:{left}:{right}", n)], 1.0
    if kind == "slow_move":
        return [(f"{SLOW_MOVES[int(rng.integers(len(SLOW_MOVES)))]}:{left}:{right}", n)], 1.0
    raise ValueError(f"kind must be one of {NEGATIVE_KINDS}")


def short_clip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window (T, J, 2) cut to a random run of SHORT_CLIP_FRAMES frames, played back and forth to fill it."""
    T = len(x)
    n = int(rng.integers(SHORT_CLIP_FRAMES[0], min(SHORT_CLIP_FRAMES[1], T - 1) + 1))
    a0 = int(rng.integers(0, T - n + 1))
    return x[a0:a0 + n][pad_indices(n, T)]


def low_rate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window (T, J, 2) as the service sees one when it samples poses below the model's rate and interpolates
    them back to it (models.action.timeline.resample_track): every d-th frame kept (d from LOW_RATE_STEPS, random
    phase), the frames between linearly interpolated where the joint is present at both ends (missing otherwise),
    the first and last kept frames held to the window's ends."""
    T = len(x)
    d = int(rng.choice(LOW_RATE_STEPS))
    idx = np.arange(int(rng.integers(d)), T, d)
    t = np.arange(T)
    pos = np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 1)
    i0 = idx[pos]
    i1 = idx[np.minimum(pos + 1, len(idx) - 1)]
    i1 = np.where(t <= i0, i0, i1)  # before the first kept frame or on a kept frame: that frame
    w = np.where(i1 > i0, (t - i0) / np.maximum(i1 - i0, 1), 0.0).astype(np.float32)[:, None, None]
    present = np.abs(x).sum(-1) > 0
    both = present[i0] & (present[i1] | (w[..., 0] == 0))
    out = x[i0] + (x[i1] - x[i0]) * w
    return np.where(both[..., None], out, 0.0).astype(x.dtype)


def generate_negatives(n: int, split: str = "train", seed: int = 0, window: int = WINDOW,
                       p_drift: float = 0.8, p_hard: float = 0.4, mix=NEGATIVE_MIX,
                       p_short: float = 0.0, p_low_rate: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """``n`` windows with no action (N, window, 18, 2) pixels and their kinds (NEGATIVE_KINDS): idle
    stance, frozen/near-frozen action frames, everyday still poses, slow non-action movement; most
    with a slow camera pan/zoom (``p_drift``); a share ``p_hard`` with a real detector's errors on a hard
    person (seen from the side, cut by the frame edge, wobbling/flickering/swapped joints); a share ``p_short``
    are short clips (:func:`short_clip`), a share ``p_low_rate`` sampled at a lower rate (:func:`low_rate`)."""
    rng = np.random.default_rng(seed)
    mix = np.asarray(mix, np.float64) / np.sum(mix)
    xs, kinds = [], []
    for _ in range(int(n)):
        kind = NEGATIVE_KINDS[int(rng.choice(len(NEGATIVE_KINDS), p=mix))]
        segs, ts = _negative_segment(kind, rng, window)
        subj = sample_subject(rng, split)
        hard = bool(rng.random() < p_hard)
        if hard and rng.random() < 0.4:  # seen from the side
            subj["yaw_deg"] = float(rng.choice([-1.0, 1.0]) * rng.uniform(35.0, 85.0))
        if hard and rng.random() < 0.4:  # cut by the left or right edge of the frame
            subj["center_x"] = float(rng.uniform(-0.03, 0.08) if rng.random() < 0.5 else rng.uniform(0.92, 1.03))
        x = render(segs, rng, subject=subj, time_scale=ts, camera_drift=bool(rng.random() < p_drift),
                   artefacts=hard)
        if p_low_rate > 0 and rng.random() < p_low_rate:
            x = low_rate(x, rng)
        xs.append(short_clip(x, rng) if p_short > 0 and rng.random() < p_short else x)
        kinds.append(kind)
    x = np.stack(xs) if xs else np.zeros((0, window, len(OPENPOSE18), 2), np.float32)
    return x, kinds


def generate_windows(n_per_class: int, split: str = "train", seed: int = 0, window: int = WINDOW,
                     p_transition: float = 0.3, classes=range(len(CLASSES)), p_drift: float = 0.3,
                     p_artefacts: float = 0.0, p_short: float = 0.0, p_low_rate: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Independent labelled windows: x (N, window, 18, 2) pixels, y (N,) 0-based labels.

    With probability ``p_transition`` a window starts or ends with 2..8 idle/transition frames; with
    probability ``p_drift`` the camera pans/zooms slowly (so camera motion alone never means "idle"); with
    probability ``p_artefacts`` the detector errors of the hard negatives are added too (training only, so
    those errors alone never mean "no action"); with probability ``p_short`` the window is a short clip
    (:func:`short_clip`); with probability ``p_low_rate`` its poses are sampled at a lower rate and
    interpolated (:func:`low_rate`).
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in classes:
        for _ in range(n_per_class):
            if rng.random() < p_transition:
                k = int(rng.integers(2, 9))
                segs = [(IDLE, k), (c, window - k)] if rng.random() < 0.5 else [(c, window - k), (IDLE, k)]
            else:
                segs = [(c, window)]
            drift = bool(rng.random() < p_drift)
            art = bool(p_artefacts > 0 and rng.random() < p_artefacts)
            x = render(segs, rng, split=split, camera_drift=drift, artefacts=art)
            if p_low_rate > 0 and rng.random() < p_low_rate:
                x = low_rate(x, rng)
            xs.append(short_clip(x, rng) if p_short > 0 and rng.random() < p_short else x)
            ys.append(c)
    x = np.stack(xs)
    y = np.asarray(ys, np.int64)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def generate_sequence(segments: list[tuple[int, float]], split: str = "test", seed: int = 0,
                      fps: float = FPS, subject: dict | None = None) -> np.ndarray:
    """A longer clip of ``(action, seconds)`` segments, e.g. for timeline tests: (T, 18, 2) pixels."""
    rng = np.random.default_rng(seed)
    frames = [(a, max(1, int(round(sec * fps)))) for a, sec in segments]
    return render(frames, rng, subject=subject, split=split, fps=fps, ramp=max(2, int(0.2 * fps)))


def write_dataset(out_dir, n_train_per_class: int = 1200, n_test_per_class: int = 300, seed: int = 0) -> dict:
    """Write a synthetic dataset in the RNN-HAR-2D-Pose format (train from training ranges,
    test from the held-out ranges)."""
    from .dataset import write_split
    xtr, ytr = generate_windows(n_train_per_class, "train", seed)
    xte, yte = generate_windows(n_test_per_class, "test", seed + 1)
    write_split(out_dir, "train", xtr, ytr)
    write_split(out_dir, "test", xte, yte)
    return {"train": len(ytr), "test": len(yte)}
