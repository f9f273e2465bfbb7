"""Person-guided pose: crops map back to frame pixels exactly, the whole frame runs on schedule, a person who
enters mid-clip is found, and frames are decoded in a thread without losing order or errors."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from models.pose.guided import (
    CALL_PX,
    CROWD_BACK,
    GuidedPose,
    RedetectSchedule,
    Region,
    crop_region,
    input_pixels,
    to_frame,
    touches_inner_edge,
)
from models.pose.onnx_backend import PoseDetections, letterbox
from models.video import prefetch
from tests.media import ASSETS

SIZE = 320  # pose input for the real-model tests (as the rest of the suite)


@pytest.fixture(scope="module")
def estimator():
    from models.pose import load_pose_estimator

    return load_pose_estimator("onnx", imgsz=SIZE, threads=2)


# --- crop geometry --------------------------------------------------------------------------------------


def test_crop_region_grows_the_box_and_stays_in_the_frame():
    r = crop_region(np.array([100, 50, 140, 150]), 640, 360, margin=0.25)
    # 25 % of the longer side (100 px) on every side
    assert (r.x0, r.y0, r.x1, r.y1) == (75, 25, 165, 175)
    edge = crop_region(np.array([600, 300, 660, 420]), 640, 360, margin=0.25)
    assert (edge.x1, edge.y1) == (640, 360) and edge.x0 == 570 and edge.y0 == 270
    tiny = crop_region(np.array([10, 10, 12, 12]), 640, 360, margin=0.25, min_side=32)
    assert tiny.width >= 26 and tiny.height >= 26  # at least min_side, less what the frame edge clips
    assert crop_region(np.array([700, 400, 800, 500]), 640, 360) is None  # wholly outside
    assert crop_region(np.array([np.nan, 0, 1, 1]), 640, 360) is None


def test_to_frame_shifts_boxes_and_keypoints_only():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = np.arange(17), 2 * np.arange(17), 0.9
    d = PoseDetections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.8], np.float32), kp)
    out = to_frame(d, Region(100, 7, 200, 300))
    assert out.boxes.tolist() == [[101, 9, 130, 47]]
    assert np.array_equal(out.keypoints[0, :, 0], np.arange(17) + 100)
    assert np.array_equal(out.keypoints[0, :, 1], 2 * np.arange(17) + 7)
    assert np.array_equal(out.keypoints[..., 2], kp[..., 2]) and out.scores.tolist() == pytest.approx([0.8])
    assert d.boxes.tolist() == [[1, 2, 30, 40]]  # the input is left as it was


def test_touches_inner_edge_ignores_the_frame_edges():
    r = Region(100, 0, 300, 200)  # the top is the frame's edge
    assert touches_inner_edge(np.array([101, 50, 200, 150]), r, 640, 360)  # crop's left side
    assert not touches_inner_edge(np.array([150, 0, 200, 150]), r, 640, 360)  # frame's top
    assert touches_inner_edge(np.array([150, 50, 200, 199]), r, 640, 360)  # crop's bottom (inside the frame)
    assert not touches_inner_edge(np.array([150, 50, 250, 150]), r, 640, 360)


def test_crop_detections_map_back_exactly_with_the_real_model(estimator):
    """The photo placed at an offset in a bigger canvas, run as a crop: the same persons, shifted by the offset."""
    photo = cv2.imread(str(ASSETS / "zidane.jpg"))
    h, w = photo.shape[:2]
    ox, oy = 333, 147
    canvas = np.full((h + 400, w + 500, 3), 40, np.uint8)
    canvas[oy:oy + h, ox:ox + w] = photo
    region = Region(ox, oy, ox + w, oy + h)
    alone = estimator.predict([photo], imgsz=SIZE, rect=True)[0]
    crop = canvas[region.y0:region.y1, region.x0:region.x1]
    mapped = to_frame(estimator.predict([crop], imgsz=SIZE, rect=True)[0], region)
    assert len(alone) >= 2 and len(mapped) == len(alone)
    np.testing.assert_allclose(mapped.boxes, alone.boxes + np.array([ox, oy, ox, oy], np.float32), atol=1e-3)
    np.testing.assert_allclose(mapped.keypoints[..., 0], alone.keypoints[..., 0] + ox, atol=1e-3)
    np.testing.assert_allclose(mapped.keypoints[..., 1], alone.keypoints[..., 1] + oy, atol=1e-3)
    np.testing.assert_allclose(mapped.keypoints[..., 2], alone.keypoints[..., 2])


def test_a_crop_finds_the_same_joints_as_the_whole_frame(estimator):
    """The crop around a person detected in the whole frame gives that person's joints again (within 5 % of
    their height), and GuidedPose keeps only the person the crop was cut for."""
    photo = cv2.imread(str(ASSETS / "bus.jpg"))
    full = estimator.predict([photo])[0]
    guide = GuidedPose(estimator, crop_imgsz=256)
    guide.whole_imgsz = 1088  # as if whole frames ran at the photo's own size: the crops of its people cost less
    guide.schedule.full(0.0, 0)  # the first frame was a whole one
    dets, whole = guide.detect(photo, 0.05, list(enumerate(full.boxes)))
    assert not whole and guide.crops == len(full)
    assert len(dets) == len(full)
    near = []
    for box, kp in zip(full.boxes, full.keypoints):
        j = int(np.argmin(np.abs(dets.boxes - box).sum(1)))
        conf = (kp[:, 2] > 0.5) & (dets.keypoints[j, :, 2] > 0.5)
        d = np.linalg.norm(dets.keypoints[j, conf, :2] - kp[conf, :2], axis=1)
        near += list(d <= 0.05 * (box[3] - box[1]))
    assert len(near) >= 20 and np.mean(near) >= 0.9


# --- the re-detection schedule --------------------------------------------------------------------------


def test_schedule_whole_frames():
    s = RedetectSchedule(every_s=1.0)
    assert s.full(0.0, following=0)  # the first frame
    assert not s.full(0.1, following=1)
    assert s.full(0.2, following=0)  # nobody followed: look at everything
    assert not s.full(0.3, following=2)
    assert s.full(0.4, following=2, cut=True)  # a shot cut
    assert not s.full(1.3, following=1)
    assert s.full(1.4, following=1)  # a second since the last whole frame
    s.recheck()  # a person was lost
    assert s.full(1.5, following=1)
    assert not s.full(1.6, following=1)


class BlobPose:
    """A stand-in pose model that finds bright squares (persons) in an image, so the schedule is tested on
    exact positions: one detection per 40x80 white rectangle, keypoints at its corners and centre."""

    def __init__(self):
        self.calls: list[tuple[tuple, int | None]] = []

    def predict(self, images, imgsz=None, rect=None):
        out = []
        for img in images:
            self.calls.append((img.shape[:2], imgsz))
            mask = (img[..., 0] > 200).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes, kps = [], []
            for x, y, w, h, area in stats[1:n]:
                if area < 200:
                    continue
                boxes.append([x, y, x + w, y + h])
                kp = np.zeros((17, 3), np.float32)
                kp[:, 0] = x + w * (np.arange(17) % 3) / 2
                kp[:, 1] = y + h * (np.arange(17) % 5) / 4
                kp[:, 2] = 0.9
                kps.append(kp)
            if boxes:
                out.append(PoseDetections(np.asarray(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                                          np.stack(kps)))
            else:
                out.append(PoseDetections.empty())
        return out


def _scene(t: float, entering_at: float) -> np.ndarray:
    img = np.zeros((360, 640, 3), np.uint8)
    x = int(100 + 40 * t)  # walks right
    img[100:180, x:x + 40] = 255
    if t >= entering_at:
        img[200:280, 500:540] = 255
    return img


def test_guided_follows_with_crops_and_finds_a_person_entering_mid_clip():
    from models.pose.tracker import PoseTracker

    pose = BlobPose()
    guide = GuidedPose(pose, crop_imgsz=128, redetect_s=1.0)
    tracker = PoseTracker.for_rate(10.0)
    fps, entering_at = 10.0, 1.25
    whole_at = []
    for i in range(40):
        t = i / fps
        dets, whole = guide.detect(_scene(t, entering_at), t, tracker.predictions())
        if whole:
            whole_at.append(round(t, 2))
        tracker.update(i, t, dets)
        if not whole:  # crops: mapped back exactly onto the walker
            x = int(100 + 40 * t)
            walker = dets.boxes[np.argmin(np.abs(dets.boxes[:, 0] - x))]
            assert walker.tolist() == [x, 100, x + 40, 180]
    tracks = tracker.finish()
    # the whole frame at the start, after a first sighting (nobody followed yet), then once a second
    assert whole_at[:2] == [0.0, 1.0] and all(b - a >= 1.0 - 1e-6 for a, b in zip(whole_at, whole_at[1:]))
    assert len(whole_at) <= 5 and guide.crop_frames >= 35
    crop_calls = [c for c in pose.calls if c[1] == 128]
    assert crop_calls and all(shape[0] < 360 and shape[1] < 640 for shape, _ in crop_calls)
    assert len(tracks) == 2
    newcomer = max(tracks, key=lambda tr: tr.times[0])
    # found at the first whole frame after it entered (2.0 s), and followed to the end
    assert entering_at <= newcomer.times[0] <= entering_at + guide.schedule.every_s
    assert newcomer.times[-1] == pytest.approx(3.9)
    assert newcomer.boxes[-1].tolist() == [500, 200, 540, 280]


def test_guided_looks_at_the_whole_frame_when_a_person_is_not_in_their_crop():
    pose = BlobPose()
    guide = GuidedPose(pose, crop_imgsz=128, redetect_s=10.0)
    guide.schedule.full(0.0, 0)
    img = np.zeros((360, 640, 3), np.uint8)
    img[100:180, 400:440] = 255  # far from where the tracker predicted them (a jump, a fast turn)
    dets, whole = guide.detect(img, 0.1, [(7, np.array([100, 100, 140, 180]))])
    assert whole and dets.boxes.tolist() == [[400, 100, 440, 180]]
    assert [c[1] for c in pose.calls] == [128, None]  # the crop, then the same frame whole
    # that person is followed in whole frames from now on; another one in a crop
    dets, whole = guide.detect(img, 0.2, [(7, np.array([400, 100, 440, 180]))])
    assert whole and dets.boxes.tolist() == [[400, 100, 440, 180]]
    dets, whole = guide.detect(img, 0.3, [(8, np.array([400, 100, 440, 180]))])
    assert not whole and dets.boxes.tolist() == [[400, 100, 440, 180]]
    assert guide.stats["lost_in_crops"] == 1 and guide.stats["hard_tracks"] == 1


def test_a_crowd_runs_the_whole_frame_when_that_costs_less_than_the_crops():
    pose = BlobPose()
    guide = GuidedPose(pose, crop_imgsz=224, redetect_s=10.0)
    guide.schedule.full(0.0, 0)
    img = np.zeros((360, 640, 3), np.uint8)
    boxes = []
    for i in range(8):  # eight persons in a row
        x = 20 + 75 * i
        img[100:180, x:x + 40] = 255
        boxes.append(np.array([x, 100, x + 40, 180], np.float32))
    whole_px = guide.whole_cost(360, 640)
    assert whole_px == input_pixels(360, 640, 640) + CALL_PX  # BlobPose has no size of its own: 640
    # two of them: two crops cost less than the frame
    dets, whole = guide.detect(img, 0.1, [(k, b) for k, b in enumerate(boxes[:2])])
    assert not whole and len(dets) == 2 and guide.crowd_frames == 0
    assert sum(input_pixels(h, w, 224) + CALL_PX for (h, w), size in pose.calls if size == 224) < whole_px
    # all eight: the crops would cost more than the whole frame, which runs instead (and finds everyone)
    pose.calls.clear()
    dets, whole = guide.detect(img, 0.2, [(k, b) for k, b in enumerate(boxes)])
    assert whole and len(dets) == 8 and guide.crowd_frames == 1
    assert pose.calls == [((360, 640), None)]
    jobs = [(k, b, crop_region(b, 640, 360)) for k, b in enumerate(boxes)]
    assert guide.crops_cost(jobs) >= whole_px
    # a crowd near the break-even point stays in whole frames (alternating the two views makes joints jump) until
    # the crops cost clearly less: CROWD_BACK of the whole frame
    n_even = next(n for n in range(1, 9) if guide.crops_cost(jobs[:n]) >= whole_px)
    assert guide.crops_cost(jobs[:n_even - 1]) >= CROWD_BACK * whole_px  # one fewer: still whole
    _, whole = guide.detect(img, 0.3, [(k, b) for k, b in enumerate(boxes[:n_even - 1])])
    assert whole and guide.crowd_frames == 2
    n_back = max(n for n in range(1, 9) if guide.crops_cost(jobs[:n]) < CROWD_BACK * whole_px)
    _, whole = guide.detect(img, 0.4, [(k, b) for k, b in enumerate(boxes[:n_back])])
    assert not whole and guide.crowd_frames == 2


def test_input_pixels_follow_the_rect_letterbox():
    img = np.zeros((360, 640, 3), np.uint8)
    for size in (224, 480, 640):
        lb, _ = letterbox(img, size, auto=True)
        assert input_pixels(360, 640, size) == lb.shape[0] * lb.shape[1]
    assert input_pixels(360, 640, 480) == 288 * 480
    assert input_pixels(300, 100, 224) == 224 * 96


def test_a_fast_person_who_turns_back_stays_one_track():
    """A person moving a body width per sampled frame, who then turns back at once (a tumble, a spin):
    every frame has them, in one track."""
    from models.pose.tracker import PoseTracker

    pose = BlobPose()
    guide = GuidedPose(pose, crop_imgsz=128, redetect_s=1.0)
    tracker = PoseTracker.for_rate(10.0)
    xs = [40 + 40 * i for i in range(13)] + [520 - 40 * i for i in range(1, 13)]
    for i, x in enumerate(xs):
        img = np.zeros((360, 640, 3), np.uint8)
        img[100:180, x:x + 40] = 255
        dets, _ = guide.detect(img, i / 10, tracker.predictions())
        assert dets.boxes.tolist() == [[x, 100, x + 40, 180]]
        tracker.update(i, i / 10, dets)
    tracks = tracker.finish()
    assert len(tracks) == 1 and len(tracks[0]) == len(xs)


def test_a_prediction_narrower_than_the_person_still_finds_them():
    """Arms swinging in make a constant-velocity box prediction far narrower than the person: the crop's
    detection that covers it is theirs (no whole frame, not a hard person)."""
    pose = BlobPose()
    guide = GuidedPose(pose, crop_imgsz=128, redetect_s=10.0)
    guide.schedule.full(0.0, 0)
    img = np.zeros((360, 640, 3), np.uint8)
    img[30:350, 300:420] = 255
    dets, whole = guide.detect(img, 0.1, [(1, np.array([354, 40, 366, 340]))])  # IoU 0.09, inside the person
    assert not whole and dets.boxes.tolist() == [[300, 30, 420, 350]] and not guide.hard
    _, whole = guide.detect(img, 0.2, [(2, np.array([220, 40, 310, 340]))])  # overlaps only its edge
    assert whole and guide.hard == {2}


def test_extract_tracks_finds_a_person_entering_mid_clip(tmp_path, estimator):
    """A real clip: three people at a bus stop, the third appears at 1.5 s (no shot cut). The guided pose
    finds them within its re-detection interval, as the whole-frame pose does at once."""
    from models.pose.extract import extract_tracks

    photo = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (405, 540), interpolation=cv2.INTER_AREA)
    hidden = photo.copy()
    hidden[190:445, 325:] = np.median(photo[190:445, 250:320].reshape(-1, 3), axis=0).astype(np.uint8)
    path = tmp_path / "enter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (405, 540))
    for i in range(90):
        frame = hidden if i < 45 else photo
        writer.write(np.roll(frame, i // 10, axis=0))  # a slow tilt, so frames differ
    writer.release()
    entering_at, redetect = 1.5, 0.5
    runs = {mode: extract_tracks(path, estimator, target_fps=11.0, mode=mode, redetect_s=redetect)
            for mode in ("guided", "full")}
    for mode, ex in runs.items():
        assert ex.meta["shot_cuts_s"] == [], mode
        right = [tr for tr in ex.tracks if tr.boxes[:, 0].mean() > 300]
        assert len(right) == 1, (mode, [(tr.times[0], tr.boxes[0]) for tr in ex.tracks])
        late = {"guided": redetect + 0.2, "full": 0.2}[mode]
        assert entering_at - 0.05 <= right[0].times[0] <= entering_at + late, mode
        assert right[0].times[-1] >= 2.8
    g = runs["guided"].meta["guided"]
    # crops between the scheduled whole frames, or the whole frame where it costs less than the crops of everyone
    assert runs["guided"].meta["pose_mode"] == "guided" and g["crop_frames"] > 0
    assert g["crop_frames"] + g["crowd_frames"] > g["full_frames"] - g["crowd_frames"]


def test_the_crop_margin_setting_reaches_the_crops(tmp_path, estimator):
    """HAR_POSE_CROP_MARGIN (or a job's own ``crop_margin``, 0 included) is the margin the pose stage crops with."""
    from har.config import load_settings
    from har.db import Job
    from models.pose.extract import extract_tracks
    from tests.media import make_people_video
    from worker.runtime import job_params

    assert job_params(Job(params={}), load_settings())["crop_margin"] == 0.25
    assert job_params(Job(params={}), load_settings(pose_crop_margin=0.4))["crop_margin"] == 0.4
    assert job_params(Job(params={"crop_margin": 0}), load_settings(pose_crop_margin=0.4))["crop_margin"] == 0.0

    video = make_people_video(tmp_path / "people.mp4", seconds=1.0, size=(640, 360))
    cut: dict[float, list] = {}
    real_crop_region = crop_region

    def spy(box, w, h, margin, *a, **kw):
        cut.setdefault(margin, []).append(real_crop_region(box, w, h, margin, *a, **kw))
        return cut[margin][-1]

    import models.pose.guided as guided
    original, guided.crop_region = guided.crop_region, spy
    try:
        for margin in (0.1, 0.4):
            ex = extract_tracks(video, estimator, target_fps=11.0, crop_margin=margin)
            assert ex.meta["guided"]["margin"] == margin
    finally:
        guided.crop_region = original
    assert set(cut) == {0.1, 0.4} and len(cut[0.1]) > 5
    area = {m: np.mean([r.width * r.height for r in regions if r is not None]) for m, regions in cut.items()}
    assert area[0.4] > 1.2 * area[0.1]  # less than (1.8 / 1.2) ** 2: crops are clipped to the frame


# --- decoding beside the network ------------------------------------------------------------------------


def test_prefetch_keeps_order_and_raises_errors_in_place():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def broken():
        yield 1
        yield 2
        raise ValueError("damaged frame")

    got = []
    with pytest.raises(ValueError, match="damaged frame"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1, 2]


def test_prefetch_reports_the_cpu_its_thread_spent():
    def busy():
        for i in range(5):
            x = 0
            for k in range(200_000):  # CPU work in the producing thread
                x += k
            yield i

    stats: dict = {}
    assert list(prefetch(busy(), stats=stats)) == list(range(5))
    assert stats["cpu_s"] > 0


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    closed = threading.Event()

    def frames():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    for x in prefetch(frames(), depth=2):
        if x == 5:
            break
    assert closed.wait(5) and threading.active_count() == before
