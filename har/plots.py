"""Per-person plots of the classifier's window probabilities, as inline SVG (no script, no external files).

:func:`probability_svg` draws, for one person of the result document (``docs/contracts.md``), one line per
class through the probabilities of its classification windows (``person["windows"][i]["probabilities"]``,
in the order of ``result["classes"]``) against time. The job page and the HTML report both show it under
the person's timeline, through :func:`har.reports.timeline_rows`.

Geometry: the SVG is ``width="100%"`` with a fixed height in CSS pixels, so its text stays readable at
any width (a phone included) while the plot area stretches over the whole width, from 0 s to the
timeline's duration, like the timeline above it. The lines live in a nested ``<svg>`` whose ``viewBox``
is :data:`VIEW_W` × :data:`VIEW_H` units, stretched to the plot area (``preserveAspectRatio="none"``,
``vector-effect="non-scaling-stroke"``): x = time / duration × VIEW_W, y = (1 − probability) × VIEW_H,
rounded to one decimal. The probability labels (0 %, 50 %, 100 %) sit just left of the plot area
(``overflow="visible"``), in the timeline's name column. Only SVG attributes are used (no ``style``).

A window's point is at its centre. Windows that neither overlap nor touch the previous one (the track
had no classified window in between) start a new line, so a gap is never bridged; a stretch of a
single window is drawn flat over that window's span. Over :data:`MAX_POINTS` windows, the windows are
taken in groups and each class keeps the window of its lowest and of its highest probability in each
group, so peaks survive and the SVG stays small. Old results without windows give no plot (``""``).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from markupsafe import Markup, escape

from .labels import format_percent, label_colour, pretty_label

SVG_NS = "http://www.w3.org/2000/svg"
VIEW_W, VIEW_H = 1000, 100      # units of the nested viewBox the lines are drawn in
PLOT_TOP, PLOT_H = 10, 120      # px: the plot area's top and height
AXIS_GAP = 16                   # px: baseline of the time labels below the plot area
LEGEND_GAP = 36                 # px: first legend row below the plot area
LEGEND_ROW = 18                 # px between legend rows
LEGEND_COLUMNS = 2              # fits the class names on a 390 px wide phone
FONT_SIZE = 12
MUTED, GRID, AXIS = "#57606a", "#d0d7de", "#8c959f"
MAX_POINTS = 240                # most points of one class's lines before windows are grouped
_GAP_TOLERANCE_S = 1e-3         # times are stored rounded to 1 ms
_NICE_STEPS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def _num(value: float) -> str:
    """A coordinate rounded to one decimal, without a trailing ".0" ("12.5", "100", never "-0")."""
    text = f"{round(float(value), 1):.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _attr(value: Any) -> str:
    return str(escape(str(value)))


def _tick_step(duration: float, max_ticks: int = 6) -> float:
    for step in _NICE_STEPS_S:
        if duration / step <= max_ticks - 1 + 1e-9:
            return float(step)
    return float(math.ceil(duration / (max_ticks - 1)))


def _tick_label(t: float, step: float, duration: float) -> str:
    if duration < 60:
        return f"{t:.1f} s" if step < 1 else f"{t:.0f} s"
    total = int(round(t))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _window_probs(window: dict, classes: Sequence[str]) -> list[float] | None:
    """A window's probabilities in class order, clamped to [0, 1]; None when missing or malformed."""
    probs = window.get("probabilities")
    if isinstance(probs, dict):
        probs = [probs.get(c) for c in classes]
    if not isinstance(probs, (list, tuple)) or len(probs) != len(classes):
        return None
    try:
        values = [float(p) for p in probs]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return [min(1.0, max(0.0, v)) for v in values]


