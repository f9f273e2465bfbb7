"""Multi-person tracking by detection: stable ids for the persons the pose model finds per frame.

Each live track predicts its box with a constant-velocity model; detections are matched to tracks by
minimising a cost that mixes box IoU and an OKS-like keypoint distance (optimal assignment,
Hungarian algorithm), with gates so that implausible pairs are never matched. A track survives up to
``max_age`` frames without a match (short occlusions, missed detections) and gets an id only once it
has been matched ``min_hits`` times, so one-frame false positives do not produce tracks. Ids are
1, 2, 3, ... in order of confirmation.

A person lost for longer, or whose detection jumps out of the gates (a fast move, a jump), comes back as a new
track; :mod:`models.pose.relink` joins such pieces after the fact, seeing both ends. ``max_age`` stays short: a
constant-velocity guess drifts over a long gap, and guided pose runs a crop at every live track's prediction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tracks import PoseTrack
from .onnx_backend import PoseDetections, box_iou

# Per-joint OKS sigmas (COCO-17), used to weight keypoint distances.
COCO17_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular matrix (Hungarian algorithm, O(n^3)).

    Returns ``(rows, cols)`` like ``scipy.optimize.linear_sum_assignment``.
    """
    cost = np.asarray(cost, np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape  # n <= m
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: row (1-based) assigned to column j
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    rows, cols = [], []
    for j in range(1, m + 1):
        if p[j]:
            rows.append(p[j] - 1)
            cols.append(j - 1)
    rows_a, cols_a = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if transposed:
        rows_a, cols_a = cols_a, rows_a
    order = np.argsort(rows_a)
    return rows_a[order], cols_a[order]


def keypoint_similarity(kp_a: np.ndarray, kp_b: np.ndarray, area: float, min_conf: float = 0.3) -> float:
    """OKS-like similarity in [0, 1] of two (17, 3) keypoint sets over joints confident in both."""
    both = (kp_a[:, 2] >= min_conf) & (kp_b[:, 2] >= min_conf)
    if both.sum() < 3:
        return float("nan")
    d2 = ((kp_a[both, :2] - kp_b[both, :2]) ** 2).sum(-1)
    k2 = (2 * COCO17_SIGMAS[both]) ** 2
    return float(np.mean(np.exp(-d2 / (2 * max(area, 1.0) * k2))))


@dataclass
class _Track:
    box: np.ndarray  # last observed xyxy
    keypoints: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    misses: int = 0  # frames since last match
    track_id: int = 0  # 0 until confirmed
    frames: list = field(default_factory=list)  # (frame_index, time, keypoints, box, score)
    key: int = 0  # 1, 2, 3, ... in order of creation, tentative tracks included (PoseTracker.predictions)

    def predicted_box(self) -> np.ndarray:
        return self.box + self.velocity * (self.misses + 1)

    def predicted_keypoints(self) -> np.ndarray:
        kp = self.keypoints.copy()
        shift = self.velocity * (self.misses + 1)
        kp[:, 0] += (shift[0] + shift[2]) / 2
        kp[:, 1] += (shift[1] + shift[3]) / 2
        return kp


class PoseTracker:
    """Feed detections frame by frame with :meth:`update`; collect tracks with :meth:`finish`."""

    def __init__(self, max_age: int = 15, min_hits: int = 3, iou_weight: float = 0.5, min_iou: float = 0.1,
                 max_center_dist: float = 0.75, min_score: float = 0.25):
        self.max_age, self.min_hits = int(max_age), int(min_hits)
        self.iou_weight, self.min_iou, self.max_center_dist = iou_weight, min_iou, max_center_dist
        self.min_score = min_score
        self._live: list[_Track] = []
        self._done: list[_Track] = []
        self._next_id = 1
        self._created = 0

    @classmethod
    def for_rate(cls, fps: float, max_gap_s: float = 0.7, confirm_s: float = 0.12, **kw) -> "PoseTracker":
        """A tracker whose occlusion tolerance and confirmation delay are the same in seconds at any
        sampling rate (at 22 Hz: ``max_age`` 15 frames, ``min_hits`` 3)."""
        fps = float(fps) if fps and fps > 0 else 22.0
        return cls(max_age=max(1, round(max_gap_s * fps)), min_hits=max(2, round(confirm_s * fps)), **kw)

    def _cost(self, dets: PoseDetections) -> np.ndarray:
        preds = np.stack([t.predicted_box() for t in self._live]).reshape(-1, 4)
        iou = box_iou(preds, dets.boxes)
        cost = np.full(iou.shape, 1e6)
        for i, t in enumerate(self._live):
            pk = t.predicted_keypoints()
            area = float(np.prod(np.clip(t.box[2:] - t.box[:2], 1, None)))
            # centre distance relative to the track's size: allows a fast mover whose boxes stop overlapping; from
            # the predicted centre, or from the last seen one for a mover who stops or turns back at once
            size = np.sqrt(area)
            c_pred = (preds[i, :2] + preds[i, 2:]) / 2
            c_last = (t.box[:2] + t.box[2:]) / 2
            for j in range(len(dets)):
                ks = keypoint_similarity(pk, dets.keypoints[j], area)
                c_det = (dets.boxes[j, :2] + dets.boxes[j, 2:]) / 2
                near = min(np.linalg.norm(c_det - c_pred), np.linalg.norm(c_det - c_last)) / max(size, 1.0)
                sim = iou[i, j] if np.isnan(ks) else self.iou_weight * iou[i, j] + (1 - self.iou_weight) * ks
                # gate: boxes overlap enough, or the centre is close relative to the person's size
                if iou[i, j] >= self.min_iou or near < self.max_center_dist:
                    cost[i, j] = 1.0 - sim + 0.2 * min(near, 2.0)
        return cost

    def update(self, frame_index: int, t: float, dets: PoseDetections) -> list[tuple[int, int]]:
        """Add one sampled frame's detections. Returns ``(track_id, detection_index)`` of confirmed tracks."""
        keep = np.nonzero(dets.scores >= self.min_score)[0]
        dets = PoseDetections(dets.boxes[keep], dets.scores[keep], dets.keypoints[keep])
        matched_tracks: set[int] = set()
        matched_dets: dict[int, int] = {}
        if self._live and len(dets):
            cost = self._cost(dets)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < 1e5:
                    matched_tracks.add(int(r))
                    matched_dets[int(c)] = int(r)
        det_track: list[_Track] = []
        for j in range(len(dets)):
            box, kp, score = dets.boxes[j].astype(np.float64), dets.keypoints[j], float(dets.scores[j])
            if j in matched_dets:
                tr = self._live[matched_dets[j]]
                gap = tr.misses + 1
                new_v = (box - tr.box) / gap
                tr.velocity = 0.5 * tr.velocity + 0.5 * new_v if tr.hits > 1 else new_v
                tr.box, tr.keypoints = box, kp
                tr.hits += 1
                tr.misses = 0
            else:
                self._created += 1
                tr = _Track(box=box, keypoints=kp, key=self._created)
                self._live.append(tr)
                matched_tracks.add(len(self._live) - 1)
            det_track.append(tr)
            tr.frames.append((frame_index, t, kp.astype(np.float32), box.astype(np.float32), score))
            if not tr.track_id and tr.hits >= self.min_hits:
                tr.track_id = self._next_id
                self._next_id += 1
        out = [(tr.track_id, j) for j, tr in enumerate(det_track) if tr.track_id]
        still = []
        for i, tr in enumerate(self._live):
            if i not in matched_tracks:
                tr.misses += 1
                if not tr.track_id and tr.misses > 0 and tr.hits < self.min_hits:
                    # a tentative track must be matched on consecutive frames
                    continue
                if tr.misses > self.max_age:
                    self._done.append(tr)
                    continue
            still.append(tr)
        self._live = still
        return out

    def predictions(self) -> list[tuple[int, np.ndarray]]:
        """Where every live track (tentative ones too) is expected in the next frame: (key, xyxy box); the key
        stays the same for a track's whole life and is never reused."""
        return [(t.key, t.predicted_box()) for t in self._live]

    def cut(self) -> None:
        """A shot boundary: the next frame shows another scene, so no live track continues into it (a person seen
        again after the cut gets a new track)."""
        self._done += [t for t in self._live if t.track_id]
        self._live = []

    def finish(self) -> list[PoseTrack]:
        """All confirmed tracks (ended and live), sorted by id."""
        tracks = [t for t in self._done + self._live if t.track_id]
        self._done, self._live = [], []
        out = []
        for t in sorted(tracks, key=lambda t: t.track_id):
            fi, ts, kps, boxes, scores = zip(*t.frames)
            out.append(PoseTrack(
                track_id=t.track_id,
                frame_indices=np.asarray(fi, np.int64),
                times=np.asarray(ts, np.float64),
                keypoints=np.stack(kps).astype(np.float32),
                boxes=np.stack(boxes).astype(np.float32),
                scores=np.asarray(scores, np.float32),
            ))
        return out
