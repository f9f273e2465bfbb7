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

from ...layouts import OPENPOSE18
from ..dataset import CLASSES, FPS, FRAME_H, FRAME_W, WINDOW
from .degrade import LOW_RATE_STEPS, SHORT_CLIP_FRAMES, low_rate, short_clip
from .generate import generate_negatives, generate_sequence, generate_windows, write_dataset
from .motions import P_GROOVE
from .negatives import MAX_FROZEN_TIME_SCALE, NEGATIVE_KINDS, NEGATIVE_MIX, SLOW_MOVES, STILL_POSES
from .params import (
    BACK_VIEW_YAW,
    BASE_TEMPO_HZ,
    GENERATOR_VERSION,
    IDLE,
    P_BACK_VIEW,
    P_SIDE_VIEW,
    P_UPPER_BODY,
    SIDE_VIEW_YAW,
    SPLIT_PARAMS,
    UPPER_BODY_CUT,
    UPPER_BODY_FILL,
    sample_subject,
)
from .render import render

__all__ = [
    # generator parameters (params)
    "GENERATOR_VERSION", "IDLE", "SPLIT_PARAMS", "BASE_TEMPO_HZ", "P_UPPER_BODY", "UPPER_BODY_CUT", "UPPER_BODY_FILL",
    "P_SIDE_VIEW", "SIDE_VIEW_YAW", "P_BACK_VIEW", "BACK_VIEW_YAW", "sample_subject",
    # actions (motions), rendering (render)
    "P_GROOVE", "render",
    # no-action content (negatives)
    "STILL_POSES", "SLOW_MOVES", "NEGATIVE_KINDS", "NEGATIVE_MIX", "MAX_FROZEN_TIME_SCALE",
    # detector and sampling degradations (degrade)
    "SHORT_CLIP_FRAMES", "LOW_RATE_STEPS", "short_clip", "low_rate",
    # windows, clips and datasets (generate)
    "generate_windows", "generate_negatives", "generate_sequence", "write_dataset",
    # the dataset format, for callers that reach it through the generator
    "CLASSES", "FPS", "FRAME_H", "FRAME_W", "WINDOW", "OPENPOSE18",
]