def _windows(person: dict, classes: Sequence[str]) -> list[tuple[float, float, list[float]]]:
    """(start_s, end_s, probabilities) of the person's usable windows, by start time."""
    out = []
    for w in person.get("windows") or []:
        if not isinstance(w, dict):
            continue
        probs = _window_probs(w, classes)
        try:
            start = float(w.get("start_s"))
            end = float(w.get("end_s"))
        except (TypeError, ValueError):
            continue
        if probs is None or not (math.isfinite(start) and math.isfinite(end)):
            continue
        out.append((start, max(start, end), probs))
    out.sort(key=lambda w: (w[0], w[1]))
    return out


def _runs(windows: list[tuple[float, float, list[float]]]) -> list[list[tuple[float, float, list[float]]]]:
    """Stretches of windows that overlap or touch."""
    runs: list[list] = []
    reach = -math.inf
    for w in windows:
        if not runs or w[0] > reach + _GAP_TOLERANCE_S:
            runs.append([])
        runs[-1].append(w)
        reach = max(reach, w[1])
    return runs


def class_points(windows: list[tuple[float, float, list[float]]], n_classes: int,
                 max_points: int = MAX_POINTS) -> list[list[list[tuple[float, float]]]]:
    """Per class, its lines: lists of (time_s, probability) points, one list per stretch of windows."""
    total = len(windows)
    group = max(1, math.ceil(total / max(1, max_points // 2))) if total > max_points else 1
    lines: list[list[list[tuple[float, float]]]] = [[] for _ in range(n_classes)]
    for run in _runs(windows):
        if len(run) == 1:
            start, end, probs = run[0]
            for c in range(n_classes):
                lines[c].append([(start, probs[c]), (end, probs[c])])
            continue
        centres = [((s + e) / 2.0, p) for s, e, p in run]
        for c in range(n_classes):
            if group == 1:
                points = [(t, p[c]) for t, p in centres]
            else:
                points = []
                for i in range(0, len(centres), group):
                    chunk = centres[i:i + group]
                    lo = min(range(len(chunk)), key=lambda k: (chunk[k][1][c], k))
                    hi = max(range(len(chunk)), key=lambda k: (chunk[k][1][c], -k))
                    for k in sorted({lo, hi}):
                        points.append((chunk[k][0], chunk[k][1][c]))
            lines[c].append(points)
    return lines


def _legend(classes: Sequence[str], top: float) -> Iterable[str]:
    """Column by column (the long "Waving ..." names land in the last column, which may overhang)."""
    width = 100 / LEGEND_COLUMNS
    rows = math.ceil(len(classes) / LEGEND_COLUMNS)
    for i, name in enumerate(classes):
        col, row = i // rows, i % rows
        colour = _attr(label_colour(name))
        yield (f'<svg x="{_num(col * width)}%" y="{_num(top + row * LEGEND_ROW)}" overflow="visible">'
               f'<line x1="0" y1="0" x2="12" y2="0" stroke="{colour}" stroke-width="3"/>'
               f'<text x="16" y="0" dy="0.35em" fill="currentColor">'
               f'{escape(pretty_label(name))}</text></svg>')


def probability_svg(person: dict[str, Any], classes: Sequence[str], duration: float,
                    threshold: float | None = None, *, max_points: int = MAX_POINTS) -> Markup:
    """The SVG plot of one person's window probabilities over 0..``duration`` seconds (``""`` when the
    person has no usable windows). ``classes`` is ``result["classes"]``; ``threshold`` the result's
    ``params.uncertain_threshold``, drawn as a dashed line when given."""
    classes = [str(c) for c in classes or ()]
    windows = _windows(person or {}, classes) if classes else []
    try:
        threshold = float(threshold) if threshold is not None else None
    except (TypeError, ValueError):
        threshold = None
    if threshold is not None and not 0.0 < threshold < 1.0:  # also NaN
        threshold = None
    if not windows:
        return Markup("")
    duration = float(duration) if duration and float(duration) > 0 else max(w[1] for w in windows) or 1.0
    track = person.get("track_id")
    who = f"person {track}" if track is not None else "this person"
    title = f"Class probabilities of {who} over time"
    first, last = windows[0][0], max(w[1] for w in windows)
    desc = (f"One line per action: the probability the model gave it in each of {len(windows)} classification "
            f"window{'s' if len(windows) != 1 else ''}, from {first:.1f} s to {last:.1f} s"
            + (f"; actions below {format_percent(threshold)} are shown as uncertain." if threshold is not None
               else "."))
    bottom = PLOT_TOP + PLOT_H
    rows = math.ceil(len(classes) / LEGEND_COLUMNS)
    height = bottom + LEGEND_GAP + (rows - 1) * LEGEND_ROW + 10

    def py(p: float) -> float:  # probability -> px from the top of the SVG
        return PLOT_TOP + (1.0 - p) * PLOT_H

    parts = [
        f'<svg xmlns="{SVG_NS}" class="prob-plot" width="100%" height="{height}" overflow="visible" '
        f'role="img" aria-label="{_attr(title)}" font-size="{FONT_SIZE}">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
        f'<g fill="{MUTED}">',
    ]
    # probability gridlines and their labels (left of the plot area)
    for p in (1.0, 0.5, 0.0):
        y = _num(py(p))
        stroke = AXIS if p == 0.0 else GRID
        parts.append(f'<line x1="0" y1="{y}" x2="100%" y2="{y}" stroke="{stroke}" stroke-width="1"/>')
        parts.append(f'<text x="-6" y="{y}" dy="0.35em" text-anchor="end">{escape(format_percent(p))}</text>')
    if threshold is not None:
        y = py(threshold)
        label = f"uncertain below {format_percent(threshold)}"
        parts.append(f'<line x1="0" y1="{_num(y)}" x2="100%" y2="{_num(y)}" stroke="{MUTED}" stroke-width="1" '
                     f'stroke-dasharray="4 3" class="threshold"/>')
        parts.append(f'<text x="100%" y="{_num(y - 4)}" text-anchor="end" stroke="#ffffff" stroke-width="3" '
                     f'paint-order="stroke">{escape(label)}</text>')
    # time ticks, over the same 0..duration as the timeline
    step = _tick_step(duration)
    for i in range(int(duration / step + 1e-9) + 1):
        t = i * step
        pct = 100.0 * t / duration
        anchor = "start" if pct < 4 else ("end" if pct > 96 else "middle")
        x = f"{_num(pct)}%"
        parts.append(f'<line x1="{x}" y1="{PLOT_TOP}" x2="{x}" y2="{bottom + 4}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{x}" y="{bottom + AXIS_GAP}" text-anchor="{anchor}">'
                     f"{escape(_tick_label(t, step, duration))}</text>")
    parts.append("</g>")
    # the lines
    parts.append(f'<svg x="0" y="{PLOT_TOP}" width="100%" height="{PLOT_H}" viewBox="0 0 {VIEW_W} {VIEW_H}" '
                 f'preserveAspectRatio="none" overflow="visible">')
    for c, lines in enumerate(class_points(windows, len(classes), max_points)):
        name = classes[c]
        parts.append(f'<g class="series" data-class="{_attr(name)}" fill="none" stroke="{_attr(label_colour(name))}" '
                     f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round">'
                     f"<title>{escape(pretty_label(name))}</title>")
        for points in lines:
            coords = " ".join(
                f"{_num(min(VIEW_W, max(0.0, t / duration * VIEW_W)))},{_num((1.0 - p) * VIEW_H)}" for t, p in points)
            parts.append(f'<polyline vector-effect="non-scaling-stroke" points="{coords}"/>')
        parts.append("</g>")
    parts.append("</svg>")
    parts.append(f'<g class="plot-legend">{"".join(_legend(classes, bottom + LEGEND_GAP))}</g>')
    parts.append("</svg>")
    return Markup("".join(parts))
