"""Variance-partitioning charts: unique and shared variance and transfer, one panel per pair."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

__all__ = ["plot_variance_partition"]

_BARS = (("unique_a", "unique A", "tab:blue"), ("shared", "shared", "tab:gray"), ("unique_b", "unique B", "tab:orange"),
         ("r2_ab", "R² A∪B", "black"))


def plot_variance_partition(
    partition: xr.Dataset, pairs: Sequence[str] | None = None, *, ncols: int = 3, title: str | None = None
) -> Figure:
    """One panel per pair: mean unique A, shared, unique B and joint R², with both transfer scores.

    Parameters
    ----------
    partition : xarray.Dataset
        From :func:`neurotask.stats.variance_partition` (``<variable>_mean (pair)``).
    pairs : sequence of str, optional
        Pair names (``"a+b"``) to draw; default all (choose a few when there are many).
    ncols : int
        Panels per row.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = [str(p) for p in (partition["pair"].values if pairs is None else pairs)]
    missing = [p for p in names if p not in set(map(str, partition["pair"].values))]
    if missing:
        raise ValueError(f"pairs {missing} are not in the partition (it has {list(map(str, partition['pair'].values))})")
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        row = partition.sel(pair=name)
        heights = [float(row[f"{variable}_mean"]) for variable, _, _ in _BARS]
        ax.bar(np.arange(len(_BARS)), heights, color=[c for _, _, c in _BARS])
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(np.arange(len(_BARS)), [label for _, label, _ in _BARS], rotation=30)
        ax.set_ylabel("R² (summary over voxels)")
        a, b = str(row["model_a"].values), str(row["model_b"].values)
        ax.set_title(
            f"A={a}, B={b}\ntransfer A→B {_ratio(row['transfer_a_to_b_mean'])}, B→A {_ratio(row['transfer_b_to_a_mean'])}",
            fontsize="small",
        )
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    rule = "summaries over qualifying voxels" if partition.attrs.get("summary_rule") else "means over voxels"
    figure.suptitle(title or f"variance partitioning ({rule})")
    return figure


def _ratio(value: xr.DataArray) -> str:
    """A transfer summary for a title: NaN means that no voxel qualified for it."""
    number = float(value)
    return f"{number:.2f}" if np.isfinite(number) else "– (no qualifying voxel)"
