"""HTML pieces of the report: the page being assembled, embedded figures, tables, notices."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["SECTIONS", "Page", "missing", "table", "note"]

#: Report sections, in order: anchor id → heading.
SECTIONS: dict[str, str] = {
    "status": "Run status",
    "planted-truth": "Planted truth (synthetic data)",
    "encoding": "Encoding: R² and r per model",
    "significance": "Significant voxels",
    "noise-ceiling": "Noise ceiling",
    "rsa": "RSA across models",
    "task-similarity": "Brain-derived task similarity",
    "brain-maps": "Brain maps",
    "partition": "Variance partitioning and transfer",
    "provenance": "Data provenance",
    "config": "Configuration",
}


def png(fig: Figure) -> str:
    """The figure as an embedded PNG; ``bbox_inches="tight"`` keeps every label and colorbar inside."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


class Page:
    """Collects the sections' HTML; a figure that fails leaves a notice instead of the figure."""

    def __init__(self) -> None:
        self.sections: dict[str, list[str]] = {key: [] for key in SECTIONS}

    def add(self, section: str, *parts: str) -> None:
        self.sections[section].extend(parts)

    def figure(self, section: str, caption: str, draw: Callable[[], Figure]) -> None:
        try:
            fig = draw()
        except Exception as error:  # a figure's failure must not lose the rest of the report
            self.add(section, missing(f"figure '{caption}' failed: {type(error).__name__}: {error}"))
            return
        self.add(section, f"<figure>{png(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def missing(self, section: str, why: str) -> None:
        self.add(section, missing(why))

    def note(self, section: str, text: str) -> None:
        self.add(section, note(text))


def missing(why: str) -> str:
    return f'<p class="missing">Not available: {html.escape(why)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (float, np.floating)):
        return f"<td>{value:.{digits}g}</td>" if np.isfinite(value) else "<td>–</td>"
    if isinstance(value, str):
        return f'<td class="text">{html.escape(value)}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table(rows: list[dict[str, Any]], *, digits: int = 4) -> str:
    """An HTML table of ``rows`` (dicts with the same keys), inside a box that scrolls sideways when wide."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    first = {c: next((r[c] for r in rows if c in r), "") for c in columns}
    head = "".join(f'<th class="{"text" if isinstance(first[c], str) else ""}">{html.escape(str(c))}</th>' for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c, ""), digits) for c in columns) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'
