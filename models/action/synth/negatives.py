"""No-action content: everyday still arm poses, slow non-action movements, the negative kinds and their mix,
and the targets and segments of one negative window (see generate.generate_negatives)."""
from __future__ import annotations

import numpy as np

from ..dataset import CLASSES
from .params import IDLE

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
