"""Re-linking of tracklets: a person lost for up to about a second stays one track.

The online tracker (:mod:`models.pose.tracker`) ends a track after ``max_age`` frames without a match and starts
a new one for a detection it cannot match, so a fast change of pose, a jump out of the top of the frame, an
occlusion or a few missed detections split one person into pieces ("tracklets"). This pass, run once on the
finished tracks (:func:`models.pose.extract.extract_tracks`, both pose modes), joins tracklet B onto tracklet A
when all of these hold:

- Time: the person was unseen for at most :data:`MAX_GAP_S` (B's first sample at most that plus one sampling
  interval after A's last, with half an interval of slack for uneven timestamps), or B began at most
  :data:`MAX_OVERLAP_S` before A's last sample (the old track was matched once or twice more after the new one
  started); two tracklets that coexist for longer are two people and are never joined. B starts after A starts and
  ends after A ends, and no shot cut lies between them.
- Place: B's first box centre is near where A was going from its last sample before B: kept still (a jump turns
  back, a person stops behind something), moved on at A's recent velocity, or at the mean of A's and B's
  velocities (exact under constant acceleration: a jump, a fall); within :data:`MAX_DIST` + :data:`DIST_PER_S` x
  the time between them, in person sizes (the square root of the box area, the larger of the two).
- Size: their person sizes are within :data:`MAX_SIZE_RATIO` of each other.
- Pose: the joints confident in both, each pose centred on its hips and scaled by its torso, lie on average within
  :data:`MAX_POSE_DIST` torso lengths (the closest pair of A's last and B's first :data:`EDGE_SAMPLES` samples); a
  pair with fewer such joints than :data:`MIN_POSE_JOINTS` is not joined: nothing shows it is the same body.

The cost of a join adds the distance and the pose distance, each as a share of its limit, and a little for the
time between and for a change of velocity (:data:`GAP_COST`, :data:`TURN_COST`). Competing candidates (two people
lost at once, e.g. while crossing) are resolved together: a minimum-cost assignment of tracklet ends to tracklet
starts, in which leaving an end and a start unjoined costs :data:`UNLINKED_COST` (so a join dearer than that is not
made, and two poor joins never displace one good one), not first come first served.
Measured on the service's tracks (11 Hz and 22 Hz) of the real clips of bench/real_footage.py that the tracker had
not split, each long track cut once at random (unseen for up to a second, or overlapping by a sample or two), three
times over: 95-96 % of the cuts are joined again (the rest mostly for want of confident joints), and under 1 % join
a piece of another track.

A joined track keeps its gaps (no frame is invented; the action timeline interpolates gaps up to 0.35 s and leaves
longer ones empty, so windows mostly over a gap are not classified); on the few frames where both pieces have a
sample, the one nearer the straight path from A before the overlap to B after it is kept. Ids are renumbered
1, 2, 3, ... in the order the tracker confirmed the first piece of each person.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..tracks import PoseTrack
from .tracker import linear_sum_assignment

MAX_GAP_S = 1.0          # a person unseen this long (s) is still joined
MAX_OVERLAP_S = 0.3      # B may begin this long before A's last sample (coexisting longer: two people)
MAX_DIST = 0.75          # B's first box centre from where A was going, in person sizes (sqrt of box area) ...
DIST_PER_S = 1.0         # ... plus this much per second between A's sample and B's start
MAX_SIZE_RATIO = 2.0     # person sizes (sqrt of box area) within this factor
MAX_POSE_DIST = 0.6      # mean distance of shared joints, torso-normalized
MIN_POSE_JOINTS = 5      # joints confident in both poses needed to compare them
POSE_CONF = 0.5          # a joint's confidence to count in the pose comparison
VELOCITY_S = 0.5         # velocities: fitted over the samples of A's last / B's first half second
EDGE_SAMPLES = 3         # samples at the end of A / start of B used for sizes and poses
GAP_COST = 0.25          # cost of a join: + this x the gap's share of MAX_GAP_S ...
TURN_COST = 0.25         # ... + this x the velocity change over the gap in person sizes (at most 1)
UNLINKED_COST = 1.25     # an end and a start left unjoined cost this together: joins dearer than that are not made
CUT_TOL_S = 1e-3         # shot cut times are rounded to the millisecond
MAX_BLOCK = 150          # a group of candidate joins with more ends than this (a dense crowd over minutes) is assigned
                         # in blocks of this many ends, in time order, so the assignment's matrix stays small
_INFEASIBLE = 1e6

# COCO-17 joints of the torso
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 6, 11, 12


@dataclass(frozen=True)
class Link:
    """A join of tracklet ``tail`` (its track id) onto the end of tracklet ``head``, with its matching cost."""

    head: int
    tail: int
    cost: float


def _centres(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _sizes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 1.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1.0, None))


def _normalized(kp: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Joints ``use`` of a (17, 3) pose, centred on the hips and divided by the torso length; without the four
    torso joints, centred on their mean and divided by their spread (its RMS distance from the mean over 1.2,
    about a torso length for a whole standing body)."""
    xy = np.asarray(kp, np.float64)[:, :2]
    if use[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]].all():
        hip = (xy[L_HIP] + xy[R_HIP]) / 2
        torso = float(np.linalg.norm((xy[L_SHOULDER] + xy[R_SHOULDER]) / 2 - hip))
        if torso > 1.0:
            return (xy[use] - hip) / torso
    pts = xy[use]
    centre = pts.mean(0)
    spread = float(np.sqrt(((pts - centre) ** 2).sum(1).mean())) / 1.2
    return (pts - centre) / max(spread, 1.0)


