"""The report's own figures: bar charts and tables' companions, and plain fallbacks.

The report draws with :mod:`neurotask.plotting` where it provides a figure; these small figures
cover what it does not (bars of R² per model) and stand in while a plotting function is missing.
Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no backend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

__all__ = ["bars", "heatmap", "dendrogram", "projections", "stacked_partition", "histogram"]


def _linkage(similarity: xr.DataArray) -> np.ndarray:
    distance = 1.0 - np.asarray(similarity.values, dtype=float)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)
    return hierarchy.linkage(squareform(np.clip(distance, 0, None), checks=False), method="average")


def heatmap(similarity: xr.DataArray, title: str) -> Figure:
    """Similarity matrix, rows and columns in dendrogram leaf order."""
    labels = [str(m) for m in similarity["model"].values]
    order = hierarchy.leaves_list(_linkage(similarity)) if len(labels) > 2 else np.arange(len(labels))
    values = np.asarray(similarity.values)[np.ix_(order, order)]
    size = 2.5 + 0.28 * len(labels)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(labels)), [labels[i] for i in order], rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), [labels[i] for i in order], fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label=similarity.attrs.get("long_name", "similarity"))
    fig.tight_layout()
    return fig


def dendrogram(similarity: xr.DataArray, title: str) -> Figure:
    """Average-linkage dendrogram on ``1 − similarity``."""
    labels = [str(m) for m in similarity["model"].values]
    fig = Figure(figsize=(5, 1.5 + 0.25 * len(labels)))
    ax = fig.add_subplot()
    hierarchy.dendrogram(_linkage(similarity), labels=labels, orientation="left", ax=ax, color_threshold=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("1 − similarity")
    fig.tight_layout()
    return fig


def bars(values: xr.DataArray, title: str, ylabel: str, *, errors: xr.DataArray | None = None) -> Figure:
    """One bar per model (``values`` dims (model,) or (subject, model): grouped bars)."""
    data = values if "subject" in values.dims else values.expand_dims(subject=[""])
    models = [str(m) for m in data["model"].values]
    fig = Figure(figsize=(2 + 0.45 * len(models) * max(1, data.sizes["subject"] ** 0.5), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / data.sizes["subject"]
    for i, subject in enumerate(data["subject"].values):
        x = np.arange(len(models)) + i * width - 0.4 + width / 2
        ax.bar(x, data.sel(subject=subject).values, width=width, label=str(subject) or None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if data.sizes["subject"] > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _volume(values: np.ndarray, ijk: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    volume = np.full(tuple(shape), np.nan)
    volume[tuple(np.asarray(c, dtype=int) for c in ijk)] = values
    return volume


def projections(values: xr.DataArray, title: str, *, shape: Sequence[int] | None = None,
                categories: Sequence[str] | None = None, rank: xr.DataArray | None = None) -> Figure:
    """Maximum projections of a voxel map along each axis of the volume.

    For a categorical map (``categories`` given, ``values`` integer codes), each projected pixel
    shows the category of the voxel with the largest ``rank`` along the ray.
    """
    ijk = [values[c].values for c in ("i", "j", "k")]
    shape = shape or [int(c.max()) + 1 for c in ijk]
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 3)
    score = _volume(np.asarray(rank.values if rank is not None else values.values, dtype=float), ijk, shape)
    codes = _volume(np.asarray(values.values, dtype=float), ijk, shape)
    image = None
    for axis, ax in enumerate(axes):
        if categories is None:
            projected = np.nanmax(np.where(np.isnan(score), -np.inf, score), axis=axis)
            projected[np.isinf(projected)] = np.nan
            image = ax.imshow(projected.T, origin="lower", cmap="inferno")
        else:
            best = np.nanargmax(np.where(np.isnan(score), -np.inf, score), axis=axis)
            projected = np.take_along_axis(codes, np.expand_dims(best, axis), axis).squeeze(axis)
            image = ax.imshow(projected.T, origin="lower", cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
        ax.set_title("ijk"[axis] + " projection", fontsize=9)
        ax.axis("off")
    if categories is None:
        fig.colorbar(image, ax=list(axes), shrink=0.8)
    else:
        from matplotlib.patches import Patch
        from matplotlib import colormaps

        cmap = colormaps["tab20"]
        handles = [Patch(color=cmap(i / 19), label=c) for i, c in enumerate(categories)]
        fig.legend(handles=handles, loc="center right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def stacked_partition(table: xr.Dataset, title: str) -> Figure:
    """Per pair: unique A, shared, unique B stacked, and the two transfer scores beside."""
    pairs = [str(p) for p in table["pair"].values]
    fig = Figure(figsize=(2.5 + 1.2 * len(pairs), 3.4))
    ax, bx = fig.subplots(1, 2)
    x = np.arange(len(pairs))
    bottom = np.zeros(len(pairs))
    for name, color in (("unique_a", "#4c72b0"), ("shared", "#8c8c8c"), ("unique_b", "#dd8452")):
        if name in table:
            values = np.asarray(table[name].values, dtype=float)
            ax.bar(x, values, bottom=bottom, color=color, label=name)
            bottom = bottom + values
    ax.set_xticks(x, pairs, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean R² over voxels")
    ax.legend(fontsize=8)
    ax.set_title("variance partition", fontsize=10)
    for offset, name in ((-0.2, "transfer_a_to_b"), (0.2, "transfer_b_to_a")):
        if name in table:
            bx.bar(x + offset, np.asarray(table[name].values, dtype=float), width=0.4, label=name)
    bx.set_xticks(x, pairs, rotation=30, ha="right", fontsize=8)
    bx.set_title("transfer", fontsize=10)
    bx.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def histogram(values: np.ndarray, title: str, xlabel: str) -> Figure:
    """A histogram of finite values."""
    fig = Figure(figsize=(4.5, 3))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    ax.hist(finite, bins=40, color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("voxels")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
