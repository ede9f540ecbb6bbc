"""Score figures: per-model bars, R² distributions (significant voxels apart), noise-ceiling histograms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

__all__ = ["plot_model_scores", "plot_r2_distribution", "plot_noise_ceiling"]


def plot_model_scores(values: xr.DataArray, *, ylabel: str = "mean test R²", title: str | None = None) -> Figure:
    """One bar per model; grouped bars per subject when ``values`` has a ``subject`` dim.

    Parameters
    ----------
    values : xarray.DataArray, dims (model,) or (subject, model)
        E.g. ``fit.r2.mean("voxel")``.
    ylabel, title : str
        Axis label and title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import xarray as xr
    >>> fig = plot_model_scores(xr.DataArray([0.1, 0.3], dims="model", coords={"model": ["a", "b"]}))
    """
    data = values if "subject" in values.dims else values.expand_dims(subject=[""])
    data = data.transpose("subject", "model")
    models = [str(m) for m in data["model"].values]
    n_subjects = data.sizes["subject"]
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * len(models) * max(1.0, n_subjects**0.5), 3.4), layout="constrained")
    width = 0.8 / n_subjects
    for i, subject in enumerate(map(str, data["subject"].values)):
        x = np.arange(len(models)) + (i + 0.5) * width - 0.4
        ax.bar(x, np.asarray(data.sel(subject=subject).values, dtype=float), width=width, label=subject or None)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} per model", fontsize=10)
    if n_subjects > 1:
        ax.legend(fontsize=8)
    return fig


def plot_r2_distribution(
    r2: xr.DataArray,
    significant: xr.DataArray | None = None,
    *,
    bins: int = 40,
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """Per model, the histogram of test R² over voxels, significant voxels and the others apart.

    The x axis runs from the smallest R² (at least −0.5: lower values are clipped into the first
    bin) to 1 at most: R² cannot exceed 1.

    Parameters
    ----------
    r2 : xarray.DataArray, dims (model, voxel)
        Test R² per voxel.
    significant : xarray.DataArray, dims (model, voxel), optional
        Boolean mask (e.g. ``permutation_test(...).significant``); without it one histogram per model.
    bins : int
        Histogram bins over the shown range.
    ncols : int
        Panels per row.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per model, voxel counts on a log scale; the legend gives each part's voxel
        count and mean R².
    """
    r2 = r2.transpose("model", "voxel")
    models = [str(m) for m in r2["model"].values]
    values = np.asarray(r2.values, dtype=float)
    mask = np.zeros_like(values, dtype=bool) if significant is None else np.asarray(
        significant.sel(model=models).transpose("model", "voxel").values, dtype=bool)
    finite = values[np.isfinite(values)]
    low = max(-0.5, float(finite.min())) if finite.size else -0.5
    high = min(1.0, max(float(finite.max()), 0.1)) if finite.size else 1.0
    edges = np.linspace(low, high, bins + 1)
    ncols = max(1, min(ncols, len(models)))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False, layout="constrained")
    for ax, row, hit, model in zip(axes.flat, values, mask, models):
        parts = [(~hit, "other voxels", "0.6")] if significant is None else [(~hit, "not significant", "0.6"), (hit, "significant", "tab:red")]
        for part, label, color in parts:
            shown = np.clip(row[part & np.isfinite(row)], low, high)
            mean = f", mean {shown.mean():.3f}" if shown.size else ""
            ax.hist(shown, bins=edges, color=color, alpha=0.75, label=f"{label} ({shown.size}{mean})")
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlim(low, high)
        ax.set_yscale("log")  # significant voxels are often a few percent of all: both stay visible
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("test R²")
        ax.set_ylabel("voxels (log scale)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    fig.suptitle(title or "test R² per voxel", fontsize=10)
    return fig


def plot_noise_ceiling(ceiling: xr.DataArray, *, bins: int = 40, title: str | None = None) -> Figure:
    """Histogram of the per-voxel noise ceiling (values ≤ 1 by construction; x axis capped at 1).

    Parameters
    ----------
    ceiling : xarray.DataArray, dims (voxel)
        From :func:`neurotask.fmri.noise_ceiling`.
    bins : int
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = np.asarray(ceiling.values, dtype=float)
    values = values[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(4.8, 3.2), layout="constrained")
    low = max(-1.0, float(values.min())) if values.size else -1.0
    ax.hist(np.clip(values, low, 1.0), bins=np.linspace(low, 1.0, bins + 1), color="tab:blue")
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlim(low, 1.0)
    ax.set_xlabel("noise ceiling (split-half, Spearman–Brown)" + (f"; below {low:g} shown at {low:g}" if low == -1.0 else ""))
    ax.set_ylabel("voxels")
    n = ceiling.attrs.get("n_images")
    ax.set_title(title or ("noise ceiling" + (f" ({n} repeated images)" if n else "")), fontsize=10)
    return fig
