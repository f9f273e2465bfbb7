"""Per-person probability plots (har.plots): well-formed SVG whose lines map back to the window probabilities."""
from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET

import pytest

from har import plots, reports

NS = {"svg": "http://www.w3.org/2000/svg"}
CLASSES = list(reports.CLASS_NAMES)
WINDOW_S, STRIDE_S = 32 / 22, 8 / 22


def make_windows(n: int, start: float = 0.0, seed: int = 0) -> list[dict]:
    """``n`` overlapping windows (32 frames, stride 8 at 22 Hz) with random probabilities that sum to 1."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        raw = [rng.random() ** 3 for _ in CLASSES]
        probs = [round(r / sum(raw), 4) for r in raw]
        t0 = round(start + i * STRIDE_S, 3)
        out.append({"start_s": t0, "end_s": round(t0 + WINDOW_S, 3), "label": "uncertain",
                    "confidence": max(probs), "probabilities": probs})
    return out


def person(windows, track_id=1) -> dict:
    return {"track_id": track_id, "start_s": 0.0, "end_s": 10.0, "frames": 110, "label": "BOXING",
            "confidence": 0.9, "windows": windows}


def parse(svg) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def series(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-class"): g for g in root.iterfind(".//svg:g[@class='series']", NS)}


def to_data(root: ET.Element, duration: float, points: str) -> list[tuple[float, float]]:
    """A polyline's points back in (seconds, probability), through the nested viewBox."""
    (plot,) = root.findall("svg:svg[@viewBox]", NS)
    _, _, vw, vh = (float(v) for v in plot.get("viewBox").split())
    out = []
    for pair in points.split():
        x, y = (float(v) for v in pair.split(","))
        out.append((x / vw * duration, 1.0 - y / vh))
    return out


def test_well_formed_accessible_and_one_line_per_class_in_the_timeline_colours():
    svg = plots.probability_svg(person(make_windows(20)), CLASSES, 10.0, 0.53)
    root = parse(svg)
    assert root.get("width") == "100%" and root.get("role") == "img"
    assert root.get("aria-label") == "Class probabilities of person 1 over time"
    assert root.find("svg:title", NS).text == root.get("aria-label")
    assert "20 classification windows" in root.find("svg:desc", NS).text
    (plot,) = root.findall("svg:svg[@viewBox]", NS)
    assert plot.get("width") == "100%" and plot.get("preserveAspectRatio") == "none"
    lines = series(root)
    assert list(lines) == CLASSES
    for name, g in lines.items():
        assert len(g.findall("svg:polyline", NS)) == 1
        assert g.get("stroke") == reports.label_colour(name)  # the colours of the timeline and its legend
        assert g.find("svg:title", NS).text == reports.pretty_label(name)
    # the legend names every class with its colour
    legend = root.find(".//svg:g[@class='plot-legend']", NS)
    entries = [(s.find("svg:line", NS).get("stroke"), s.find("svg:text", NS).text)
               for s in legend.findall("svg:svg", NS)]
    assert entries == [(reports.label_colour(c), reports.pretty_label(c)) for c in CLASSES]
    # attributes only: the page's CSP may forbid inline styles
    assert "style=" not in str(svg) and "<script" not in str(svg)


def test_points_map_back_to_the_window_times_and_probabilities():
    windows = make_windows(22, start=0.5, seed=3)
    duration = 9.3
    root = parse(plots.probability_svg(person(windows), CLASSES, duration))
    x_tol = duration / 1000 * 0.051  # coordinates are rounded to 0.1 of 1000 units
    for c, g in enumerate(series(root).values()):
        (line,) = g.findall("svg:polyline", NS)
        points = to_data(root, duration, line.get("points"))
        assert len(points) == len(windows)
        for (t, p), w in zip(points, windows):
            assert t == pytest.approx((w["start_s"] + w["end_s"]) / 2, abs=x_tol)  # the window's centre
            assert p == pytest.approx(w["probabilities"][c], abs=0.00051)


def test_x_axis_spans_the_timeline_and_y_has_gridlines_and_the_threshold():
    root = parse(plots.probability_svg(person(make_windows(5)), CLASSES, 10.0, 0.53))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert [t for t in texts if t.endswith(" s")] == ["0 s", "2 s", "4 s", "6 s", "8 s", "10 s"]
    ticks = [t.get("x") for t in root.iter("{http://www.w3.org/2000/svg}text") if (t.text or "").endswith(" s")]
    assert ticks == ["0%", "20%", "40%", "60%", "80%", "100%"]
    for label in ("0 %", "50 %", "100 %", "uncertain below 53 %"):
        assert label in texts
    (threshold,) = root.findall(".//svg:line[@class='threshold']", NS)
    top, height = plots.PLOT_TOP, plots.PLOT_H
    assert float(threshold.get("y1")) == pytest.approx(top + (1 - 0.53) * height, abs=0.05)
    assert "threshold" not in plots.probability_svg(person(make_windows(5)), CLASSES, 10.0)
    # long videos: minutes
    root = parse(plots.probability_svg(person(make_windows(5)), CLASSES, 300.0))
    assert [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if ":" in (t.text or "")] == [
        "0:00", "1:00", "2:00", "3:00", "4:00", "5:00"]


