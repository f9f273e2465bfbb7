"""Person-guided pose estimation: the whole frame now and then, small crops around the tracked persons in between.

The pose network's cost grows with its input's pixels. A person who fills a sixth of a 1080p frame needs the
whole frame only to be *found*; to follow them, a crop around where the tracker expects them is enough, and that
crop, scaled to a small input (``crop_imgsz``, 224 px on its longest side), costs a third to a fifth of the
480 px full frame while showing a small person *larger* than the full frame does.

:class:`RedetectSchedule` decides, per sampled frame, whether the whole frame is needed: the first frame, every
``redetect_s`` seconds (a person who walks in is found within that time), after a shot cut, when nobody is
being followed, on the frame after a followed person ran against the edge of their crop, and at once (the
same frame again) when a followed person is not found in their crop; that person is then followed in whole
frames for as long as they are tracked (crop and whole-frame views of a hard person, e.g. one cut by the frame's
edge, disagree, and alternating them makes the joints jump). A frame whose crops would cost more network input
than the whole frame (a crowd: :func:`input_pixels`) runs whole, and so do the next ones until the crops cost
clearly less (:data:`CROWD_BACK`: a crowd near the break-even point does not alternate the two views either).
:func:`crop_region` turns a predicted box into the crop (box plus a margin, clipped to the frame) and
:func:`to_frame` maps detections from crop pixels back to frame pixels (an exact shift: the crop is cut at
integer pixels and the letterbox inside it is undone by :func:`~models.pose.onnx_backend.decode`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .onnx_backend import PoseDetections, box_iou, nms

CROP_IMGSZ = 224      # longest side of a crop's network input
CROP_MARGIN = 0.25    # around a predicted box, as a share of its longer side, on every side
REDETECT_S = 1.0      # the whole frame at least this often
MIN_MATCH_IOU = 0.2   # a crop's detection is its person's if it overlaps the prediction this much (IoU),
MIN_MATCH_COVER = 0.5  # or if this share of the smaller of the two boxes lies in the other
EDGE_PX = 2.0         # a detection this close to a crop edge inside the frame may be cut off by the crop
DEDUP_IOU = 0.7       # two crops that found the same person (overlapping people): keep the surer detection
CROWD_BACK = 0.75     # after a crowd's whole frames, crops again once they cost less than this share of the frame
CALL_PX = 2048        # the fixed cost of one network call, in input pixels (bench: ~0.4 ms of a 5.6 ms 224x128 crop)


def input_pixels(h: int, w: int, imgsz: int, stride: int = 32) -> int:
    """Pixels of the network input for an ``h`` x ``w`` image letterboxed to ``imgsz`` with rect padding (as
    :func:`~models.pose.onnx_backend.letterbox` with ``auto=True``): what a network call on it costs."""
    r = min(imgsz / h, imgsz / w)
    nh, nw = max(round(h * r), 1), max(round(w * r), 1)
    return (-(-nh // stride) * stride) * (-(-nw // stride) * stride)


@dataclass(frozen=True)
class Region:
    """A crop of the frame: integer pixel bounds, ``x1``/``y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def crop_region(box: np.ndarray, frame_w: int, frame_h: int, margin: float = CROP_MARGIN,
                min_side: int = 32) -> Region | None:
    """The crop around a predicted xyxy ``box``: the box grown by ``margin`` x its longer side on every side,
    at least ``min_side`` pixels, clipped to the frame; None when nothing of it lies in the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])):
        return None
    pad = margin * max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) / 2 + pad, min_side / 2)
    half_h = max((y1 - y0) / 2 + pad, min_side / 2)
    r = Region(max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h))),
               min(int(frame_w), int(np.ceil(cx + half_w))), min(int(frame_h), int(np.ceil(cy + half_h))))
    if r.width < 8 or r.height < 8:
        return None
    return r


def to_frame(dets: PoseDetections, region: Region) -> PoseDetections:
    """Detections in crop pixels → frame pixels (a copy)."""
    shift = np.array([region.x0, region.y0], np.float32)
    boxes = dets.boxes.copy()
    boxes[:, 0:2] += shift
    boxes[:, 2:4] += shift
    kpts = dets.keypoints.copy()
    kpts[..., :2] += shift
    return PoseDetections(boxes, dets.scores.copy(), kpts)


def touches_inner_edge(box: np.ndarray, region: Region, frame_w: int, frame_h: int, px: float = EDGE_PX) -> bool:
    """Whether a frame-pixel box runs against a side of the crop that is not a side of the frame (the person may
    reach beyond the crop)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return ((region.x0 > 0 and x0 <= region.x0 + px) or (region.y0 > 0 and y0 <= region.y0 + px)
            or (region.x1 < frame_w and x1 >= region.x1 - px) or (region.y1 < frame_h and y1 >= region.y1 - px))


