"""Downloadable reports for a finished job: JSON, CSV and a standalone HTML page.

The functions here are pure (a job in, text out) so the web app can render a report on demand,
and :func:`render_reports` writes all three into the job's storage directory for the worker's
report task.

Formats
-------
``report.json``
    The result document (``docs/contracts.md``) unchanged at the top level, plus:
    ``report`` (format version, generation time), ``job`` (id, status, times, params, timings,
    model names), ``source`` (the uploaded file: name, sha256, size, container, codec, fps,
    frame count, size, rotation, duration) and ``timings`` (seconds per stage).

``report.csv``
    One header line, then for every person one ``person`` row (the overall label of the track)
    followed by one ``segment`` row per stretch of its timeline, ordered by start time.
    Columns, in order:

    ========== ==============================================================================
    job_id     the job's id
    track_id   the person's track id (as drawn on the annotated video)
    row_type   ``person`` (whole track, overall label) or ``segment`` (one timeline stretch)
    label      class name (``BOXING``, ...) or ``uncertain``
    start_s    start, seconds from the beginning of the video (3 decimals)
    end_s      end, seconds (3 decimals)
    duration_s end_s - start_s (3 decimals)
    confidence probability in [0, 1] (4 decimals)
    frames     sampled frames in the track (``person`` rows only; empty for segments)
    ========== ==============================================================================

    A video without any person gives the header line only.

``report.html``
    A single self-contained page (inline CSS and SVG, no external assets): summary, one
    timeline per person, per-person tables of segments and class probabilities, the models
    used and the stage timings.
"""
from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, select_autoescape

REPORT_FORMAT = "har.report/1"

CLASS_NAMES = ("JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS")

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
LABEL_COLOURS = {
    "JUMPING": "#E69F00",
    "JUMPING_JACKS": "#56B4E9",
    "BOXING": "#009E73",
    "WAVING_2HANDS": "#F0E442",
    "WAVING_1HAND": "#0072B2",
    "CLAPPING_HANDS": "#D55E00",
    "uncertain": "#9E9E9E",
}
UNKNOWN_COLOUR = "#CC79A7"

PRETTY_LABELS = {
    "JUMPING": "Jumping",
    "JUMPING_JACKS": "Jumping jacks",
    "BOXING": "Boxing",
    "WAVING_2HANDS": "Waving two hands",
    "WAVING_1HAND": "Waving one hand",
    "CLAPPING_HANDS": "Clapping",
    "uncertain": "Uncertain",
    "no_person": "No person",
}

CSV_COLUMNS = ("job_id", "track_id", "row_type", "label", "start_s", "end_s", "duration_s", "confidence", "frames")

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
FILENAMES = {"json": "report.json", "csv": "report.csv", "html": "report.html"}


# --------------------------------------------------------------------------- formatting helpers
def format_percent(value: float | None) -> str:
    """A probability as a whole percentage for people: 0.97 -> "97 %"; None -> "–"."""
    if value is None:
        return "–"
    pct = max(0.0, min(1.0, float(value))) * 100.0
    return f"{pct:.0f} %"


def pretty_label(label: str | None) -> str:
    if not label:
        return "–"
    return PRETTY_LABELS.get(label, label.replace("_", " ").capitalize())


def label_colour(label: str | None) -> str:
    return LABEL_COLOURS.get(label or "", UNKNOWN_COLOUR)


