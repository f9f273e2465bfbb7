"""How the action labels are shown to people: names, colours (colour-blind safe) and percentages. The reports
(:mod:`har.reports`), the probability plots (:mod:`har.plots`) and the web pages' filters all use these, from here."""
from __future__ import annotations

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
    "too_short": "Too short to classify",
    "no_person": "No person",
}


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
