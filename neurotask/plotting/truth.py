"""Planted-truth figures for synthetic data: driver confusion, true vs estimated R², error rates."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

__all__ = ["plot_driver_confusion", "plot_true_vs_estimated", "plot_error_rates"]


def plot_driver_confusion(confusion: xr.DataArray, *, title: str | None = None) -> Figure:
    """Counts of planted (rows) vs recovered (columns) driver, with row fractions in the cells.

    Parameters
    ----------
    confusion : xarray.DataArray, dims (planted, recovered)
        Voxel counts; labels are model names and ``"none"`` (noise voxels / no significant model).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Color is the fraction of each planted row (0–1), so rows of different sizes compare.

    Examples
    --------
    >>> import xarray as xr
    >>> labels = ["a", "none"]
    >>> fig = plot_driver_confusion(xr.DataArray([[9, 1], [0, 10]], dims=("planted", "recovered"),
    ...                                          coords={"planted": labels, "recovered": labels}))
    """
    counts = np.asarray(confusion.transpose("planted", "recovered").values, dtype=float)
    rows = [str(r) for r in confusion["planted"].values]
    cols = [str(c) for c in confusion["recovered"].values]
    fraction = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.4 + 0.5 * max(len(rows), len(cols))
    fig, ax = plt.subplots(figsize=(size + 1.4, size), layout="constrained")
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=8,
                color="white" if fraction[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("recovered driver (best significant model)")
    ax.set_ylabel("planted driver")
    fig.colorbar(image, ax=ax, shrink=0.8).set_label("fraction of the planted row")
    ax.set_title(title or "planted vs recovered driver (voxels)", fontsize=10)
    return fig


def plot_true_vs_estimated(true_r2: xr.DataArray, estimated_r2: xr.DataArray, driver: xr.DataArray,
                           *, title: str | None = None) -> Figure:
    """Scatter of planted R² against the driver model's test R² on signal voxels, one color per driver.

    Parameters
    ----------
    true_r2, estimated_r2 : xarray.DataArray, dims (voxel)
        Planted fraction of variance explained, and the test R² of the voxel's driver model.
    driver : xarray.DataArray, dims (voxel)
        The planted driver's name per voxel.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Axes from min(0, lowest estimate) to 1 on both sides, with the identity line.
    """
    truth = np.asarray(true_r2.values, dtype=float)
    estimate = np.asarray(estimated_r2.values, dtype=float)
    names = np.asarray(driver.values).astype(str)
    fig, ax = plt.subplots(figsize=(4.6, 4.2), layout="constrained")
    for name in dict.fromkeys(names):
        keep = names == name
        ax.scatter(truth[keep], np.clip(estimate[keep], -1, 1), s=6, alpha=0.6, label=f"{name} ({keep.sum()})")
    finite = estimate[np.isfinite(estimate)]
    low = min(0.0, float(finite.min()) if finite.size else 0.0, -0.05)
    ax.plot([low, 1], [low, 1], color="black", linewidth=0.8, label="identity")
    ax.set_xlim(low, 1)
    ax.set_ylim(max(low, -1), 1)
    ax.set_xlabel("planted R² (snr / (1 + snr))")
    ax.set_ylabel("test R² of the driver model")
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(title or "planted vs estimated R², signal voxels", fontsize=10)
    return fig


def plot_error_rates(rates: xr.Dataset, *, title: str | None = None) -> Figure:
    """Per model: false-positive rate on planted-null voxels against the FDR level, and power.

    Parameters
    ----------
    rates : xarray.Dataset, dims (model,)
        ``false_positive_rate`` and ``power`` (fractions), attrs ``q`` (the FDR level).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two panels; the first draws q as a dashed line.
    """
    models = [str(m) for m in rates["model"].values]
    fig, (left, right) = plt.subplots(1, 2, figsize=(3.0 + 0.9 * len(models), 3.4), layout="constrained")
    x = np.arange(len(models))
    left.bar(x, np.asarray(rates["false_positive_rate"].values, dtype=float), color="tab:red")
    q = float(rates.attrs.get("q", np.nan))
    if np.isfinite(q):
        left.axhline(q, color="black", linestyle="--", linewidth=1, label=f"FDR q = {q:g}")
        left.legend(fontsize=8)
    left.set_ylim(0, max(2 * q if np.isfinite(q) else 0.1, float(np.nanmax(rates["false_positive_rate"].values, initial=0)) * 1.2))
    left.set_ylabel("fraction of planted-null voxels")
    left.set_title("false-positive rate", fontsize=10)
    right.bar(x, np.asarray(rates["power"].values, dtype=float), color="tab:green")
    right.set_ylim(0, 1)
    right.set_ylabel("share of its signal voxels")
    right.set_title("power", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(x, models, rotation=45, ha="right", fontsize=8)
    fig.suptitle(title or "significance against the planted truth", fontsize=10)
    return fig
