"""Score and planted-truth figures (Agg): counts, scales capped where the quantity is bounded, no clipping."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colorbar import Colorbar  # noqa: E402

from neurotask import plotting  # noqa: E402

MODELS = ["normal", "class_object"]


def _r2(rng: np.random.Generator) -> tuple[xr.DataArray, xr.DataArray]:
    values = rng.normal(-0.02, 0.03, (2, 300))
    values[:, :40] = rng.uniform(0.3, 1.4, (2, 40))  # above 1 must be clipped into the last bin
    values[0, 50] = -3.0  # below -0.5 clipped into the first bin
    r2 = xr.DataArray(values, dims=("model", "voxel"), coords={"model": MODELS})
    significant = xr.zeros_like(r2, dtype=bool)
    significant[:, :40] = True
    return r2, significant


def test_r2_distribution_counts_each_part_and_caps_the_axis_at_one():
    r2, significant = _r2(np.random.default_rng(0))
    fig = plotting.plot_r2_distribution(r2, significant)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    for ax, model in zip(axes, MODELS):
        assert ax.get_xlim()[1] <= 1.0 + 1e-9 and ax.get_xlim()[0] >= -0.5 - 1e-9
        heights = [sum(p.get_height() for p in container) for container in ax.containers]
        assert heights == [260, 40]  # every voxel counted once, clipped ones included
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0].startswith("not significant (260") and labels[1].startswith("significant (40")


def test_noise_ceiling_histogram_is_capped_at_one():
    ceiling = xr.DataArray(np.linspace(-0.5, 0.99, 50), dims="voxel", attrs={"n_images": 23})
    fig = plotting.plot_noise_ceiling(ceiling)
    assert fig.axes[0].get_xlim()[1] == 1.0 and "23 repeated images" in fig.axes[0].get_title()


def test_model_scores_one_bar_per_subject_and_model():
    values = xr.DataArray([[0.1, 0.3], [0.2, np.nan]], dims=("subject", "model"), coords={"subject": ["CSI1", "CSI2"], "model": MODELS})
    fig = plotting.plot_model_scores(values)
    bars = [p.get_height() for c in fig.axes[0].containers for p in c]
    np.testing.assert_array_equal(bars, [0.1, 0.3, 0.2, np.nan])


def test_driver_confusion_colors_are_row_fractions_with_a_labeled_colorbar():
    labels = ["normal", "class_object", "none"]
    counts = xr.DataArray([[8, 2, 0], [1, 9, 0], [3, 0, 97]], dims=("planted", "recovered"),
                          coords={"planted": labels, "recovered": labels})
    fig = plotting.plot_driver_confusion(counts)
    image = fig.axes[0].get_images()[0]
    np.testing.assert_allclose(image.get_array()[2], [0.03, 0.0, 0.97])
    assert image.get_clim() == (0, 1)
    colorbars = [a for a in fig.axes if isinstance(getattr(a, "_colorbar", None), Colorbar)]
    assert colorbars and colorbars[0].get_ylabel() == "fraction of the planted row"


def test_true_vs_estimated_axes_end_at_one():
    rng = np.random.default_rng(1)
    truth = xr.DataArray(rng.uniform(0.1, 0.8, 60), dims="voxel")
    estimate = truth + rng.normal(0, 0.4, 60)  # some above 1 and below 0
    driver = xr.DataArray(np.repeat(MODELS, 30), dims="voxel")
    fig = plotting.plot_true_vs_estimated(truth, estimate, driver)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == 1 and ax.get_ylim()[1] == 1 and ax.get_ylim()[0] >= -1
    assert sum(len(c.get_offsets()) for c in ax.collections) == 60


def test_error_rates_draw_q_and_bounded_power():
    rates = xr.Dataset({"false_positive_rate": ("model", [0.01, 0.0]), "power": ("model", [0.9, 1.0])},
                       coords={"model": MODELS}, attrs={"q": 0.05})
    fig = plotting.plot_error_rates(rates)
    left, right = fig.axes
    assert [line.get_ydata()[0] for line in left.get_lines()] == [0.05]
    assert right.get_ylim() == (0, 1)
    assert [p.get_height() for p in left.containers[0]] == [0.01, 0.0]


def test_variance_partition_title_says_when_no_voxel_qualifies():
    names = ("unique_a", "shared", "unique_b", "r2_ab", "transfer_a_to_b", "transfer_b_to_a")
    vp = xr.Dataset({f"{n}_mean": ("pair", [0.1]) for n in names},
                    coords={"pair": ["normal+class_object"], "model_a": ("pair", ["normal"]), "model_b": ("pair", ["class_object"])},
                    attrs={"summary_rule": "both significant"})
    vp["transfer_b_to_a_mean"][0] = np.nan
    fig = plotting.plot_variance_partition(vp)
    title = fig.axes[0].get_title()
    assert "nan" not in title.lower() and "no qualifying voxel" in title
    assert "qualifying voxels" in fig._suptitle.get_text()
