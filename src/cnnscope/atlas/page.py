"""How the atlas pages look: the per-map numbers a page shows and their legend, the tile scales,
the style sheet, and the frame and formatting every page shares.

Why apart from :mod:`.site`: the site decides which pages exist and what each shows; changing the
look (a column, a colour, a scale) should not mean reading the page logic, nor the reverse.
"""

from __future__ import annotations

import html
import math
import re

#: Per-map numbers shown on the pages, when the table has them: column, label, kind.
STATS: list[tuple[str, str, str]] = [
    ("top_activation", "top act.", "num"),
    ("mean_activation", "mean act.", "num"),
    ("zero_fraction", "zeros", "pct"),
    ("silent_on_data", "silent on data", "flag"),
    ("silent_to_noise", "silent to noise", "flag"),
    ("robustness", "robust&shy;ness", "num"),
    ("normalised_activation", "OIP ÷ top", "num"),
    ("path_unnatural", "path unnatural", "flag"),
    ("flagged", "flagged", "flag"),
]
#: What the columns mean, under every table.
LEGEND = (
    '<p class="lab">top act.: the map\'s maximum over positions on its best image; mean act.: over images and '
    "positions; zeros: fraction of exactly-zero activations; silent on data: never positive on the split; "
    "silent to noise: no gradient from any noise start; robustness: mean correlation of the OIPs from different "
    "noise restarts at the map's best wavelength; OIP ÷ top: the OIP's activation over the top exemplar's; path: "
    "correlation of the activations in each earlier layer inside the node's window, OIP vs exemplars / exemplars "
    "among themselves; path unnatural: the OIP less typical than every exemplar; flagged: unnatural path and far "
    "above any image.</p>"
)
#: Tile scales: each OIP and each exemplar crop is drawn at this many screen pixels per pixel.
SCALE_OIP = 2
SCALE_CROP = 2

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222;background:#fff}
a{color:#0645ad}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3;text-align:left}tr th:first-child{white-space:nowrap}
.t{position:relative;overflow:hidden;display:inline-block;
margin:1px;vertical-align:middle;background:#000}.t img{position:absolute;image-rendering:pixelated;max-width:none}
tr.flag th,tr.flag td{background:#fee}.strip{white-space:nowrap}.lab{color:#666;font-size:12px}
.bad{color:#c00;font-weight:bold}
.ck{display:inline-block;text-align:center;vertical-align:top;margin-right:2px;font-size:11px;color:#444}
"""


def slug(text: str) -> str:
    """``text`` as a file name that is also a safe relative link (layer and network names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def fmt(value: object, kind: str) -> str:
    """One cell of a per-map number of kind ``num``, ``pct`` or ``flag`` (:data:`STATS`); a dash
    where the table has no value (a map the stage did not reach)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "flag":
        return '<span class="bad">yes</span>' if bool(value) else "no"
    if kind == "pct":
        return f"{float(value):.0%}"  # type: ignore[arg-type]
    return f"{float(value):.3g}"  # type: ignore[arg-type]


def html_page(title: str, body: str, prefix: str) -> str:
    """A whole HTML page around ``body``, linking the shared style sheet ``prefix`` folders up."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{prefix}style.css"></head><body>\n{body}\n</body></html>\n'
    )
