"""``nt.fmri.zscore`` against scipy, lazily."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.stats
import xarray as xr

import neurotask as nt


def forbid_compute(*args, **kwargs):
    raise AssertionError("dask computed where laziness was expected")


@pytest.mark.parametrize("by", ["session", "run", "none"])
@pytest.mark.parametrize("lazy", [False, True])
def test_zscore_matches_scipy(by, lazy):
    rng = np.random.default_rng(0)
    session = np.repeat([1, 1, 2, 3], 6)
    run = np.tile(np.repeat([1, 2], 6), 2)
    values = (rng.standard_normal((24, 7)) * 4 + 3).astype(np.float32)
    resp = xr.DataArray(values, dims=("trial", "voxel"), coords={"session": ("trial", session), "run": ("trial", run)})
    if lazy:
        # the (small) trial coords are read eagerly; the data must stay lazy
        resp = resp.chunk({"trial": 5, "voxel": 3}).assign_coords(session=("trial", session), run=("trial", run))
    with dask.config.set(scheduler=forbid_compute):
        out = nt.fmri.zscore(resp, by=by)
    keys = {"session": session, "run": session * 10 + run, "none": None}[by]
    expected = values.astype(np.float64)
    if keys is not None:
        for key in np.unique(keys):
            expected[keys == key] = scipy.stats.zscore(values[keys == key].astype(np.float64), axis=0)
    # float32 result of a float64 computation
    np.testing.assert_allclose(out.values, expected, rtol=1e-6, atol=1e-6)
    assert out.attrs["normalization"] == by and out.dims == ("trial", "voxel")


def test_zscore_rejects_unknown_normalization():
    resp = xr.DataArray(np.zeros((2, 1)), dims=("trial", "voxel"), coords={"session": ("trial", [1, 1]), "run": ("trial", [1, 1])})
    with pytest.raises(ValueError, match="unknown normalize 'voxel'"):
        nt.fmri.zscore(resp, by="voxel")
