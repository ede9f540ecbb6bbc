"""Statistics figures (Agg): brain maps, winning model, significant counts, variance partitioning."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neurotask import plotting  # noqa: E402

AFFINE = [[2.0, 0, 0, -10], [0, 2.0, 0, -8], [0, 0, 2.0, -6], [0, 0, 0, 1]]


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(0)
    i, j, k = np.meshgrid(np.arange(1, 9), np.arange(1, 7), np.arange(1, 6), indexing="ij")
    n = i.size
    coords = {"model": ["normal", "depth_zbuffer", "class_object"], "i": ("voxel", i.ravel()),
              "j": ("voxel", j.ravel()), "k": ("voxel", k.ravel())}
    r2 = rng.uniform(-0.05, 0.3, (3, n)).astype(np.float32)
    return xr.Dataset(
        {"r2": (("model", "voxel"), r2), "r": (("model", "voxel"), np.sqrt(np.clip(r2, 0, None)))},
        coords=coords, attrs={"affine": json.dumps(AFFINE), "volume_shape": [10, 8, 7]},
    )


def test_volume_image_places_values(fit):
    values = fit.r2.sel(model="normal")
    image = plotting.volume_image(values, fit)
    volume = np.asarray(image.get_fdata())
    assert volume.shape == (10, 8, 7) and np.allclose(image.affine, AFFINE)
    np.testing.assert_allclose(volume[fit.i.values, fit.j.values, fit.k.values], values.values, rtol=1e-6)


def test_brain_map_and_winning_model(fit):
    figure = plotting.plot_brain_map(fit.r2.sel(model="normal"), fit, title="R² normal")
    assert isinstance(figure, Figure) and any("R² normal" in t.get_text() for t in figure.findobj(matplotlib.text.Text))
    significant = xr.Dataset({"significant": fit.r2 > 0.1})
    figure = plotting.plot_winning_model(fit, significant=significant)
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert [label.split(" ")[0] for label in labels] == ["normal", "depth_zbuffer", "class_object"]
    counts = sum(int(label.split("(")[1].rstrip(")")) for label in labels)
    assert counts == int(((fit.r2.where(fit.r2 > 0.1)).notnull().any("model")).sum())


def test_significant_counts(fit):
    perm = xr.Dataset({"significant": fit.r2 > 0.2}, attrs={"q": 0.05})
    figure = plotting.plot_significant_counts(perm)
    axes = figure.axes[0]
    assert axes.get_ylabel() == "significant voxels" and "q=0.05" in axes.get_title()
    heights = sorted((bar.get_height() for bar in axes.patches), reverse=True)
    assert heights == sorted(perm.significant.sum("voxel").values.tolist(), reverse=True)


def test_variance_partition_chart():
    pairs = ["a+b", "a+c"]
    means = {f"{v}_mean": ("pair", np.array([0.1, 0.2])) for v in
             ("unique_a", "unique_b", "shared", "r2_ab", "transfer_a_to_b", "transfer_b_to_a")}
    vp = xr.Dataset(means, coords={"pair": pairs, "model_a": ("pair", ["a", "a"]), "model_b": ("pair", ["b", "c"])})
    figure = plotting.plot_variance_partition(vp)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 2 and "A=a, B=c" in visible[1].get_title() and "transfer A→B 0.20" in visible[1].get_title()
    assert [t.get_text() for t in visible[0].get_xticklabels()] == ["unique A", "shared", "unique B", "R² A∪B"]
    with pytest.raises(ValueError, match="not in the partition"):
        plotting.plot_variance_partition(vp, ["x+y"])


def test_brain_tree_beside_the_rsa_tree():
    """task_similarity's output feeds the RSA helper's figures (dendrogram, tanglegram)."""
    from neurotask.stats import task_similarity

    rng = np.random.default_rng(1)
    models = ["normal", "depth_zbuffer", "class_object", "class_scene"]
    base = rng.standard_normal((2, 200))
    r = np.stack([base[0], base[0] + 0.2 * rng.standard_normal(200), base[1], base[1] + 0.2 * rng.standard_normal(200)])
    fit = xr.Dataset({"r": (("model", "voxel"), r)}, coords={"model": models})
    brain = task_similarity(fit, fit.r > 0)
    rsa_sim = brain.copy(data=np.corrcoef(r))
    assert isinstance(plotting.plot_dendrogram(brain), Figure)
    figure = plotting.compare_trees(rsa_sim, brain)
    assert isinstance(figure, Figure) and "brain" in [ax.get_title() for ax in figure.axes]
