"""Procedural 2D pose sequences for the six actions of the RNN-HAR-2D-Pose-database.

A 3D stick figure with sampled body proportions performs an action (wrist and ankle targets
solved with two-link inverse kinematics), is turned to a sampled view angle (yaw, pitch,
roll), projected orthographically into a 640x480 frame at a sampled distance and position,
and degraded like a 2D pose detector: per-joint jitter, camera shake, dropped joints, short
limb occlusions, the far ear hidden when the head turns, and joints outside the frame missing.
Tempo (with drift), amplitude and phase vary per sequence; one-hand waving uses either hand;
some windows start or end with idle/transition frames.

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

GENERATOR_VERSION = "1.0"
IDLE = -1  # pseudo-label for idle / transition frames

# (low, high) ranges; the test split samples from ``test`` ranges, given as lists of intervals.
SPLIT_PARAMS: dict[str, dict[str, list[tuple[float, float]]]] = {
    "train": {
        "stature_px": [(190.0, 430.0)],       # standing height in pixels (camera distance)
        "shoulder_w": [(0.20, 0.25)],         # shoulder joint separation / stature
        "hip_w": [(0.11, 0.15)],
        "arm_len": [(0.30, 0.35)],            # upper arm + forearm / stature
        "leg_len": [(0.47, 0.52)],            # hip joint to ankle / stature
        "yaw_deg": [(-25.0, 25.0)],           # body turned away from the camera
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
        "yaw_deg": [(-35.0, -25.0), (25.0, 35.0)],
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
    5: (1.5, 3.0),   # CLAPPING_HANDS
}


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
    s["jitter"] = float(rng.uniform(0.002, 0.010))       # per-joint noise / stature
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
        "head_tilt": z.copy(),
    }
    sway = 0.004 * np.sin(2 * np.pi * t * rng.uniform(0.2, 0.5) + rng.uniform(0, 6))
    out["lean"] = sway
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
        swing = rng.uniform(0.15, 0.45) * amp
        a = 0.12 + swing * np.maximum(sp, 0) + 0.08 * np.maximum(-sp, 0)  # abduction-ish
        fwd = rng.uniform(0.05, 0.25) + 0.3 * swing * sp
        for side in ("l", "r"):
            out[f"wrist_{side}"] = np.stack([np.sin(a) * 0.95 * arm, -np.cos(a) * 0.95 * arm,
                                             fwd * arm], -1)
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
    elif action == 5:  # CLAPPING: hands meet in front of the chest
        gap = rng.uniform(0.25, 0.45) * arm * amp
        c = np.cos(ph)
        half = gap * (1 + c) / 2 + 0.01
        hy = rng.uniform(-0.22, -0.02)
        for side in ("l", "r"):
            x = -0.5 * s["shoulder_w"] + half / 2
            out[f"wrist_{side}"] = np.stack([x, hy * one, 0.45 * arm * one], -1)
            out[f"pole_{side}"] = np.tile([0.7, -0.7, -0.2], (T, 1))
    return out


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
           split: str = "train", fps: float = FPS, ramp: int = 4) -> np.ndarray:
    """Render a sequence of ``(action, n_frames)`` segments (action ``IDLE`` = -1 for idle).

    Returns float32 (T, 18, 2): OpenPose-18 (x, y) pixels in a 640x480 frame, missing = (0, 0).
    """
    s = subject if subject is not None else sample_subject(rng, split)
    T = int(sum(n for _, n in segments))
    t = np.arange(T) / fps
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
    root = np.stack([np.zeros(T), tg["root_y"], np.zeros(T)], -1)
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
    P = P @ _rot_y(yaw).T
    cy_, sy_ = np.cos(pitch), np.sin(pitch)
    X, Y = P[..., 0], P[..., 1] * cy_ + P[..., 2] * sy_  # orthographic: depth drops out
    cr, sr = np.cos(roll), np.sin(roll)
    X, Y = X * cr - Y * sr, X * sr + Y * cr
    stature = s["stature_px"]
    hip_h = s["thigh"] + s["shin"] + s["ankle_h"]
    u = s["center_x"] * FRAME_W + stature * X
    v = s["feet_y"] - stature * (Y + hip_h)
    # camera shake and detector jitter
    u = u + rng.normal(0, s["shake"] * stature, (T, 1)) + rng.normal(0, s["jitter"] * stature, u.shape)
    v = v + rng.normal(0, s["shake"] * stature, (T, 1)) + rng.normal(0, s["jitter"] * stature, v.shape)

    # --- missing joints
    present = np.ones((T, 18), bool)
    idx = {n: i for i, n in enumerate(OPENPOSE18)}
    if abs(s["yaw_deg"]) > 12:  # the far ear turns away from the camera
        far = "l_ear" if s["yaw_deg"] > 0 else "r_ear"
        present[:, idx[far]] &= rng.random(T) < np.clip(1.5 - abs(s["yaw_deg"]) / 20, 0, 1)
    present &= rng.random((T, 18)) >= s["p_drop"]
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


def generate_windows(n_per_class: int, split: str = "train", seed: int = 0, window: int = WINDOW,
                     p_transition: float = 0.3, classes=range(len(CLASSES))) -> tuple[np.ndarray, np.ndarray]:
    """Independent labelled windows: x (N, window, 18, 2) pixels, y (N,) 0-based labels.

    With probability ``p_transition`` a window starts or ends with 2..8 idle/transition frames.
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
            xs.append(render(segs, rng, split=split))
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
