"""Downloadable reports for a finished job: JSON, CSV and a standalone HTML page.

The functions here are pure (a job in, text out) so the web app can render a report on demand,
and :func:`write_reports` writes all three into the job's storage folder (local or S3) for the worker's
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
    timeline per person with the plot of its window probabilities under it (:mod:`har.plots`),
    per-person tables of segments and class probabilities, the models used and the stage timings.
"""
from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, FileSystemLoader, select_autoescape

from models.hashing import sha256_file

from .labels import (  # noqa: F401 (re-exported: the reports' names for them)
    LABEL_COLOURS,
    PRETTY_LABELS,
    UNKNOWN_COLOUR,
    format_percent,
    label_colour,
    pretty_label,
    text_colour_on,
)
from .plots import probability_svg

REPORT_FORMAT = "har.report/1"

CLASS_NAMES = ("JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS")

CSV_COLUMNS = ("job_id", "track_id", "row_type", "label", "start_s", "end_s", "duration_s", "confidence", "frames")

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
FILENAMES = {"json": "report.json", "csv": "report.csv", "html": "report.html"}


# --------------------------------------------------------------------------- formatting helpers
def timing_name(key: str) -> str:
    """A timings key for people: "pose_wait_s" -> "pose wait"."""
    key = str(key)
    if key.endswith("_s"):
        key = key[:-2]
    return key.replace("_", " ")


# Stage timings in the order a job goes through them (others follow, alphabetically).
TIMING_ORDER = ("queue_wait_s", "pose_wait_s", "pose_s", "pose_extract_s", "pose_cpu_s", "pose_decode_cpu_s",
                "classify_wait_s", "classify_s",
                "report_wait_s", "annotate_s", "report_s", "total_s", "video_s")


def timings_in_order(timings: dict | None) -> list[tuple[str, Any]]:
    """``timings`` as (key, value) pairs in stage order."""
    timings = timings or {}
    rank = {k: i for i, k in enumerate(TIMING_ORDER)}
    return sorted(timings.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


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
    """Per person, the segments as percentages of the timeline width (for CSS or SVG), and ``plot``: the
    SVG of the person's window probabilities over the same time range (``""`` for results without windows)."""
    duration = timeline_duration(result, fallback_duration)
    classes = list((result or {}).get("classes") or CLASS_NAMES)
    threshold = ((result or {}).get("params") or {}).get("uncertain_threshold")
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
            "plot": probability_svg(person, classes, duration, threshold),
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
    def row(track_id, row_type: str, item: dict, frames) -> dict:
        start, end = item.get("start_s"), item.get("end_s")
        return {
            "job_id": job.id,
            "track_id": str(track_id),
            "row_type": row_type,
            "label": item.get("label") or "",
            "start_s": _f(start, 3),
            "end_s": _f(end, 3),
            "duration_s": _f(None if start is None or end is None else float(end) - float(start), 3),
            "confidence": _f(item.get("confidence"), 4),
            "frames": "" if frames is None else str(int(frames)),
        }

    rows = []
    for person in (job.result or {}).get("persons") or []:
        tid = person.get("track_id")
        rows.append(row(tid, "person", person, person.get("frames")))
        for seg in sorted(person.get("segments") or [], key=lambda s: float(s.get("start_s") or 0.0)):
            rows.append(row(tid, "segment", seg, None))
    return rows


def report_csv(job) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(report_rows(job))
    return buf.getvalue()


# --------------------------------------------------------------------------- HTML
# The standalone report page: har/templates/report.html (no external assets).
_env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=False)
_env.filters["timings_in_order"] = timings_in_order
_env.globals.update(
    pct=format_percent, pretty=pretty_label, colour=label_colour, secs=format_seconds, bytes=format_bytes,
    timing=timing_name,
)
_template = _env.get_template("report.html")


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


def write_reports(job, storage, kinds: Iterable[str] = ("json", "csv", "html")) -> list[tuple[str, str, str, int, str]]:
    """Write the reports through ``storage`` into the job's folder (``jobs/<job id>/``).

    Returns ``[(kind, key, media_type, size_bytes, sha256), ...]``; keys are relative to the storage root (or
    bucket prefix). Safe to run twice: local files are replaced atomically, objects overwritten."""
    return store_reports(job.id, storage, {kind: render_report(job, kind) for kind in kinds})


def store_reports(job_id: str, storage, texts: dict[str, str]) -> list[tuple[str, str, str, int, str]]:
    """Store reports already rendered (``{kind: text}``, :func:`render_report`) as :func:`write_reports` does, so a
    worker can render them while it holds the job's row and store them (S3: upload) after letting go of it."""
    out = []
    with storage.job_output(job_id) as folder:  # local: jobs/<id>/ itself; S3: a temporary folder, then uploaded
        folder = Path(folder)
        for kind, text in texts.items():
            path = folder / FILENAMES[kind]
            _write_atomic(path, text)
            out.append((kind, storage.job_key(job_id, FILENAMES[kind]), MEDIA_TYPES[kind], path.stat().st_size,
                        sha256_file(path)))
    return out


def render_reports(job, storage, kinds: Iterable[str] = ("json", "csv", "html")) -> list[tuple[str, str, str]]:
    """Write the reports into the job's storage folder (:func:`write_reports`).

    Returns ``[(kind, relative_path, media_type), ...]`` with paths relative to the storage root.
    Safe to run twice: files are replaced atomically.
    """
    return [(kind, key, media) for kind, key, media, _size, _sha in write_reports(job, storage, kinds)]
