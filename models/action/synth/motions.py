"""Per-frame joint targets of the six actions (and of idle), in the body frame, with tempo drift and, for
clapping, the body grooving to the beat. Still poses and slow movements are delegated to negatives."""
from __future__ import annotations

import numpy as np

from ..dataset import FPS
from .negatives import _negative_targets
from .params import BASE_TEMPO_HZ, IDLE

P_GROOVE = 0.4  # share of clapping sequences where the body moves to the beat (dancing, singing along)


def _phase(rng, t: np.ndarray, hz: float) -> np.ndarray:
    """Phase with tempo drift (a slow sinusoidal modulation of the frequency)."""
    dt = np.diff(t, prepend=t[0] - 1.0 / FPS)
    drift = rng.uniform(0.0, 0.12)
    mod = 1.0 + drift * np.sin(2 * np.pi * t / rng.uniform(1.5, 4.0) + rng.uniform(0, 2 * np.pi))
    return rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(hz * mod * dt)


# share of waving sequences done with the whole arm swinging overhead (the rest sway the forearm)
P_WHOLE_ARM_WAVE = 0.35
# share of boxing sequences with guard pauses between punches
P_BOX_PAUSES = 0.5


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
    elif action == 2:  # BOXING: guard at the chin, punches (straight, hook or uppercut) between guard pauses
        kind = rng.choice(3, p=[0.5, 0.3, 0.2])  # straight punches, hooks, uppercuts
        # real boxers do not punch on a metronome: some cycles are spent in the guard, bouncing
        rest = rng.random() < P_BOX_PAUSES
        gate = (np.sin(ph / rng.integers(2, 4) + rng.uniform(0, 2 * np.pi)) > rng.uniform(-0.2, 0.4)) if rest else one > 0
        for side, off in (("l", 0.0), ("r", np.pi)):
            p = np.maximum(np.sin(ph + off), 0) ** rng.uniform(1.5, 3.0) * gate
            guard = np.array([0.02 * arm, rng.uniform(0.02, 0.10), 0.22 * arm])
            reach = rng.uniform(0.80, 0.95) * arm * min(amp, 1.05)
            if kind == 0:
                punch = np.array([-0.45 * s["shoulder_w"], rng.uniform(-0.02, 0.04), reach])
                path = p[:, None] * (punch - guard)[None]
            elif kind == 1:  # hook: the fist swings out and round in a horizontal arc at head height
                a = np.pi * p
                path = np.stack([0.35 * arm * np.sin(a) - 0.3 * s["shoulder_w"] * p, 0.02 * p,
                                 0.45 * arm * p], -1)
            else:  # uppercut: the fist drops, then drives up in front of the chest
                path = np.stack([-0.2 * s["shoulder_w"] * p, 0.18 * arm * np.sin(2 * np.pi * p - np.pi / 2) * p,
                                 0.35 * arm * p], -1)
            out[f"wrist_{side}"] = guard[None] + path
            out[f"pole_{side}"] = np.tile([0.8, -0.6, 0.0], (T, 1))
        pl = np.maximum(np.sin(ph), 0) * gate
        pr = np.maximum(np.sin(ph + np.pi), 0) * gate
        out["twist"] = np.deg2rad(rng.uniform(6, 18)) * (pl - pr)
        out["root_y"] = 0.008 * np.sin(2 * ph)
        st = 0.5 * s["hip_w"]
        out["ankle_l"] = np.stack([st * one, -0.97 * leg * one, (0.12 if s["guard"] == "orthodox" else -0.08) * one], -1)
        out["ankle_r"] = np.stack([st * one, -0.97 * leg * one, (-0.08 if s["guard"] == "orthodox" else 0.12) * one], -1)
    elif action in (3, 4) and rng.random() < P_WHOLE_ARM_WAVE:
        # WAVING with the whole arm: raised high and swung in an arc over the head (a signal to someone far away,
        # the KTH "handwaving"), the elbow nearly straight; two hands mirror each other. The legs stay put.
        sides = ("l", "r") if action == 3 else (("r",) if s["hand"] == "right" else ("l",))
        centre = np.deg2rad(rng.uniform(120, 150))
        sw = np.deg2rad(rng.uniform(20, 45) * amp)
        fwd = rng.uniform(0.0, 0.3)
        for side in sides:
            a = centre + sw * np.sin(ph + (0.0 if side == "l" or s["mirror_2hands"] else np.pi))
            r = rng.uniform(0.85, 0.98) * arm
            out[f"wrist_{side}"] = np.stack([np.sin(a) * r, -np.cos(a) * r, fwd * arm * one], -1)
            out[f"pole_{side}"] = np.tile([0.3, -0.3, -1.0], (T, 1))
        out["head_tilt"] = 0.02 * np.sin(ph)
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