def text_colour_on(label: str | None) -> str:
    """Black or white text, whichever reads better on the label's colour."""
    hex_ = label_colour(label).lstrip("#")
    r, g, b = (int(hex_[i:i + 2], 16) / 255 for i in (0, 2, 4))

    def lin(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    return "#000000" if lum > 0.179 else "#FFFFFF"


def timing_name(key: str) -> str:
    """A timings key for people: "pose_wait_s" -> "pose wait"."""
    key = str(key)
    if key.endswith("_s"):
        key = key[:-2]
    return key.replace("_", " ")


def format_seconds(value: float | None) -> str:
    """Seconds as m:ss.s (or h:mm:ss for long videos)."""
    if value is None:
        return "–"
    value = max(0.0, float(value))
    minutes, seconds = divmod(value, 60.0)
    if minutes >= 60:
        hours, minutes = divmod(int(minutes), 60)
        return f"{hours}:{minutes:02d}:{seconds:04.1f}"
    return f"{int(minutes)}:{seconds:04.1f}"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- timeline geometry
def timeline_duration(result: dict[str, Any] | None, fallback: float | None = None) -> float:
    """The length the timelines are drawn against: the video's duration (or the last end)."""
    result = result or {}
    duration = float((result.get("video") or {}).get("duration_s") or fallback or 0.0)
    for person in result.get("persons") or []:
        duration = max(duration, float(person.get("end_s") or 0.0))
        for seg in person.get("segments") or []:
            duration = max(duration, float(seg.get("end_s") or 0.0))
    return duration if duration > 0 else 1.0


def timeline_rows(result: dict[str, Any] | None, fallback_duration: float | None = None) -> list[dict[str, Any]]:
    """Per person, the segments as percentages of the timeline width (for CSS or SVG)."""
    duration = timeline_duration(result, fallback_duration)
    rows = []
    for person in (result or {}).get("persons") or []:
        segs = []
        for seg in sorted(person.get("segments") or [], key=lambda s: float(s.get("start_s") or 0.0)):
            start = max(0.0, float(seg.get("start_s") or 0.0))
            end = max(start, float(seg.get("end_s") or start))
            segs.append({
                **seg,
                "left_pct": round(100.0 * start / duration, 3),
                "width_pct": round(max(0.25, 100.0 * (end - start) / duration), 3),
                "colour": label_colour(seg.get("label")),
                "text_colour": text_colour_on(seg.get("label")),
                "pretty": pretty_label(seg.get("label")),
                "percent": format_percent(seg.get("confidence")),
            })
        rows.append({
            "person": person,
            "track_id": person.get("track_id"),
            "segments": segs,
            "track_left_pct": round(100.0 * float(person.get("start_s") or 0.0) / duration, 3),
            "track_width_pct": round(
                100.0 * max(0.0, float(person.get("end_s") or 0.0) - float(person.get("start_s") or 0.0)) / duration, 3
            ),
        })
    return rows


def legend(result: dict[str, Any] | None) -> list[dict[str, str]]:
    """The labels to explain: every class of the model, plus "uncertain" when it occurs."""
    result = result or {}
    classes = list(result.get("classes") or CLASS_NAMES)
    used = {seg.get("label") for p in result.get("persons") or [] for seg in p.get("segments") or []}
    used |= {p.get("label") for p in result.get("persons") or []}
    labels = classes + [lab for lab in sorted(x for x in used if x and x not in classes)]
    return [{"label": lab, "pretty": pretty_label(lab), "colour": label_colour(lab)} for lab in labels]


# --------------------------------------------------------------------------- JSON
def _source(video) -> dict[str, Any] | None:
    if video is None:
        return None
    return {
        "id": getattr(video, "id", None),
        "original_filename": video.original_filename,
        "sha256": video.sha256,
        "size_bytes": video.size_bytes,
        "container": video.container,
        "codec": video.codec,
        "duration_s": video.duration_s,
        "fps": video.fps,
        "frame_count": video.frame_count,
        "width": video.width,
        "height": video.height,
        "rotation_deg": video.rotation_deg,
    }


def report_document(job, generated_at: datetime | None = None) -> dict[str, Any]:
    """The report.json document for ``job`` (which must have a result)."""
    result = dict(job.result or {})
    doc: dict[str, Any] = dict(result)
    doc["report"] = {
        "format": REPORT_FORMAT,
        "generated_at": _iso(generated_at or datetime.now(timezone.utc)),
    }
    doc["job"] = {
        "id": job.id,
        "status": job.status,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "params": dict(job.params or {}),
        "timings": dict(job.timings or {}),
        "pose_model": job.pose_model,
        "action_model": job.action_model,
        "overall_label": job.overall_label,
        "overall_confidence": job.overall_confidence,
        "persons": job.persons,
    }
    doc["source"] = _source(getattr(job, "video", None))
    doc["timings"] = dict(job.timings or {})
    doc.setdefault("models", {})
    return doc


def report_json(job, generated_at: datetime | None = None) -> str:
    return json.dumps(report_document(job, generated_at), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


# --------------------------------------------------------------------------- CSV
def _f(value, digits: int) -> str:
    if value is None or value == "":
        return ""
    return f"{float(value):.{digits}f}"


def report_rows(job) -> list[dict[str, str]]:
    """The CSV rows as dictionaries keyed by :data:`CSV_COLUMNS` (strings, as written)."""
    rows = []
    for person in (job.result or {}).get("persons") or []:
        tid = person.get("track_id")
        start, end = person.get("start_s"), person.get("end_s")
        rows.append({
            "job_id": job.id,
            "track_id": str(tid),
            "row_type": "person",
            "label": person.get("label") or "",
            "start_s": _f(start, 3),
            "end_s": _f(end, 3),
            "duration_s": _f(None if start is None or end is None else float(end) - float(start), 3),
            "confidence": _f(person.get("confidence"), 4),
            "frames": "" if person.get("frames") is None else str(int(person["frames"])),
        })
        for seg in sorted(person.get("segments") or [], key=lambda s: float(s.get("start_s") or 0.0)):
            s, e = seg.get("start_s"), seg.get("end_s")
            rows.append({
                "job_id": job.id,
                "track_id": str(tid),
                "row_type": "segment",
                "label": seg.get("label") or "",
                "start_s": _f(s, 3),
                "end_s": _f(e, 3),
                "duration_s": _f(None if s is None or e is None else float(e) - float(s), 3),
                "confidence": _f(seg.get("confidence"), 4),
                "frames": "",
            })
    return rows


def report_csv(job) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(report_rows(job))
    return buf.getvalue()


# --------------------------------------------------------------------------- HTML
_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Action report – {{ source.original_filename if source else job.id }}</title>
<style>
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--accent:#0b5cad}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0}
main{max-width:1000px;margin:0 auto;padding:24px 16px 48px}
h1{font-size:1.6rem;margin:0 0 4px}h2{font-size:1.25rem;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:1.05rem;margin:24px 0 8px}
.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:16px 0}
.card{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:1.2rem}
table{border-collapse:collapse;width:100%;margin:8px 0 16px;font-size:.93rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft)}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:-1px;margin-right:6px;border:1px solid rgba(0,0,0,.25)}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:8px 0;padding:0;list-style:none;font-size:.9rem}
.timeline{margin:8px 0 4px}
.tl-row{display:grid;grid-template-columns:110px 1fr;gap:8px;align-items:center;margin:6px 0}
.tl-name{font-weight:600;font-size:.9rem}
svg.tl{width:100%;height:28px;display:block}
.axis{display:grid;grid-template-columns:110px 1fr;gap:8px;font-size:.8rem;color:var(--muted)}
.axis div:last-child{display:flex;justify-content:space-between}
.bar{height:10px;background:var(--soft);border:1px solid var(--line);border-radius:5px;overflow:hidden;min-width:80px}
.bar i{display:block;height:100%;background:var(--accent)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85rem;font-weight:600}
footer{margin-top:40px;font-size:.85rem;color:var(--muted)}
@media print{main{max-width:none}}
</style>
</head>
<body>
<main>
<h1>Human action report</h1>
<p class="muted">{{ source.original_filename if source else "" }} · job <code>{{ job.id }}</code>{% if job.finished_at %} · finished {{ job.finished_at.replace("T", " ")[:19] }} UTC{% endif %}</p>

