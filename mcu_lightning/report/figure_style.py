"""How every figure of the package looks: one colour per series (split, MIA attack, headline metric, distance), and
each metric's better direction.

The palette is Okabe & Ito's colour-blind-safe set (Okabe and Ito, 2008, "Color Universal Design"): a split or an
attack has the same colour in every panel of every figure (``forget`` is always vermillion). Names outside the
table get a colour from the rest of the palette chosen by a stable hash of the name, so they too never change.

``direction`` is the unlearning reading of a metric (``core/direction.py``): ``higher``, ``lower``,
``zero`` (closer to 0 is better: privleak) or ``none`` (holdout values describe the data, not the model's
forgetting). The figures read the suites' own statement (``MetricSuite.direction``, recorded per metric in
``barrier_summary.json``) when they are given it; ``DIRECTIONS`` here is the fallback for files written without one
(e.g. a CSV of an older run), and a test keeps the two in agreement on every metric the suites report.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Mapping

from mcu_lightning.core.direction import arrow, toward
from mcu_lightning.core.names import MODEL_DIR

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")

#: A split or MIA attack -> its colour in every figure.
COLORS: dict[str, str] = {
    "forget": "#D55E00",  # vermillion
    "retain": "#0072B2",  # blue
    "holdout": "#7F7F7F",  # grey: non-members, a reference rather than a goal
    "real_authors": "#009E73",  # bluish green
    "world_facts": "#CC79A7",  # reddish purple
    "test": "#009E73",
    "train": "#0072B2",
    "loss": "#E69F00",  # MIA attacks: orange, sky blue, black
    "zlib": "#56B4E9",
    "min_k": "#000000",
}
#: Every other series the package draws, from Paul Tol's muted colour-blind-safe set (Tol, 2021, "Colour
#: Schemes"), so that no two series of one panel share a colour: the headline metrics (alone in their panels, and
#: lines of the probes' recovery panels) and the distances a probe reports (``base``, ``end0``, ``end1``: the same
#: colour in the l2 and the cosine panel).
COLORS.update(
    {
        "forget_quality": "#882255",  # wine
        "model_utility": "#117733",  # green
        "base": "#332288",  # indigo
        "end0": "#44AA99",  # teal
        "end1": "#999933",  # olive
        "mia": "#000000",  # a suite's single MIA AUC (MU-Bench's), black as the Min-K% attack
    }
)
#: Colours for names outside the table (chosen by a stable hash of the name), each with a line style so that two
#: such names in one panel still differ when their colours collide.
_SPARE = ["#88CCEE", "#DDCC77", "#CC6677", "#AA4499", "#F0E442", "#661100"]
LINESTYLES = ("-", "--", ":", "-.")

#: Figure sizes and resolution: panels readable at print size, PNG at print resolution.
PANEL_INCHES = (3.0, 2.3)
PRINT_DPI = 300
LEGEND_FONT = 8
LABEL_FONT = 7

#: (metric, split or "*") -> direction; the first match wins (see :func:`direction`).
DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("*", "holdout", "none"),
    ("loss", "forget", "higher"),
    ("loss", "*", "lower"),
    ("prob", "forget", "lower"),
    ("rouge", "forget", "lower"),
    ("extraction_strength", "forget", "lower"),
    ("exact_memorization", "forget", "lower"),
    ("acc", "forget", "lower"),
    ("acc_gap", "*", "lower"),
    ("prob", "*", "higher"),
    ("rouge", "*", "higher"),
    ("extraction_strength", "*", "higher"),
    ("exact_memorization", "*", "higher"),
    ("truth_ratio", "*", "higher"),
    ("acc", "*", "higher"),
)
#: An MIA AUC read without an oracle: closer to a chance-level attack (a suite with an oracle states its AUC).
MIA_AUC_WITHOUT_ORACLE = toward(0.5)


def color(label: str) -> str:
    """The colour of a series (``forget``, ``min_k``, ``forget_quality``); any other label: a fixed spare colour."""
    if label in COLORS:
        return COLORS[label]
    return _SPARE[zlib.crc32(label.encode()) % len(_SPARE)]


def linestyle(label: str) -> str:
    """A series' line style: solid for every named series, a fixed one of :data:`LINESTYLES` for the others."""
    if label in COLORS:
        return "-"
    return LINESTYLES[(zlib.crc32(label.encode()) // len(_SPARE)) % len(LINESTYLES)]


#: Line styles and markers of the comparison figure's curves (in study order, with the colours), so that two
#: curves that overlap (a line and a SLERP between near-parallel endpoints) are both seen.
CURVE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "P"), (":", "X"), ("-.", "*"))


