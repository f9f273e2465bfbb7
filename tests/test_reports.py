"""Reports (har.reports) from a hand-built result document, checked cell by cell."""
from __future__ import annotations

import copy
import csv
import io
import json
import re
from datetime import datetime, timezone

import pytest

from har import reports
from har.db import DONE, Job, Video
from har.storage import Storage

JOB_ID = "0b7e2f0e-1111-4c3a-9d7e-1234567890ab"
CLASSES = ["JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS"]


def sample_result() -> dict:
    """Two people: one boxing then clapping, one uncertain; plus a short track."""
    return {
        "status": "ok",
        "classes": list(CLASSES),
        "models": {"pose": {"name": "yolo11n-pose", "version": "8.3.0", "sha256": "a" * 64},
                   "action": {"name": "gru-har", "version": "2.1", "sha256": "b" * 64}},
        "video": {"width": 1280, "height": 720, "duration_s": 10.0, "sampled_fps": 22.0, "frames_sampled": 220},
        "params": {"window": 32, "stride": 8, "uncertain_threshold": 0.55, "min_track_s": 0.7},
        "persons": [
            {
                "track_id": 1, "start_s": 0.0, "end_s": 9.95, "frames": 219,
                "label": "BOXING", "confidence": 0.934,
                "probabilities": {"JUMPING": 0.01, "JUMPING_JACKS": 0.01, "BOXING": 0.934,
                                  "WAVING_2HANDS": 0.02, "WAVING_1HAND": 0.006, "CLAPPING_HANDS": 0.02},
                # deliberately out of order: reports sort segments by start
                "segments": [
                    {"label": "CLAPPING_HANDS", "start_s": 6.25, "end_s": 9.95, "confidence": 0.8123},
                    {"label": "BOXING", "start_s": 0.0, "end_s": 6.25, "confidence": 0.97},
                ],
                "windows": [{"start_s": 0.0, "end_s": 1.45, "label": "BOXING", "confidence": 0.97,
                             "probabilities": [0.0, 0.0, 0.97, 0.01, 0.01, 0.01]}],
            },
            {
                "track_id": 4, "start_s": 2.5, "end_s": 5.0, "frames": 55,
                "label": "uncertain", "confidence": 0.41,
                "probabilities": {"JUMPING": 0.41, "JUMPING_JACKS": 0.39, "BOXING": 0.05,
                                  "WAVING_2HANDS": 0.05, "WAVING_1HAND": 0.05, "CLAPPING_HANDS": 0.05},
                "segments": [{"label": "uncertain", "start_s": 2.5, "end_s": 5.0, "confidence": 0.41}],
                "windows": [],
            },
        ],
        "short_tracks": [{"track_id": 7, "start_s": 3.1, "end_s": 3.6, "frames": 11}],
    }


def make_job(result=None, job_id: str = JOB_ID) -> Job:
    """A transient (not persisted) finished job with its video."""
    video = Video(id="v-1", path="uploads/x.mp4", original_filename="gym <session>.mp4", sha256="c" * 64,
                  size_bytes=1_234_567, container="mp4", codec="h264", duration_s=10.0, fps=30.0,
                  frame_count=300, width=1280, height=720, rotation_deg=0)
    t0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
    job = Job(id=job_id, video=video, status=DONE, stage="done", params={"imgsz": 640},
              timings={"pose_s": 12.5, "classify_s": 0.25, "report_s": 0.5}, result=result,
              pose_model="yolo11n-pose 8.3.0", action_model="gru-har 2.1", overall_label="BOXING",
              overall_confidence=0.934, persons=2, frames_done=220, frames_total=220,
              created_at=t0, started_at=t0.replace(second=5), finished_at=t0.replace(minute=1))
    return job


def test_format_percent_never_fraction_with_percent_sign():
    assert reports.format_percent(0.97) == "97 %"
    assert reports.format_percent(0.934) == "93 %"
    assert reports.format_percent(1.0) == "100 %"
    assert reports.format_percent(0.0) == "0 %"
    assert reports.format_percent(None) == "–"
    assert reports.format_seconds(65.25) == "1:05.2"
    assert reports.pretty_label("WAVING_2HANDS") == "Waving two hands"


def test_csv_cell_by_cell():
    text = reports.report_csv(make_job(sample_result()))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["job_id", "track_id", "row_type", "label", "start_s", "end_s", "duration_s", "confidence", "frames"],
        [JOB_ID, "1", "person", "BOXING", "0.000", "9.950", "9.950", "0.9340", "219"],
        [JOB_ID, "1", "segment", "BOXING", "0.000", "6.250", "6.250", "0.9700", ""],
        [JOB_ID, "1", "segment", "CLAPPING_HANDS", "6.250", "9.950", "3.700", "0.8123", ""],
        [JOB_ID, "4", "person", "uncertain", "2.500", "5.000", "2.500", "0.4100", "55"],
        [JOB_ID, "4", "segment", "uncertain", "2.500", "5.000", "2.500", "0.4100", ""],
    ]
    assert text.endswith("\r\n")
    assert tuple(rows[0]) == reports.CSV_COLUMNS


