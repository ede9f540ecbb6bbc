"""RSA figures: model×model similarity heatmaps, dendrograms, and two trees face to face."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import scipy.cluster.hierarchy as sch
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neurotask.rsa import Tree, linkage

__all__ = ["plot_similarity", "plot_dendrogram", "compare_trees"]

_COMPARE_LABELS = {"spearman": "Spearman ρ", "pearson": "Pearson r", "tau-a": "Kendall τ-a"}


def _group_colors(similarity: xr.DataArray, labels: Sequence[str]) -> dict[str, str] | None:
    """Tick label colors by the ``group`` coord on model, if there is one."""
    if "group" not in similarity.coords or similarity["group"].dims != ("model",):
        return None
    groups = dict(zip(map(str, similarity["model"].values), map(str, similarity["group"].values)))
    palette = plt.get_cmap("tab10")
    index = {g: i for i, g in enumerate(dict.fromkeys(groups.values()))}  # same colors in every figure
    return {m: palette(index[groups[m]] % 10) for m in labels}


def _color_ticks(ticklabels: Sequence[matplotlib.text.Text], colors: dict[str, str] | None) -> None:
    for label in ticklabels:
        if colors and label.get_text() in colors:
            label.set_color(colors[label.get_text()])


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def _default_title(similarity: xr.DataArray) -> str:
    subset = similarity.attrs.get("subset")
    n = similarity.attrs.get("n_images")
    parts = [p for p in (subset, f"{n} images" if n else None) if p]
    return "Model similarity" + (f" ({', '.join(parts)})" if parts else "")


def plot_similarity(
    sim: xr.DataArray,
    order: str | Sequence[str] | None = "dendrogram",
    title: str | None = None,
    *,
    method: str = "average",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of a model × model similarity with labels and a colorbar.

    Parameters
    ----------
    sim : xarray.DataArray, dims (model, model_)
        From :func:`neurotask.rsa.model_similarity` or a brain-derived similarity.
    order : "dendrogram", None, or sequence of str
        Row/column order: the leaf order of the ``method`` linkage tree (a single model has no
        tree: its one row), the given order, or these model names.
    title : str, optional
        Default: "Model similarity (subset, n images)".
    method : str
        Linkage method for ``order="dendrogram"``.
    cmap, vmin, vmax : optional
        Color map and limits (default: the off-diagonal range).
    annotate : bool
        Write each value in its cell.
    ax : matplotlib Axes, optional
        Draw here instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Tick labels are model names (colored by a ``group`` coord if present).

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> from neurotask.rsa import model_similarity
    >>> sim = model_similarity(make_synthetic_features(["normal", "jigsaw", "denoising"], 30, n_features=16), progress=False)
    >>> fig = plot_similarity(sim)
    """
    sim = sim.transpose("model", "model_")
    names = [str(m) for m in sim["model"].values]
    if isinstance(order, str):
        if order != "dendrogram":
            raise ValueError(f"order must be 'dendrogram', None or a list of model names; got {order!r}")
        labels = linkage(sim, method=method).leaves if len(names) > 1 else names
    elif order is None:
        labels = names
    else:
        labels = [str(m) for m in order]
        if sorted(labels) != sorted(names):
            raise ValueError(f"order must list each model once: {sorted(names)}; got {labels}")
    values = sim.sel(model=labels, model_=labels).values
    off_diagonal = values[~np.eye(len(labels), dtype=bool)]
    vmin = float(off_diagonal.min()) if vmin is None and off_diagonal.size else vmin
    vmax = float(off_diagonal.max()) if vmax is None and off_diagonal.size else vmax
    size = 2.0 + 0.28 * len(labels)
    fig, ax = _new_axes(ax, (size + 1.2, size))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    colors = _group_colors(sim, labels)
    _color_ticks(ax.get_xticklabels(), colors)
    _color_ticks(ax.get_yticklabels(), colors)
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w")
    compare = sim.attrs.get("compare")
    label = _COMPARE_LABELS.get(compare, "similarity")
    if sim.attrs.get("rdm_method"):
        label += f" between {sim.attrs['rdm_method']} RDMs"
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label(label)
    ax.set_title(title if title is not None else _default_title(sim))
    return fig


def _as_tree(sim_or_tree: xr.DataArray | Tree, method: str) -> Tree:
    if isinstance(sim_or_tree, Tree):
        return sim_or_tree
    if isinstance(sim_or_tree, xr.DataArray):
        return linkage(sim_or_tree, method=method)
    raise TypeError(
        f"expected a (model, model_) similarity DataArray or a neurotask.rsa.Tree; got {type(sim_or_tree).__name__}"
    )


