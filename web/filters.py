"""Jinja filters shared by the pages (same formatting as the reports)."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from markupsafe import Markup, escape

from har import labels, reports


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def inline_code(text: str | None) -> Markup:
    """Escape ``text`` and show `backticked` spans as <code> (OpenAPI descriptions)."""
    escaped = str(escape(text or ""))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def register_filters(app) -> None:
    app.jinja_env.filters.update(
        pct=labels.format_percent,
        pretty=labels.pretty_label,
        colour=labels.label_colour,
        text_colour=labels.text_colour_on,
        secs=reports.format_seconds,
        timing=reports.timing_name,
        timings_in_order=reports.timings_in_order,
        filesize=reports.format_bytes,
        dt=format_datetime,
        iso=iso,
        code=inline_code,
    )