@pytest.mark.parametrize("status", ["no_person", "too_short"])
def test_csv_without_persons_is_header_only(status):
    result = sample_result()
    result.update(status=status, persons=[])
    rows = list(csv.reader(io.StringIO(reports.report_csv(make_job(result)))))
    assert rows == [list(reports.CSV_COLUMNS)]


def test_json_keeps_result_document_and_adds_metadata():
    result = sample_result()
    job = make_job(copy.deepcopy(result))
    doc = json.loads(reports.report_json(job, generated_at=datetime(2026, 11, 24, 13, 0, tzinfo=timezone.utc)))
    for key, value in result.items():  # the result document is there unchanged
        assert doc[key] == value
    assert doc["report"] == {"format": "har.report/1", "generated_at": "2026-11-24T13:00:00Z"}
    assert doc["job"]["id"] == JOB_ID
    assert doc["job"]["status"] == "done"
    assert doc["job"]["created_at"] == "2026-11-24T12:00:00Z"
    assert doc["job"]["finished_at"] == "2026-11-24T12:01:00Z"
    assert doc["job"]["params"] == {"imgsz": 640}
    assert doc["job"]["pose_model"] == "yolo11n-pose 8.3.0"
    assert doc["timings"] == {"pose_s": 12.5, "classify_s": 0.25, "report_s": 0.5}
    assert doc["source"]["original_filename"] == "gym <session>.mp4"
    assert doc["source"]["sha256"] == "c" * 64
    assert (doc["source"]["width"], doc["source"]["height"], doc["source"]["frame_count"]) == (1280, 720, 300)
    assert doc["models"]["action"]["name"] == "gru-har"


def test_html_is_standalone_and_readable():
    html = reports.report_html(make_job(sample_result()))
    assert html.startswith("<!doctype html>")
    # no external assets of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    # escaped file name
    assert "gym &lt;session&gt;.mp4" in html and "gym <session>" not in html
    # summary and per-person labels with percentages, never "0.93%"
    assert "Person 1: " in html and "Boxing" in html and "93 %" in html
    assert "Person 4: " in html and "Uncertain" in html and "41 %" in html
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S))
    assert not re.search(r"\b0\.\d+\s?%", visible)
    # one timeline per person; segment geometry against the 10 s duration (viewBox width 1000)
    assert html.count('aria-label="Timeline of person') == 2
    assert '<rect x="0.0" y="2" width="625.0" height="24" fill="#009E73">' in html  # boxing 0-6.25 s
    assert '<rect x="625.0" y="2" width="370.0" height="24" fill="#D55E00">' in html  # clapping 6.25-9.95 s
    assert '<rect x="250.0" y="2" width="250.0" height="24" fill="#9E9E9E">' in html  # uncertain 2.5-5 s
    # tables: segments, models, timings, short tracks
    assert "<td class=\"num\">0:06.2</td><td class=\"num\">0:09.9</td><td class=\"num\">3.7 s</td><td class=\"num\">81 %</td>" in html
    assert "yolo11n-pose" in html and "gru-har" in html
    assert "<td>pose</td>" in html and "12.50" in html
    assert "Short tracks" in html
    # legend lists every class and "uncertain"
    for name in ("Jumping", "Jumping jacks", "Boxing", "Waving two hands", "Waving one hand", "Clapping", "Uncertain"):
        assert f"</span>{name}</li>" in html


def test_html_no_person():
    result = sample_result()
    result.update(status="no_person", persons=[], short_tracks=[])
    job = make_job(result)
    job.overall_label, job.overall_confidence, job.persons = "no_person", None, 0
    html = reports.report_html(job)
    assert "No person was found" in html
    assert '<span class="muted">Main action</span><b>No person</b>' in html
    assert '<span class="muted">Confidence</span><b>–</b>' in html
    assert "Timeline of person" not in html
    assert "Too short" not in html


