"""Power and FDP on a synthetic BOLD5000 subject (planted drivers at the synthetic SNR), end to end:
write the tree, load it, fit ridge, permutation test, compare with the ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

import neurotask as nt
from neurotask.datasets import write_synthetic_dataset
from neurotask.datasets.synthetic import make_synthetic_features
from neurotask.datasets.synthetic_bold5000 import bold5000_trials
from neurotask.stats import permutation_test


def _by_voxel(truth, responses, name):
    index = lambda ds: pd.MultiIndex.from_arrays([ds.i.values, ds.j.values, ds.k.values])  # noqa: E731
    return pd.Series(truth[name].values, index=index(truth)).reindex(index(responses)).values


def test_power_and_fdp_at_the_synthetic_snr(tmp_path, encoding_fit):
    models = ["normal", "class_object"]
    images = bold5000_trials("CSI1", n_sessions=3).image.unique().tolist()
    features = make_synthetic_features(models, images, n_features=32, seed=0)
    truth = write_synthetic_dataset(tmp_path, "CSI1", n_sessions=3, stimuli=False, features=features, seed=0)
    responses = nt.load_bold5000(tmp_path, "CSI1", 2)
    fit = encoding_fit(features, responses, cv=5, progress=False)
    perm = permutation_test(fit, responses, features, n_permutations=500, seed=0)
    drivers, true_r2 = _by_voxel(truth, responses, "driver"), _by_voxel(truth, responses, "true_r2")
    lines = []
    for model in models:
        significant = perm.significant.sel(model=model).values
        own = drivers == model
        fdp = significant[~own].sum() / max(significant.sum(), 1)
        low = own & (true_r2 < np.quantile(true_r2[own], 0.25))
        lines.append(f"{model}: power {significant[own].mean():.3f} on {own.sum()} planted voxels "
                     f"(true R² {true_r2[own].min():.2f}-{true_r2[own].max():.2f}; lowest quartile "
                     f"{significant[low].mean():.3f}), FDP {fdp:.4f}")
        assert significant[own].mean() > 0.9
        assert fdp <= 0.05
    print("\n" + "\n".join(lines))
