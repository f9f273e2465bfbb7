"""From joint targets to 2D keypoints: two-link IK, rotations and segment blending build the 3D stick
figure, which is turned to the view, projected into the frame, optionally panned/zoomed by the camera, and
degraded like a pose detector's output (jitter, shake, hidden and dropped joints, occlusions)."""
from __future__ import annotations

import numpy as np

from ...layouts import OPENPOSE18
from ..dataset import FPS, FRAME_H, FRAME_W
from .degrade import _detector_artefacts
from .motions import _targets
from .params import sample_subject


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