<section aria-labelledby="summary">
<h2 id="summary">Summary</h2>
{% if doc.status == "no_person" %}
<p><strong>No person was found in this video</strong> long enough to recognise an action.</p>
{% endif %}
<div class="cards">
  <div class="card"><span class="muted">People</span><b>{{ persons|length }}</b></div>
  <div class="card"><span class="muted">Main action</span><b>{{ pretty(job.overall_label) }}</b></div>
  <div class="card"><span class="muted">Confidence</span><b>{{ pct(job.overall_confidence) if persons else "–" }}</b></div>
  <div class="card"><span class="muted">Duration</span><b>{{ secs(duration) }}</b></div>
</div>
{% if source %}
<table aria-label="Video">
<tr><th scope="row">File</th><td>{{ source.original_filename }} ({{ bytes(source.size_bytes) }}, {{ source.container }}{% if source.codec %}, {{ source.codec }}{% endif %})</td></tr>
<tr><th scope="row">Frames</th><td>{{ source.width }}×{{ source.height }}, {{ "%.2f"|format(source.fps or 0) }} fps, {{ source.frame_count }} frames{% if source.rotation_deg %}, rotated {{ source.rotation_deg }}°{% endif %}</td></tr>
{% if video.sampled_fps %}<tr><th scope="row">Analysed</th><td>{{ video.frames_sampled }} frames sampled at {{ "%.1f"|format(video.sampled_fps) }} fps</td></tr>{% endif %}
<tr><th scope="row">SHA-256</th><td><code>{{ source.sha256 }}</code></td></tr>
</table>
{% endif %}
</section>