def pose_distance(kp_a: np.ndarray, kp_b: np.ndarray, min_conf: float = POSE_CONF,
                  min_joints: int = MIN_POSE_JOINTS) -> float:
    """Mean distance, in torso lengths, between two (17, 3) COCO-17 poses over the joints confident in both, each
    pose normalized on its own (position and size drop out); NaN with fewer than ``min_joints`` such joints."""
    kp_a, kp_b = np.asarray(kp_a), np.asarray(kp_b)
    use = (kp_a[:, 2] >= min_conf) & (kp_b[:, 2] >= min_conf)
    if use.sum() < min_joints:
        return float("nan")
    a, b = _normalized(kp_a, use), _normalized(kp_b, use)
    return float(np.linalg.norm(a - b, axis=1).mean())


def _velocity(times: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Box-centre velocity (px/s): the least-squares slope over the given samples (zero with fewer than two)."""
    t, c = np.asarray(times, np.float64), _centres(boxes)
    if len(t) < 2 or t[-1] - t[0] < 1e-6:
        return np.zeros(2)
    dt = t - t.mean()
    return (dt[:, None] * (c - c.mean(0))).sum(0) / (dt ** 2).sum()


def _shot(t: float, cuts: np.ndarray) -> int:
    return int(np.searchsorted(cuts, t + CUT_TOL_S, side="right"))


def sample_step(tracks: list[PoseTrack]) -> float:
    """The sampling interval of ``tracks`` (s): the median time between consecutive samples; 0 without any."""
    steps = np.concatenate([np.diff(np.asarray(t.times, np.float64)) for t in tracks] + [np.zeros(0)])
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 0.0


def link_cost(a: PoseTrack, b: PoseTrack, cuts_s=(), step_s: float = 0.0, max_gap_s: float = MAX_GAP_S,
              max_overlap_s: float = MAX_OVERLAP_S) -> float:
    """The cost of joining tracklet ``b`` onto the end of ``a`` (smaller is likelier), or ``inf`` when they cannot be
    one person (see the module's rules). ``step_s``: the sampling interval; a person unseen for ``max_gap_s`` leaves
    ``max_gap_s`` plus one interval between their samples (half an interval more is allowed for uneven timestamps)."""
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    ta, tb = np.asarray(a.times, np.float64), np.asarray(b.times, np.float64)
    start, a_end = float(tb[0]), float(ta[-1])
    if not (start > ta[0] and tb[-1] > a_end):
        return float("inf")
    gap = start - a_end
    if gap > max_gap_s + 1.5 * step_s or -gap > max_overlap_s + 1e-9:
        return float("inf")
    cuts = np.sort(np.asarray(list(cuts_s), np.float64))
    if _shot(float(ta[0]), cuts) != _shot(start, cuts):
        return float("inf")
    # A's anchor: its last sample before B starts (A's last one, unless they overlap)
    i = int(np.searchsorted(ta, start, side="left")) - 1
    dt = start - float(ta[i])
    lo = max(0, i + 1 - EDGE_SAMPLES)
    size_a = float(np.median(_sizes(a.boxes[lo:i + 1])))
    size_b = float(np.median(_sizes(b.boxes[:EDGE_SAMPLES])))
    if max(size_a, size_b) > MAX_SIZE_RATIO * min(size_a, size_b):
        return float("inf")
    size = max(size_a, size_b)
    c_a, c_b = _centres(a.boxes[i])[0], _centres(b.boxes[0])[0]
    # where A was going: kept still (a jump turns back, a person stops behind something), moved on at A's velocity,
    # or at the mean of A's and B's velocities (exact under constant acceleration: a fall, a jump)
    in_a = ta[: i + 1] >= ta[i] - VELOCITY_S - 1e-9
    v_a = _velocity(ta[: i + 1][in_a], np.asarray(a.boxes)[: i + 1][in_a])
    in_b = tb <= start + VELOCITY_S + 1e-9
    v_b = _velocity(tb[in_b], np.asarray(b.boxes)[in_b])
    dist = min(np.linalg.norm(c_b - c_a - v * dt) for v in (np.zeros(2), v_a, (v_a + v_b) / 2)) / size
    limit = MAX_DIST + DIST_PER_S * dt
    if dist > limit:
        return float("inf")
    poses = [pose_distance(ka, kb) for ka in a.keypoints[lo:i + 1] for kb in b.keypoints[:EDGE_SAMPLES]]
    poses = [p for p in poses if np.isfinite(p)]
    if not poses or min(poses) > MAX_POSE_DIST:
        return float("inf")  # no evidence that it is the same body (too few confident joints), or another pose
    # a little for the time between, and for a change of velocity (moving on is likelier than turning back: two people
    # crossing behind something, each also where the other one was headed for, are told apart by it)
    turn = min(float(np.linalg.norm(v_b - v_a)) * dt / size, 1.0)
    return float(dist / limit + min(poses) / MAX_POSE_DIST + GAP_COST * abs(gap) / max_gap_s + TURN_COST * turn)


def plan_links(tracks: list[PoseTrack], cuts_s=(), max_gap_s: float = MAX_GAP_S,
               max_overlap_s: float = MAX_OVERLAP_S) -> list[Link]:
    """The joins to make, cheapest first: each tracklet continues at most one other and is continued by at most one,
    chosen together by a minimum-cost assignment (see the module's text).

    Sparse: only the pairs whose start falls in the join window of an end are costed (found by a binary search over
    the sorted starts) and kept, so time and memory grow with the candidate joins, not with the square of the
    tracklets (a long crowded video has thousands); each connected group of candidates is assigned on its own."""
    n = len(tracks)
    if n < 2:
        return []
    step = sample_step(tracks)
    starts = np.array([t.times[0] if len(t) else np.inf for t in tracks], np.float64)
    ends = np.array([t.times[-1] if len(t) else -np.inf for t in tracks], np.float64)
    by_id = {int(t.track_id): k for k, t in enumerate(tracks)}
    order = np.argsort(starts, kind="stable")
    sorted_starts = starts[order]
    edges: dict[tuple[int, int], float] = {}
    for i in range(n):
        if not np.isfinite(ends[i]):
            continue
        lo = np.searchsorted(sorted_starts, max(starts[i], ends[i] - max_overlap_s - 1e-9), side="left")
        hi = np.searchsorted(sorted_starts, ends[i] + max_gap_s + 1.5 * step, side="right")
        for j in order[lo:hi]:
            if starts[j] > starts[i]:
                c = link_cost(tracks[i], tracks[int(j)], cuts_s, step, max_gap_s, max_overlap_s)
                if np.isfinite(c):
                    edges[(i, int(j))] = c
    out_of: dict[int, list[int]] = {}
    for i, j in edges:
        out_of.setdefault(i, []).append(j)
    links = []
    for rows, _ in _components(edges):
        # exact for a group of up to MAX_BLOCK ends; a larger one (a crowd coming and going for minutes) in blocks of
        # consecutive ends, each assigned exactly among the starts that earlier blocks left free
        rows = sorted(rows, key=lambda i: (ends[i], i))
        taken: set[int] = set()
        for b in range(0, len(rows), MAX_BLOCK):
            block = rows[b:b + MAX_BLOCK]
            cols = sorted({j for i in block for j in out_of[i]} - taken)
            if not cols:
                continue
            index_c = {c: k for k, c in enumerate(cols)}
            cost = np.full((len(block), len(cols)), np.inf)
            for k, i in enumerate(block):
                for j in out_of[i]:
                    if j in index_c:
                        cost[k, index_c[j]] = edges[(i, j)]
            made = _assign(tracks, cost, np.asarray(block), np.asarray(cols))
            links += made
            taken |= {int(by_id[lk.tail]) for lk in made}
    return sorted(links, key=lambda lk: lk.cost)


def _components(edges: dict[tuple[int, int], float]) -> list[tuple[list[int], list[int]]]:
    """The connected groups of ends (rows) and starts (columns) of the candidate joins ``edges`` ((end, start) ->
    cost): each is assigned on its own (the same result as one assignment over all, at a fraction of its cost)."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[root(("r", i))] = root(("c", j))
    groups: dict[tuple[str, int], tuple[list, list]] = {}
    for i in sorted({i for i, _ in edges}):
        groups.setdefault(root(("r", i)), ([], []))[0].append(i)
    for j in sorted({j for _, j in edges}):
        groups.setdefault(root(("c", j)), ([], []))[1].append(j)
    return list(groups.values())


def _assign(tracks: list[PoseTrack], cost: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list[Link]:
    """Minimum-cost joins of the ends ``rows`` to the starts ``cols`` (``cost``: their sub-matrix, inf: no join).
    A square assignment with a way out for every end and every start: an end left alone costs half of
    UNLINKED_COST, so does a start, and the dummies match each other for free; so a join is made only where it beats
    leaving both alone, and two mediocre joins never displace one good one."""
    k, m = len(rows), len(cols)
    big = np.full((k + m, m + k), _INFEASIBLE)
    big[:k, :m] = np.where(np.isfinite(cost), cost, _INFEASIBLE)
    big[np.arange(k), m + np.arange(k)] = UNLINKED_COST / 2
    big[k + np.arange(m), np.arange(m)] = UNLINKED_COST / 2
    big[k:, m:] = 0.0
    r, c = linear_sum_assignment(big)
    return [Link(int(tracks[rows[i]].track_id), int(tracks[cols[j]].track_id), float(big[i, j]))
            for i, j in zip(r, c) if i < k and j < m and big[i, j] < _INFEASIBLE]


def _merge(a: PoseTrack, b: PoseTrack) -> PoseTrack:
    """``b`` appended to ``a``; on frames where both have a sample, the one closer to the straight path from a's
    last box before b starts to b's first box after a ends."""
    fa, fb = np.asarray(a.frame_indices), np.asarray(b.frame_indices)
    shared = np.intersect1d(fa, fb)
    keep_b = np.ones(len(fb), bool)
    drop_a = np.zeros(len(fa), bool)
    if len(shared):
        ta, tb = np.asarray(a.times, np.float64), np.asarray(b.times, np.float64)
        i0 = int(np.searchsorted(ta, tb[0], side="left")) - 1  # a's last sample before b starts
        j1 = int(np.searchsorted(tb, ta[-1], side="right"))  # b's first sample after a ends
        i0, j1 = max(i0, 0), min(j1, len(tb) - 1)
        t0, t1 = float(ta[i0]), float(tb[j1])
        box0, box1 = np.asarray(a.boxes[i0], np.float64), np.asarray(b.boxes[j1], np.float64)
        for f in shared:
            ia, ib = int(np.searchsorted(fa, f)), int(np.searchsorted(fb, f))
            w = (float(ta[ia]) - t0) / (t1 - t0) if t1 > t0 else 0.5
            path = box0 + (box1 - box0) * float(np.clip(w, 0.0, 1.0))
            if np.abs(np.asarray(b.boxes[ib], np.float64) - path).sum() < np.abs(np.asarray(a.boxes[ia], np.float64) - path).sum():
                drop_a[ia] = True
            else:
                keep_b[ib] = False
    ka, kb = ~drop_a, keep_b
    frames = np.concatenate([fa[ka], fb[kb]])
    order = np.argsort(frames, kind="stable")

    def cat(x, y):
        return np.concatenate([np.asarray(x)[ka], np.asarray(y)[kb]])[order]

    return PoseTrack(track_id=a.track_id, frame_indices=frames[order].astype(np.int64),
                     times=cat(a.times, b.times).astype(np.float64),
                     keypoints=cat(a.keypoints, b.keypoints).astype(np.float32),
                     boxes=cat(a.boxes, b.boxes).astype(np.float32),
                     scores=cat(a.scores, b.scores).astype(np.float32))


def relink_tracks(tracks: list[PoseTrack], cuts_s=(), max_gap_s: float = MAX_GAP_S,
                  max_overlap_s: float = MAX_OVERLAP_S) -> list[PoseTrack]:
    """``tracks`` (the tracker's, ids unique) with the pieces of one person joined (:func:`plan_links`), renumbered
    1, 2, 3, ... in the order of their first piece's id, sorted by id. ``cuts_s``: times of the shot cuts
    (``meta["shot_cuts_s"]``): no track is joined across one."""
    tracks = [t for t in tracks if len(t)]
    by_id = {int(t.track_id): t for t in tracks}
    nxt = {lk.head: lk.tail for lk in plan_links(tracks, cuts_s, max_gap_s, max_overlap_s)}
    joined = set(nxt.values())
    out = []
    for tid in sorted(by_id):
        if tid in joined:
            continue  # merged into its predecessor's person
        track = by_id[tid]
        while tid in nxt:
            tid = nxt[tid]
            track = _merge(track, by_id[tid])
        out.append(track)
    return [replace(track, track_id=new_id) for new_id, track in enumerate(out, 1)]
