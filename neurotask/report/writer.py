"""One self-contained HTML report of a neurotask analysis (figures embedded, no network assets).

Sections (:data:`SECTIONS`): run status in pipeline order; on synthetic data, the planted truth
against every estimate; encoding scores (headline R² over significant voxels, per ROI, as a
fraction of the noise ceiling, and their distributions); significance; noise ceiling; RSA;
brain-derived task similarity (group matrix and the subjects' consistency); brain maps;
variance partitioning; provenance; the config. A section whose data are missing says so (and
why, when the pipeline recorded a reason). Every figure comes from :mod:`neurotask.plotting`.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import xarray as xr

from neurotask._version import __version__
from neurotask.datasets import groundtruth_path, open_groundtruth
from neurotask.report import scores, sections, truth
from neurotask.report._html import SECTIONS, Page
from neurotask.stores.layout import open_outputs

__all__ = ["write", "SECTIONS"]

_BUILDERS = (
    ("planted-truth", truth.section), ("encoding", scores.encoding), ("significance", scores.significance),
    ("noise-ceiling", scores.noise_ceiling), ("rsa", sections.rsa), ("task-similarity", sections.task_similarity),
    ("brain-maps", scores.brain_maps), ("partition", sections.partition), ("provenance", sections.provenance),
)


def _attach_groundtruth(data: dict[str, Any], config: Mapping[str, Any]) -> None:
    """Attach each subject's planted ground truth when the ingested tree (``config.ingest.root``) is synthetic."""
    ingest = config.get("ingest") or {}
    root = ingest.get("root")
    if root is None:
        data.setdefault("groundtruth_searched", "the responses were not ingested from a BOLD5000 tree by this run")
        return
    searched = []
    for subject, entry in (data.get("subjects") or {}).items():
        path = groundtruth_path(root, subject, ingest.get("release", 2))
        searched.append(str(path))
        if path.exists() and "groundtruth" not in entry:
            entry["groundtruth"] = open_groundtruth(root, subject, ingest.get("release", 2))
    data.setdefault("groundtruth_searched", "no synthetic ground truth at " + ", ".join(searched) if searched else "no subjects")


def _collect(results: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(results, Mapping):
        return open_outputs(results)
    data = dict(results)
    rsa = data.get("rsa")
    if isinstance(rsa, Mapping) and not isinstance(rsa, xr.Dataset):  # {subset name: similarity}
        rsa = xr.concat([s.reset_coords(drop=True).expand_dims(subset=[n]) for n, s in rsa.items()], "subset")
    if isinstance(rsa, xr.DataArray):
        rsa = (rsa if "subset" in rsa.dims else rsa.reset_coords(drop=True).expand_dims(subset=["all"])).to_dataset(name="similarity")
    if rsa is not None:
        data["rsa"] = rsa
    if isinstance(data.get("task_similarity"), xr.DataArray):
        data["task_similarity"] = xr.Dataset({"mean": data["task_similarity"].reset_coords(drop=True)})
    data["subjects"] = {s: dict(entry) for s, entry in (data.get("subjects") or {}).items()}  # not the caller's dicts
    return data


def write(
    results: str | os.PathLike[str] | Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    title: str | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Write the analysis report as one self-contained HTML file.

    Parameters
    ----------
    results : path or mapping
        A pipeline output directory (read with :func:`neurotask.stores.layout.open_outputs`), or
        a mapping of the same shape: ``rsa`` (a ``(model, model_)`` similarity, a dict of them by
        image subset, or a Dataset with ``similarity (subset, model, model_)``),
        ``task_similarity`` (``(model, model_)``, or a Dataset with ``mean`` and
        ``similarity (subject, model, model_)``), ``features``, ``subjects`` mapping each
        subject to ``encoding``, ``permutation``, ``partition``, ``noise_ceiling``,
        ``responses``, ``groundtruth`` (synthetic data); optional ``ledger`` and ``config``.
        A config whose ``ingest.root`` is a synthetic tree brings its ground truth.
    path : path
        The HTML file to write.
    config : mapping, optional
        The analysis configuration, shown in full (default: the one found in ``results``).
    title : str, optional
        Page title (default: the config's ``title``).
    labels : list of str, optional
        Notices shown at the top, e.g. ``["random-weight encoders"]`` (default: the config's).

    Returns
    -------
    pathlib.Path
        The written file: no external assets, figures as base64 PNG.

    Examples
    --------
    >>> nt.report.write("results/", "results/report.html")  # doctest: +SKIP
    """
    data = _collect(results)
    config = dict(config or data.get("config") or {})
    _attach_groundtruth(data, config)
    page = Page()
    sections.status(page, data)
    for key, build in _BUILDERS:
        try:
            build(page, data)
        except Exception as error:  # one broken section must not lose the report
            page.missing(key, f"this section failed: {type(error).__name__}: {error}")
    sections.config(page, config)
    labels = list(labels if labels is not None else config.get("labels", []))
    banner = "".join(f'<div class="banner"><strong>Note:</strong> {html.escape(label)}</div>' for label in labels)
    body = "".join(f'<section id="{key}"><h2>{html.escape(heading)}</h2>{"".join(page.sections[key])}</section>'
                   for key, heading in SECTIONS.items())
    nav = "".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading in SECTIONS.items())
    template = Template(resources.files("neurotask.report").joinpath("template.html").read_text(encoding="utf-8"))
    text = template.substitute(
        title=html.escape(title or config.get("title") or "neurotask report"), version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        out=html.escape(str(results) if not isinstance(results, Mapping) else "(objects)"),
        nav=nav, banner=banner, body=body,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