def direction(name: str) -> str:
    """``higher``, ``lower``, ``zero`` or ``none``: which way metric ``name`` is better when unlearning."""
    split, _, metric = name.rpartition("/")
    if not split:
        if name in ("forget_quality", "model_utility", "zrf", "unlearn_overall"):
            return "higher"
        if name.endswith("_gap"):  # distance to the oracle's value
            return "lower"
        if name.startswith("privleak"):
            return "zero"
        if name.startswith("mia_") and name.endswith("_auc"):
            return MIA_AUC_WITHOUT_ORACLE
        return "none"
    for table_metric, table_split, better in DIRECTIONS:
        if table_metric in ("*", metric) and table_split in ("*", split):
            return better
    return "none"


def direction_label(
    panel: str, names: Iterable[str], line_label: dict[str, str], directions: Mapping[str, str] | None = None
) -> str:
    """A panel's y label: the metric and its better direction, with the splits that read the other way.

    ``prob (↑ better; forget ↓)``; a panel whose lines have no direction gets the bare metric name. ``directions``:
    the suite's per metric (the fallback table above for the names it lacks).
    """
    directions = directions or {}
    by_direction: dict[str, list[str]] = {}
    for name in names:
        by_direction.setdefault(directions.get(name) or direction(name), []).append(line_label.get(name, name))
    by_direction.pop("none", None)
    if not by_direction:
        return panel
    # the direction most lines share; on a tie the one of the splits kept (forget is the usual exception)
    main = max(by_direction, key=lambda d: (len(by_direction[d]), "forget" not in by_direction[d]))
    exceptions = [f"{', '.join(labels)} {arrow(d)}" for d, labels in by_direction.items() if d != main]
    text = f"{panel} ({arrow(main)} better"
    return text + (f"; {'; '.join(exceptions)})" if exceptions else ")")


def model_name(path: str) -> str:
    """A model's short name from its path: a study's ``.../endpoints/npo/model`` is ``npo``."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p]
    if not parts:
        return str(path)
    return parts[-2] if parts[-1] in (MODEL_DIR, "adapter") and len(parts) > 1 else parts[-1]


def curve_title(name: str, endpoints: Iterable[str] | None) -> str:
    """``graddiff-npo: graddiff (t=0) → npo (t=1)``, or the bare name when the endpoints are unknown."""
    ends = [model_name(e) for e in endpoints or []]
    return f"{name}: {ends[0]} (t=0) → {ends[1]} (t=1)" if len(ends) == 2 else name


def drawable(text: str) -> tuple[str, list[str]]:
    """``text`` as a figure can draw it, and the font families to draw it with.

    Matplotlib's default font (DejaVu Sans) has no CJK glyphs: a curve named ``遗忘`` would be drawn as empty boxes
    with a "Glyph ... missing" warning. Characters the default font lacks are drawn with the first installed font
    that has them (e.g. Noto Sans CJK, passed to matplotlib as a fallback family); a character no installed font
    has is written as its code point (``\\u9057``), so the title still tells the curves apart.
    """
    fonts = _fonts()
    default_family, default_chars = fonts[0]
    families = [default_family]
    out = []
    for char in text:
        code = ord(char)
        if code in default_chars or char.isspace():
            out.append(char)
            continue
        family = next((name for name, chars in fonts[1:] if code in chars), None)
        if family is None:
            out.append(char.encode("unicode_escape").decode("ascii"))
            continue
        if family not in families:
            families.append(family)
        out.append(char)
    return "".join(out), families


#: Fonts that map every character to a box ("Last Resort"): they would "have" every glyph and draw none.
LAST_RESORT = "Last Resort"


@functools.cache
def _fonts() -> list[tuple[str, frozenset[int]]]:
    """``(family, code points)`` of the default sans-serif font, then of every other installed font."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    default = font_manager.findfont(font_manager.FontProperties())
    paths = [default, *sorted({entry.fname for entry in font_manager.fontManager.ttflist} - {default})]
    found = []
    for path in paths:
        try:
            font = FT2Font(path)
        except (OSError, RuntimeError, ValueError):  # a font file matplotlib cannot read: skip it
            continue
        if not font.family_name.startswith(LAST_RESORT):
            found.append((font.family_name, frozenset(font.get_charmap())))
    return found