def concat(parts: list[PoseDetections]) -> PoseDetections:
    if not parts:
        return PoseDetections.empty()
    return PoseDetections(np.concatenate([p.boxes for p in parts]).astype(np.float32),
                          np.concatenate([p.scores for p in parts]).astype(np.float32),
                          np.concatenate([p.keypoints for p in parts]).astype(np.float32))


class RedetectSchedule:
    """Which sampled frames run on the whole frame (see the module's docstring)."""

    def __init__(self, every_s: float = REDETECT_S):
        self.every_s = float(every_s)
        self._last_full: float | None = None
        self._recheck = True  # the first frame is always a full one

    def full(self, t: float, following: int, cut: bool = False) -> bool:
        """Whether the frame at time ``t`` is a full-frame one, given how many persons are being followed."""
        due = (self._recheck or cut or following == 0 or self._last_full is None
               or t - self._last_full >= self.every_s - 1e-6)
        if due:
            self._last_full = t
        self._recheck = False
        return due

    def recheck(self) -> None:
        """The next frame runs on the whole frame (a person was lost or may reach beyond their crop)."""
        self._recheck = True


class GuidedPose:
    """Pose on a stream of frames: whole frames per :class:`RedetectSchedule`, crops around the persons the
    tracker follows in between. ``detect(frame, t, predictions, cut)`` → (detections in frame pixels, whether
    the whole frame was used). A person once not found in their crop is followed in whole frames for the rest of
    their track, so the service falls back to whole frames where crops do not work. Where the crops of a frame
    would cost more than the whole frame (a crowd), the whole frame runs."""

    def __init__(self, estimator, crop_imgsz: int = CROP_IMGSZ, redetect_s: float = REDETECT_S,
                 margin: float = CROP_MARGIN):
        self.estimator = estimator
        self.crop_imgsz = int(crop_imgsz)
        self.margin = float(margin)
        self.whole_imgsz = int(getattr(estimator, "imgsz", 640))  # whole frames run at the estimator's own size
        self.schedule = RedetectSchedule(redetect_s)
        self.hard: set[int] = set()  # keys of persons followed in whole frames only (see detect)
        self.crowd = False  # the last frame ran whole because its crops would have cost more
        self.lost_in_crops = 0
        self.full_frames = 0
        self.crowd_frames = 0
        self.crop_frames = 0
        self.crops = 0

    def detect(self, frame: np.ndarray, t: float, predictions: list[tuple[int, np.ndarray]], cut: bool = False
               ) -> tuple[PoseDetections, bool]:
        """``predictions``: (track key, predicted xyxy box) of every followed person (``PoseTracker.predictions``)."""
        h, w = frame.shape[:2]
        if self.schedule.full(t, len(predictions), cut) or any(k in self.hard for k, _ in predictions):
            return self._whole(frame), True
        regions = [crop_region(b, w, h, self.margin) for _, b in predictions]
        jobs = [(k, b, r) for (k, b), r in zip(predictions, regions) if r is not None]
        crops_cost, whole_cost = self.crops_cost(jobs), self.whole_cost(h, w)
        self.crowd = crops_cost >= (CROWD_BACK if self.crowd else 1.0) * whole_cost
        if self.crowd:
            self.crowd_frames += 1  # one whole frame costs less than the crops of everyone
            self.schedule.full(t, 0)
            return self._whole(frame), True
        crops = [frame[r.y0:r.y1, r.x0:r.x1] for _, _, r in jobs]
        results = self.estimator.predict(crops, imgsz=self.crop_imgsz, rect=True) if crops else []
        self.crop_frames += 1
        self.crops += len(jobs)
        found: list[PoseDetections] = []
        lost = {k for k, _ in predictions} - {k for k, _, _ in jobs}  # predicted out of the frame
        for (key, pred, region), dets in zip(jobs, results):
            best = self._best_match(to_frame(dets, region), pred)
            if best is None:
                lost.add(key)
                continue
            if touches_inner_edge(best.boxes[0], region, w, h):
                self.schedule.recheck()  # they may reach beyond the crop: the whole frame next time
            found.append(best)
        if lost:
            # not where the tracker expected them, or not found in a crop at all (a person cut by the frame's
            # edge, seen from behind, blurred): look at the whole of this frame, and follow them in whole frames
            # from now on (alternating crop and whole-frame views of a hard person makes their joints jump)
            self.hard |= lost
            self.lost_in_crops += len(lost)
            self.schedule.full(t, 0)
            return self._whole(frame), True
        dets = concat(found)
        if len(dets) > 1:
            keep = nms(dets.boxes, dets.scores, DEDUP_IOU)
            dets = PoseDetections(dets.boxes[keep], dets.scores[keep], dets.keypoints[keep])
        return dets, False

    def whole_cost(self, h: int, w: int) -> int:
        """What the whole ``h`` x ``w`` frame costs, in network input pixels (a square input without rect)."""
        if not getattr(self.estimator, "rect", True):
            return self.whole_imgsz ** 2 + CALL_PX
        return input_pixels(h, w, self.whole_imgsz) + CALL_PX

    def crops_cost(self, jobs) -> int:
        """What the crops of ``jobs`` ((key, box, region)) cost, in network input pixels."""
        return sum(input_pixels(r.height, r.width, self.crop_imgsz) + CALL_PX for _, _, r in jobs)

    def _whole(self, frame: np.ndarray) -> PoseDetections:
        self.full_frames += 1
        return self.estimator.predict([frame])[0]

    @staticmethod
    def _best_match(dets: PoseDetections, pred: np.ndarray) -> PoseDetections | None:
        """The crop's detection of the person it was cut for: the one overlapping the prediction most, if it covers
        at least MIN_MATCH_COVER of the prediction or of itself (a constant-velocity prediction of a box whose arms
        swing in can be much narrower than the person)."""
        if len(dets) == 0:
            return None
        pred = np.asarray(pred, np.float64)
        iou = box_iou(pred[None], dets.boxes)[0]
        j = int(np.argmax(iou))
        b = dets.boxes[j].astype(np.float64)
        inter = (max(0.0, min(pred[2], b[2]) - max(pred[0], b[0]))
                 * max(0.0, min(pred[3], b[3]) - max(pred[1], b[1])))
        smaller = min(max(pred[2] - pred[0], 1.0) * max(pred[3] - pred[1], 1.0), max(b[2] - b[0], 1.0) * max(b[3] - b[1], 1.0))
        if iou[j] < MIN_MATCH_IOU and inter / smaller < MIN_MATCH_COVER:
            return None
        return PoseDetections(dets.boxes[j:j + 1], dets.scores[j:j + 1], dets.keypoints[j:j + 1])

    @property
    def stats(self) -> dict:
        return {"full_frames": self.full_frames, "crowd_frames": self.crowd_frames, "crop_frames": self.crop_frames,
                "crops": self.crops, "lost_in_crops": self.lost_in_crops,
                "hard_tracks": len(self.hard), "crop_imgsz": self.crop_imgsz, "redetect_s": self.schedule.every_s,
                "margin": self.margin}
