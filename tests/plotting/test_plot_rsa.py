"""Tests for the RSA figures: labels, order, colorbar, two trees (matplotlib Agg)."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from neurotask import rsa  # noqa: E402
from neurotask.datasets import make_synthetic_features  # noqa: E402
from neurotask.plotting import compare_trees, plot_dendrogram, plot_similarity  # noqa: E402

MODELS = ["normal", "depth_zbuffer", "jigsaw", "room_layout", "class_object", "class_scene"]


@pytest.fixture(scope="module")
def sim() -> xr.DataArray:
    feats = make_synthetic_features(MODELS, 50, n_features=32, seed=4)
    return rsa.model_similarity(feats, progress=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labels(ticks) -> list[str]:
    return [t.get_text() for t in ticks]


def test_similarity_heatmap_in_dendrogram_order_with_colorbar(sim):
    fig = plot_similarity(sim)
    ax, cbar_ax = fig.axes[0], fig.axes[1]
    leaves = rsa.linkage(sim).leaves
    assert _labels(ax.get_xticklabels()) == leaves and _labels(ax.get_yticklabels()) == leaves
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, sim.sel(model=leaves, model_=leaves).values)
    assert "Spearman" in cbar_ax.get_ylabel() and "correlation" in cbar_ax.get_ylabel()
    assert "all images" in ax.get_title()
    # planted groups color the tick labels
    colors = {t.get_text(): t.get_color() for t in ax.get_yticklabels()}
    assert colors["normal"] == colors["depth_zbuffer"] != colors["jigsaw"]


def test_similarity_heatmap_given_order_and_errors(sim):
    fig = plot_similarity(sim, order=MODELS[::-1], title="mine", annotate=True)
    ax = fig.axes[0]
    assert _labels(ax.get_yticklabels()) == MODELS[::-1] and ax.get_title() == "mine"
    assert len(ax.texts) == len(MODELS) ** 2
    assert _labels(plot_similarity(sim, order=None).axes[0].get_xticklabels()) == MODELS
    with pytest.raises(ValueError, match="each model once"):
        plot_similarity(sim, order=MODELS[:3])
    with pytest.raises(ValueError, match="order must be"):
        plot_similarity(sim, order="alphabetical")


@pytest.mark.parametrize("orientation", ["left", "top"])
def test_dendrogram_labels_follow_leaf_order(sim, orientation):
    tree = rsa.linkage(sim)
    for source in (sim, tree):
        fig = plot_dendrogram(source, orientation=orientation)
        ax = fig.axes[0]
        ticks = ax.get_yticklabels() if orientation == "left" else ax.get_xticklabels()
        # scipy draws leaves bottom-up (left) or left-to-right (top) in leaf order
        assert _labels(ticks) == tree.leaves
        assert "average linkage" in ax.get_title()
    with pytest.raises(TypeError, match="similarity DataArray or a neurotask.rsa.Tree"):
        plot_dendrogram(np.eye(3))


def test_compare_trees_draws_two_trees_and_joins_leaves(sim):
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.05, size=sim.shape)
    brain = (sim + (noise + noise.T) / 2).clip(-1, 1)
    brain.values[np.diag_indices(len(MODELS))] = 1.0
    brain = brain.sel(model=MODELS[::-1], model_=MODELS[::-1])  # other order: matched by name
    fig = compare_trees(sim, brain)
    left, middle, right = fig.axes
    assert left.get_title() == "model RSA" and right.get_title() == "brain"
    assert sorted(t.get_text() for t in middle.texts) == sorted(MODELS * 2)
    assert len(middle.lines) == len(MODELS)
    assert "cophenetic r" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="same models"):
        compare_trees(sim, brain.isel(model=slice(1, None), model_=slice(1, None)))


def test_compare_trees_with_two_models_has_no_correlation(sim):
    # two leaves: one cophenetic distance per tree, so their correlation is undefined (no NaN warning)
    pair = sim.isel(model=slice(0, 2), model_=slice(0, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = compare_trees(pair, pair)
    assert "cophenetic r = undefined" in fig._suptitle.get_text()