def test_class_names_and_labels_are_escaped():
    classes = ['<script>alert("x")</script>', "A&B", "JUMPING", "BOXING", "x'y", "CLAPPING_HANDS"]
    svg = str(plots.probability_svg(person(make_windows(3)), classes, 10.0))
    root = parse(svg)  # well-formed despite the names
    assert "<script" not in svg
    assert list(series(root)) == classes
    legend = [t.text for t in root.iterfind(".//svg:g[@class='plot-legend']//svg:text", NS)]
    assert legend[0] == reports.pretty_label(classes[0]) and legend[1] == "A&b"
    lone = dict(person(make_windows(3)), track_id='7"><script>')
    root = parse(plots.probability_svg(lone, CLASSES, 10.0))
    assert root.get("aria-label") == 'Class probabilities of person 7"><script> over time'


@pytest.mark.parametrize("p", [
    {"track_id": 1},                                            # results from before windows were stored
    {"track_id": 1, "windows": []},
    {"track_id": 1, "windows": [{"start_s": 0.0, "end_s": 1.45, "probabilities": [0.5, 0.5]}]},  # wrong length
    {"track_id": 1, "windows": [{"start_s": None, "end_s": 1.45, "probabilities": [0.1] * 6}]},
    {"track_id": 1, "windows": [{"start_s": 0, "end_s": 1, "probabilities": [float("nan")] * 6}]},
])
def test_no_usable_windows_no_plot(p):
    assert plots.probability_svg(p, CLASSES, 10.0, 0.53) == ""
    assert plots.probability_svg(person(make_windows(3)), [], 10.0) == ""


def test_one_window_is_drawn_flat_over_its_span():
    w = {"start_s": 2.0, "end_s": 3.2, "probabilities": [0.1, 0.0, 0.7, 0.1, 0.05, 0.05]}
    root = parse(plots.probability_svg(person([w]), CLASSES, 8.0))
    for c, g in enumerate(series(root).values()):
        (line,) = g.findall("svg:polyline", NS)
        (t0, p0), (t1, p1) = to_data(root, 8.0, line.get("points"))
        assert (t0, t1) == (pytest.approx(2.0, abs=0.001), pytest.approx(3.2, abs=0.001))
        assert p0 == p1 == pytest.approx(w["probabilities"][c], abs=0.0005)
    assert "1 classification window," in root.find("svg:desc", NS).text


def test_a_gap_without_windows_is_not_bridged():
    windows = make_windows(6) + make_windows(4, start=6.0, seed=1)  # nothing classified in ~3.3-6 s
    root = parse(plots.probability_svg(person(windows), CLASSES, 10.0))
    for g in series(root).values():
        first, second = (to_data(root, 10.0, pl.get("points")) for pl in g.findall("svg:polyline", NS))
        assert len(first) == 6 and len(second) == 4
        assert first[-1][0] < 4.0 < 6.0 < second[0][0]


def test_thousands_of_windows_are_decimated_keeping_peaks_deterministically():
    windows = make_windows(3000, seed=5)
    for w in windows:
        w["probabilities"] = [0.02, 0.02, 0.9, 0.02, 0.02, 0.02]
    windows[1234]["probabilities"] = [0.01, 0.95, 0.0, 0.02, 0.01, 0.01]  # one spike of jumping jacks
    duration = windows[-1]["end_s"]
    svg = plots.probability_svg(person(windows), CLASSES, duration, 0.53)
    assert svg == plots.probability_svg(person(windows), CLASSES, duration, 0.53)  # deterministic
    assert len(svg) < 30_000
    root = parse(svg)
    lines = series(root)
    for g in lines.values():
        (line,) = g.findall("svg:polyline", NS)
        assert 2 <= len(line.get("points").split()) <= plots.MAX_POINTS
    points = to_data(root, duration, lines["JUMPING_JACKS"].find("svg:polyline", NS).get("points"))
    peak = max(points, key=lambda tp: tp[1])
    spike = windows[1234]
    assert peak[1] == pytest.approx(0.95, abs=0.0005)
    assert peak[0] == pytest.approx((spike["start_s"] + spike["end_s"]) / 2, abs=duration / 1000 * 0.051)
    boxing = to_data(root, duration, lines["BOXING"].find("svg:polyline", NS).get("points"))
    assert min(p for _, p in boxing) == pytest.approx(0.0, abs=0.0005)  # the dip survives too


def test_timeline_rows_carry_the_plot_over_the_timeline_duration():
    result = {"status": "ok", "classes": CLASSES, "video": {"duration_s": 12.0},
              "params": {"uncertain_threshold": 0.53},
              "persons": [person(make_windows(8), 1), {"track_id": 2, "start_s": 1.0, "end_s": 3.0,
                                                       "segments": []}]}
    rows = reports.timeline_rows(result)
    assert rows[1]["plot"] == ""  # no windows stored: no plot
    root = parse(rows[0]["plot"])
    assert "uncertain below 53 %" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "12 s" not in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]  # ticks every 5 s
    g = series(root)["BOXING"]
    first = to_data(root, 12.0, g.find("svg:polyline", NS).get("points"))[0]
    assert first[0] == pytest.approx(WINDOW_S / 2, abs=0.01) and not math.isnan(first[1])
