"""Independent references for the RSA tests: scipy RDMs, rsatoolbox RDMs, an O(n²) tau-a.

Tolerances: our RDMs and rsatoolbox's are both computed in float64 from the same float32
features, so they agree to ~1e-12; the acceptance bound is 1e-6 and tests use 1e-9 where the
arithmetic is float64 throughout (1e-6 for Pearson, whose vectors are stored as float32).
"""

from __future__ import annotations

import numpy as np
import rsatoolbox
import scipy.spatial.distance as ssd
import xarray as xr

MODELS = ["normal", "depth_zbuffer", "jigsaw", "class_object", "denoising"]


class ComputeForbidden(RuntimeError):
    pass


def forbid_compute(*args, **kwargs):
    """A dask scheduler that fails: proves that building a result computed nothing."""
    raise ComputeForbidden("a dask graph was computed")


def reference_rdms(features: xr.DataArray, method: str = "correlation") -> np.ndarray:
    return np.stack([ssd.pdist(features.values[m].astype(np.float64), method) for m in range(features.sizes["model"])])


def rsatoolbox_rdms(features: xr.DataArray, method: str = "correlation"):
    datasets = [rsatoolbox.data.Dataset(features.values[m].astype(np.float64)) for m in range(features.sizes["model"])]
    return rsatoolbox.rdm.calc_rdm(datasets, method=method)


def brute_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """O(n²) tau-a: (concordant − discordant) / (n(n−1)/2), ties counted as neither."""
    i, j = np.triu_indices(a.size, 1)
    return float(np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size)