def test_html_too_short():
    result = sample_result()
    result.update(status="too_short", persons=[],
                  short_tracks=[{"track_id": 7, "start_s": 3.1, "end_s": 3.6, "frames": 11},
                                {"track_id": 8, "start_s": 5.0, "end_s": 5.5, "frames": 11}])
    job = make_job(result)
    job.overall_label, job.overall_confidence, job.persons = "too_short", None, 0
    html = reports.report_html(job)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "No person" not in html and "no person" not in html.lower()
    assert "Too short to classify: people were tracked in this video, but none long enough to recognise an action" \
        " (that needs a person seen for at least 0.7 s)" in text
    assert '<span class="muted">Main action</span><b>Too short to classify</b>' in html
    assert '<span class="muted">People</span><b>0</b>' in html
    assert '<span class="muted">Confidence</span><b>–</b>' in html
    assert "Timeline of person" not in html
    # the short tracks are listed
    assert "Short tracks (not classified)" in html
    assert '<tr><td>7</td><td class="num">0:03.1</td><td class="num">0:03.6</td><td class="num">11</td></tr>' in html
    assert '<tr><td>8</td><td class="num">0:05.0</td><td class="num">0:05.5</td><td class="num">11</td></tr>' in html


def test_pretty_status_labels():
    assert reports.pretty_label("too_short") == "Too short to classify"
    assert reports.pretty_label("no_person") == "No person"


def test_timeline_rows_geometry():
    rows = reports.timeline_rows(sample_result())
    assert [r["track_id"] for r in rows] == [1, 4]
    segs = rows[0]["segments"]
    assert [(s["label"], s["left_pct"], s["width_pct"]) for s in segs] == [
        ("BOXING", 0.0, 62.5), ("CLAPPING_HANDS", 62.5, 37.0)]
    assert segs[0]["percent"] == "97 %"
    assert rows[1]["track_left_pct"] == 25.0 and rows[1]["track_width_pct"] == 25.0


def test_render_reports_writes_files(tmp_path):
    storage = Storage(tmp_path / "storage")
    job = make_job(sample_result())
    files = reports.render_reports(job, storage)
    assert files == [
        ("json", f"jobs/{JOB_ID}/report.json", "application/json"),
        ("csv", f"jobs/{JOB_ID}/report.csv", "text/csv; charset=utf-8"),
        ("html", f"jobs/{JOB_ID}/report.html", "text/html; charset=utf-8"),
    ]
    for _kind, rel, _ in files:
        path = storage.path(rel)
        assert path.is_file() and path.stat().st_size > 0
    assert storage.path(files[1][1]).read_bytes().decode("utf-8") == reports.report_csv(job)
    assert json.loads(storage.path(files[0][1]).read_text())["job"]["id"] == JOB_ID
    # safe to run twice: same files, no temporary leftovers
    assert reports.render_reports(job, storage) == files
    assert sorted(p.name for p in storage.job_dir(JOB_ID).iterdir()) == ["report.csv", "report.html", "report.json"]


def test_render_report_unknown_kind():
    with pytest.raises(ValueError):
        reports.render_report(make_job(sample_result()), "pdf")


def test_timings_are_listed_in_stage_order():
    from har.reports import timings_in_order

    t = {"total_s": 9.0, "classify_s": 0.1, "zzz_s": 1.0, "pose_s": 4.0, "queue_wait_s": 0.2, "report_s": 2.0,
         "annotate_s": 1.9, "aaa_s": 3.0}
    assert [k for k, _ in timings_in_order(t)] == [
        "queue_wait_s", "pose_s", "classify_s", "annotate_s", "report_s", "total_s", "aaa_s", "zzz_s"]
    assert timings_in_order(None) == []


def svg_end(html: str, start: int) -> int:
    """Where the <svg> element opening at ``start`` ends (it holds nested <svg> elements)."""
    depth = 0
    for m in re.finditer(r"<svg\b|</svg>", html[start:]):
        depth += 1 if m.group() == "<svg" else -1
        if depth == 0:
            return start + m.end()
    raise AssertionError("unclosed <svg>")


def test_html_shows_each_persons_probability_plot_under_their_timeline():
    import xml.etree.ElementTree as ET

    result = sample_result()
    html = reports.report_html(make_job(result))
    # person 1 has one window (a plot); person 4 has none (no plot)
    assert html.count('class="prob-plot"') == 1
    assert 'aria-label="Class probabilities of person 1 over time"' in html
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="prob-plot"')
    end = svg_end(html, start)
    root = ET.fromstring(html[start:end])
    ns = {"svg": "http://www.w3.org/2000/svg"}
    boxing = root.find(".//svg:g[@data-class='BOXING']/svg:polyline", ns)
    assert boxing.get("points") == "0,3 145,3"  # 0-1.45 s of the 10 s timeline (1000 units), at 97 % of 100
    # under person 1's timeline, before person 4's
    assert html.index('aria-label="Timeline of person 1"') < start < html.index('aria-label="Timeline of person 4"')
    # the threshold of the result is drawn
    assert "uncertain below 55 %" in html[start:end]
    # a result from before windows were stored: same report, no plot
    for person in result["persons"]:
        del person["windows"]
    old = reports.report_html(make_job(result))
    assert 'class="prob-plot"' not in old and 'class="tl-plot-row"' not in old
    assert old.count('aria-label="Timeline of person') == 2