def plot_dendrogram(
    sim_or_linkage: xr.DataArray | Tree,
    *,
    method: str = "average",
    orientation: str = "left",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Dendrogram of models (average linkage on ``1 − similarity`` by default).

    Parameters
    ----------
    sim_or_linkage : xarray.DataArray, dims (model, model_), or Tree
        A similarity (clustered here with ``method``) or a tree from :func:`neurotask.rsa.linkage`.
    method : str
        Linkage method when a similarity is given.
    orientation : {"left", "right", "top", "bottom"}
        Where the root is (scipy's convention).
    title : str, optional
        Figure title.
    ax : matplotlib Axes, optional
        Draw here instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Leaf labels are model names in the tree's leaf order.
    """
    tree = _as_tree(sim_or_linkage, method)
    n = len(tree.labels)
    vertical = orientation in ("left", "right")
    fig, ax = _new_axes(ax, (6.0, 1.0 + 0.3 * n) if vertical else (1.0 + 0.35 * n, 5.0))
    sch.dendrogram(
        tree.matrix, labels=tree.labels, orientation=orientation, ax=ax, color_threshold=0,
        above_threshold_color="0.2", leaf_font_size=8,
    )
    if isinstance(sim_or_linkage, xr.DataArray):
        colors = _group_colors(sim_or_linkage, tree.labels)
        _color_ticks(ax.get_yticklabels() if vertical else ax.get_xticklabels(), colors)
    axis_label = f"1 − similarity ({tree.method} linkage)"
    (ax.set_xlabel if vertical else ax.set_ylabel)(axis_label)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else f"Model tree ({tree.method} linkage)")
    return fig


def compare_trees(
    rsa_sim: xr.DataArray,
    brain_sim: xr.DataArray,
    *,
    method: str = "average",
    titles: tuple[str, str] = ("model RSA", "brain"),
    title: str | None = None,
) -> Figure:
    """Two dendrograms face to face (a tanglegram), lines joining each model's two leaves.

    Parameters
    ----------
    rsa_sim : xarray.DataArray, dims (model, model_)
        Representational similarity of the models (left tree).
    brain_sim : xarray.DataArray, dims (model, model_)
        Brain-derived similarity of the same models (right tree), e.g. from
        :func:`neurotask.stats.task_similarity`.
    method : str
        Linkage method for both trees.
    titles : (str, str)
        Titles of the left and right trees.
    title : str, optional
        Figure title; default gives the cophenetic correlation of the two trees.

    Returns
    -------
    matplotlib.figure.Figure
        Three axes: left tree, the joined labels, right tree.
    """
    left_names = sorted(map(str, rsa_sim["model"].values))
    right_names = sorted(map(str, brain_sim["model"].values))
    if left_names != right_names:
        raise ValueError(
            f"rsa_sim and brain_sim must hold the same models; only in rsa_sim: "
            f"{sorted(set(left_names) - set(right_names))}, only in brain_sim: {sorted(set(right_names) - set(left_names))}"
        )
    brain_sim = brain_sim.sel(model=list(map(str, rsa_sim["model"].values)), model_=list(map(str, rsa_sim["model"].values)))
    left, right = linkage(rsa_sim, method=method), linkage(brain_sim, method=method)
    cophenetic = np.stack([sch.cophenet(left.matrix), sch.cophenet(right.matrix)])
    # with 2-3 models a tree's cophenetic distances can all be equal: the correlation is undefined
    constant = np.ptp(cophenetic, axis=1) == 0
    agreement = "undefined" if constant.any() else f"{np.corrcoef(cophenetic)[0, 1]:.2f}"
    n = len(left.labels)
    fig, (ax_left, ax_mid, ax_right) = plt.subplots(
        1, 3, figsize=(12, 1.5 + 0.3 * n), gridspec_kw={"width_ratios": [3, 4, 3], "wspace": 0.0}
    )
    for ax, tree, orientation, name in ((ax_left, left, "left", titles[0]), (ax_right, right, "right", titles[1])):
        sch.dendrogram(
            tree.matrix, orientation=orientation, ax=ax, no_labels=True, color_threshold=0,
            above_threshold_color="0.2",
        )
        ax.set_ylim(0, 10 * n)
        ax.set_yticks([])
        ax.set_xlabel("1 − similarity")
        ax.set_title(name)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    # leaves sit at y = 10·k + 5 in leaf order
    y_left = {left.labels[i]: 10 * k + 5 for k, i in enumerate(left.order)}
    y_right = {right.labels[i]: 10 * k + 5 for k, i in enumerate(right.order)}
    ax_mid.set_xlim(0, 1)
    ax_mid.set_ylim(0, 10 * n)
    ax_mid.axis("off")
    for model in left.labels:
        ax_mid.text(0.02, y_left[model], model, ha="left", va="center", fontsize=8)
        ax_mid.text(0.98, y_right[model], model, ha="right", va="center", fontsize=8)
        ax_mid.plot([0.40, 0.60], [y_left[model], y_right[model]], color="0.5", lw=0.8)
    fig.suptitle(title if title is not None else f"{titles[0]} vs {titles[1]} (cophenetic r = {agreement})")
    return fig