{% if rows %}
<section aria-labelledby="timelines">
<h2 id="timelines">Timelines</h2>
<ul class="legend" aria-label="Legend">
{% for item in legend_items %}<li><span class="swatch" style="background:{{ item.colour }}"></span>{{ item.pretty }}</li>{% endfor %}
</ul>
<div class="timeline">
{% for row in rows %}
<div class="tl-row">
  <div class="tl-name">Person {{ row.track_id }}</div>
  <svg class="tl" viewBox="0 0 1000 28" preserveAspectRatio="none" role="img" aria-label="Timeline of person {{ row.track_id }}">
    <rect x="0" y="0" width="1000" height="28" fill="#f6f8fa" stroke="#d0d7de"/>
    <rect x="{{ row.track_left_pct * 10 }}" y="11" width="{{ row.track_width_pct * 10 }}" height="6" fill="#d0d7de"/>
    {% for seg in row.segments %}<rect x="{{ seg.left_pct * 10 }}" y="2" width="{{ seg.width_pct * 10 }}" height="24" fill="{{ seg.colour }}"><title>{{ seg.pretty }} {{ secs(seg.start_s) }}–{{ secs(seg.end_s) }} ({{ seg.percent }})</title></rect>
    {% endfor %}
  </svg>
</div>
{% endfor %}
<div class="axis"><div></div><div><span>0:00.0</span><span>{{ secs(duration / 2) }}</span><span>{{ secs(duration) }}</span></div></div>
</div>
</section>

<section aria-labelledby="people">
<h2 id="people">People</h2>
{% for row in rows %}{% set p = row.person %}
<h3>Person {{ p.track_id }}: <span class="swatch" style="background:{{ colour(p.label) }}"></span>{{ pretty(p.label) }} · {{ pct(p.confidence) }}</h3>
<p class="muted">Seen from {{ secs(p.start_s) }} to {{ secs(p.end_s) }} ({{ p.frames }} frames analysed).</p>
<table aria-label="Segments of person {{ p.track_id }}">
<thead><tr><th scope="col">Action</th><th scope="col" class="num">Start</th><th scope="col" class="num">End</th><th scope="col" class="num">Duration</th><th scope="col" class="num">Confidence</th></tr></thead>
<tbody>
{% for seg in row.segments %}<tr><td><span class="swatch" style="background:{{ seg.colour }}"></span>{{ seg.pretty }}</td><td class="num">{{ secs(seg.start_s) }}</td><td class="num">{{ secs(seg.end_s) }}</td><td class="num">{{ "%.1f"|format(seg.end_s - seg.start_s) }} s</td><td class="num">{{ seg.percent }}</td></tr>
{% endfor %}
</tbody>
</table>
{% if p.probabilities %}
<table aria-label="Class probabilities of person {{ p.track_id }}">
<thead><tr><th scope="col">Class</th><th scope="col" class="num">Probability</th><th scope="col" style="width:45%"><span class="muted">share</span></th></tr></thead>
<tbody>
{% for name, prob in p.probabilities|dictsort(by="value", reverse=true) %}<tr><td>{{ pretty(name) }}</td><td class="num">{{ pct(prob) }}</td><td><div class="bar"><i style="width:{{ "%.1f"|format(100 * prob) }}%"></i></div></td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
{% endfor %}
</section>
{% endif %}

