"""Keypoint layouts by joint name, remapping between them, and mirror flips.

Keypoint arrays have shape ``(..., K, C)`` with ``C`` = 2 (x, y) or 3 (x, y, confidence).
A *missing* joint is one whose confidence is 0 (C = 3) or whose coordinates are both 0 (C = 2,
the RNN-HAR-2D-Pose convention); missing joints are always written back as all zeros.
"""
from __future__ import annotations

import numpy as np

COCO17 = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear",
    "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
OPENPOSE18 = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)
OPENPOSE17 = tuple(j for j in OPENPOSE18 if j != "neck")  # OpenPose-18 with the neck dropped

LAYOUTS: dict[str, tuple[str, ...]] = {
    "coco17": COCO17,
    "openpose18": OPENPOSE18,
    "openpose17": OPENPOSE17,
}


def get_layout(layout) -> tuple[str, ...]:
    """A layout given by name (``"coco17"``, ``"openpose18"``, ``"openpose17"``) or as a joint-name list."""
    if isinstance(layout, str):
        try:
            return LAYOUTS[layout]
        except KeyError:
            raise ValueError(f"unknown keypoint layout {layout!r}; known: {sorted(LAYOUTS)}") from None
    names = tuple(layout)
    if len(set(names)) != len(names):
        raise ValueError("duplicate joint names in layout")
    return names


def joint_index(layout, name: str) -> int:
    return get_layout(layout).index(name)


def mirror_name(name: str) -> str:
    """``l_wrist`` <-> ``r_wrist``; centre joints (nose, neck) map to themselves."""
    if name.startswith("l_"):
        return "r_" + name[2:]
    if name.startswith("r_"):
        return "l_" + name[2:]
    return name


def present_mask(kpts: np.ndarray) -> np.ndarray:
    """Boolean ``(..., K)``: True where the joint is present (non-finite coordinates count as missing)."""
    kpts = np.asarray(kpts)
    finite = np.isfinite(kpts[..., :2]).all(axis=-1)
    if kpts.shape[-1] >= 3:
        return (kpts[..., 2] > 0) & finite
    return np.any(kpts[..., :2] != 0, axis=-1) & finite


def remap(kpts: np.ndarray, src, dst) -> np.ndarray:
    """Reorder ``kpts`` from layout ``src`` to layout ``dst`` by joint name.

    Joints of ``dst`` absent from ``src`` are missing (zeros), except ``neck``, which is
    synthesized as the shoulder midpoint when both shoulders are present (confidence = the
    lower of the two).
    """
    kpts = np.asarray(kpts)
    src_names, dst_names = get_layout(src), get_layout(dst)
    if kpts.shape[-2] != len(src_names):
        raise ValueError(f"expected {len(src_names)} joints for layout {src!r}, got {kpts.shape[-2]}")
    out = np.zeros(kpts.shape[:-2] + (len(dst_names), kpts.shape[-1]), dtype=kpts.dtype)
    pos = {n: i for i, n in enumerate(src_names)}
    present = present_mask(kpts)
    for j, name in enumerate(dst_names):
        if name in pos:
            i = pos[name]
            out[..., j, :] = np.where(present[..., i, None], kpts[..., i, :], 0)
        elif name == "neck" and "l_shoulder" in pos and "r_shoulder" in pos:
            li, ri = pos["l_shoulder"], pos["r_shoulder"]
            both = present[..., li] & present[..., ri]
            mid = (kpts[..., li, :2].astype(np.float64) + kpts[..., ri, :2]) / 2.0
            out[..., j, :2] = np.where(both[..., None], mid, 0)
            if kpts.shape[-1] >= 3:
                conf = np.minimum(kpts[..., li, 2], kpts[..., ri, 2])
                out[..., j, 2] = np.where(both, conf, 0)
    return out


def flip_permutation(layout) -> np.ndarray:
    """Index array ``p`` such that ``flipped[..., j, :] = kpts[..., p[j], :]`` swaps left and right."""
    names = get_layout(layout)
    pos = {n: i for i, n in enumerate(names)}
    return np.array([pos.get(mirror_name(n), i) for i, n in enumerate(names)], dtype=np.int64)


def flip_horizontal(kpts: np.ndarray, layout, width: float) -> np.ndarray:
    """Mirror the image horizontally: ``x -> width - x`` and swap every left/right joint pair.

    A mirrored right-hand wave becomes a left-hand wave of a (mirrored) body, as a real mirrored
    video would show. Missing joints stay missing (zeros).
    """
    kpts = np.asarray(kpts)
    present = present_mask(kpts)
    out = kpts.copy()
    out[..., 0] = np.where(present, width - kpts[..., 0], 0)
    perm = flip_permutation(layout)
    out = out[..., perm, :]
    return np.where(present[..., perm, None], out, 0).astype(kpts.dtype, copy=False)
