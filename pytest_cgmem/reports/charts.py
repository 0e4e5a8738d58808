"""The one way the package draws charts: matplotlib, rendered to inline SVG.

matplotlib is the optional ``report`` extra. ``pyplot()`` raises ``MissingExtra`` where it
is not installed; ``timeline`` (for failure artifacts, written during a test run) says so
in the page instead.
"""

from __future__ import annotations

import html
import io
import re
import warnings
from typing import Any

from ..results.jsonio import visible
from ..units import MiB, format_size
from .diagnostics import Replay

OK, OVER, NONE = "#3b8f4f", "#c8372d", "#8a94a6"
_MAX_POINTS = 4000


class MissingExtra(RuntimeError):
    """matplotlib is not installed, or will not import (a bad ``MPLBACKEND``)."""


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra(
            "cgmem report needs matplotlib: pip install 'pytest-cgmem[report]'"
        ) from None
    except ValueError as exc:  # a setting it reads on import, such as MPLBACKEND=bogus
        said = str(exc).split(";")[0]  # not the list of every backend it has
        raise MissingExtra(
            f"cgmem report cannot import matplotlib ({said}); check MPLBACKEND and matplotlibrc"
        ) from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["font.size"] = 10
    import matplotlib.pyplot as plt

    return plt


def drawn(text: str) -> str:
    """``text`` (a node id, a label) as a chart draws it literally: a control character
    written out as ``visible`` writes it, and a ``$`` escaped, which matplotlib would
    otherwise take for the start of math (``$1 or $2`` drawn as italic math, ``${$`` an
    error). A label that starts with ``_``, which a legend leaves out, starts with a space."""
    text = visible(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def svg(plt: Any, fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (no metadata), and the figure closed.
    A character no font has is drawn as a box without a warning for each (a CJK or emoji
    node id)."""
    buffer = io.StringIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], flags=re.S)


def timeline(result: Replay) -> str:
    """Allocated bytes above the region's start after each event, the peak marked."""
    curve = list(result.curve)
    if not curve:
        return "<p>No allocation history was recorded.</p>"
    try:
        plt = pyplot()
    except MissingExtra as exc:
        return f"<p>No timeline: {html.escape(str(exc))}.</p>"
    if len(curve) > _MAX_POINTS:
        step = len(curve) / _MAX_POINTS
        picked = {int(i * step) for i in range(_MAX_POINTS)}
        keep = {curve.index(max(curve, key=lambda c: c[1])), len(curve) - 1}  # peak, end
        curve = [c for i, c in enumerate(curve) if i in picked or i in keep]
    xs = [0] + [i for i, _ in curve]
    ys = [0.0] + [v / MiB for _, v in curve]
    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.step(xs, ys, where="post", color="#2c7fb8", linewidth=1.2)
    if result.peak_index >= 0:
        ax.plot([result.peak_index], [result.peak / MiB], "o", color=OVER)
        ax.annotate(
            f"peak +{format_size(result.peak)}",
            (result.peak_index, result.peak / MiB),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_xlim(0, max(result.events, 1))
    ax.set_xlabel("event")
    ax.set_ylabel("MiB")
    ax.spines[["top", "right"]].set_visible(False)
    return svg(plt, fig)