{% if short_tracks %}
<section aria-labelledby="short">
<h2 id="short">Short tracks (not classified)</h2>
<table><thead><tr><th scope="col">Track</th><th scope="col" class="num">Start</th><th scope="col" class="num">End</th><th scope="col" class="num">Frames</th></tr></thead><tbody>
{% for t in short_tracks %}<tr><td>{{ t.track_id }}</td><td class="num">{{ secs(t.start_s) }}</td><td class="num">{{ secs(t.end_s) }}</td><td class="num">{{ t.frames }}</td></tr>
{% endfor %}</tbody></table>
</section>
{% endif %}

<section aria-labelledby="models">
<h2 id="models">Models and settings</h2>
<table>
<thead><tr><th scope="col">Stage</th><th scope="col">Model</th><th scope="col">Version</th><th scope="col">SHA-256</th></tr></thead>
<tbody>
{% for stage, m in models|dictsort %}<tr><td>{{ stage }}</td><td>{{ m.name }}</td><td>{{ m.version }}</td><td><code>{{ (m.sha256 or "")[:16] }}</code></td></tr>
{% endfor %}
</tbody></table>
{% if params %}
<table aria-label="Parameters"><tbody>
{% for k, v in params|dictsort %}<tr><th scope="row">{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</tbody></table>
{% endif %}
</section>

{% if timings %}
<section aria-labelledby="timings">
<h2 id="timings">Timings</h2>
<table><thead><tr><th scope="col">Stage</th><th scope="col" class="num">Seconds</th></tr></thead><tbody>
{% for k, v in timings|dictsort %}<tr><td>{{ timing(k) }}</td><td class="num">{% if v is number %}{{ "%.2f"|format(v) }}{% else %}{{ v }}{% endif %}</td></tr>{% endfor %}
</tbody></table>
</section>
{% endif %}

<footer>Generated {{ generated_at }}. Confidences are the model's probabilities, shown as percentages.</footer>
</main>
</body>
</html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=False)
_env.globals.update(
    pct=format_percent, pretty=pretty_label, colour=label_colour, secs=format_seconds, bytes=format_bytes,
    timing=timing_name,
)
_template = _env.from_string(_HTML)


def report_html(job, generated_at: datetime | None = None) -> str:
    doc = report_document(job, generated_at)
    result = job.result or {}
    source = doc.get("source")
    params = dict(result.get("params") or {})
    params.update({f"job.{k}": v for k, v in (job.params or {}).items()})
    return _template.render(
        doc=doc,
        job=doc["job"],
        source=source,
        video=result.get("video") or {},
        persons=result.get("persons") or [],
        rows=timeline_rows(result, source.get("duration_s") if source else None),
        legend_items=legend(result),
        duration=timeline_duration(result, source.get("duration_s") if source else None),
        short_tracks=result.get("short_tracks") or [],
        models=result.get("models") or {},
        params=params,
        timings=doc.get("timings") or {},
        generated_at=doc["report"]["generated_at"],
    )


RENDERERS = {"json": report_json, "csv": report_csv, "html": report_html}


def render_report(job, kind: str) -> str:
    """One report as text; ``kind`` is json, csv or html."""
    try:
        return RENDERERS[kind](job)
    except KeyError:
        raise ValueError(f"unknown report kind {kind!r}") from None


# --------------------------------------------------------------------------- files
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def _storage_root(storage) -> Path | None:
    for name in ("root", "base", "base_dir", "root_dir"):
        value = getattr(storage, name, None)
        if value is not None:
            return Path(value)
    return None


def render_reports(job, storage, kinds: Iterable[str] = ("json", "csv", "html")) -> list[tuple[str, str, str]]:
    """Write the reports into ``storage.job_dir(job.id)``.

    Returns ``[(kind, relative_path, media_type), ...]`` with paths relative to the storage root.
    Safe to run twice: files are replaced atomically.
    """
    job_dir = Path(storage.job_dir(job.id))
    root = _storage_root(storage)
    if not job_dir.is_absolute() and root is not None:
        rel_dir, job_dir = job_dir, root / job_dir
    else:
        rel_dir = job_dir.relative_to(root) if root is not None else job_dir
    out = []
    for kind in kinds:
        text = render_report(job, kind)
        _write_atomic(job_dir / FILENAMES[kind], text)
        out.append((kind, (rel_dir / FILENAMES[kind]).as_posix(), MEDIA_TYPES[kind]))
    return out

