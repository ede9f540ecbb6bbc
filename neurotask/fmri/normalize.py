"""z-scoring of responses within session or run (DESIGN §3)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["NORMALIZATIONS", "zscore", "trial_groups"]

#: Normalizations by name: the trial coords that delimit a z-scoring group (None: no z-scoring).
NORMALIZATIONS: dict[str, tuple[str, ...] | None] = {"session": ("session",), "run": ("session", "run"), "none": None}


def _check(normalize: str | None) -> str:
    name = "none" if normalize is None else normalize
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; expected one of {sorted(NORMALIZATIONS)}")
    return name


def trial_groups(session: np.ndarray, run: np.ndarray, normalize: str | None) -> np.ndarray:
    """An integer group label per trial: the z-scoring group under ``normalize`` (all 0 for "none")."""
    name = _check(normalize)
    if NORMALIZATIONS[name] is None:
        return np.zeros(len(session), dtype=np.int64)
    keys = np.asarray(session, dtype=np.int64)
    if name == "run":
        keys = keys * (int(np.max(run)) + 1) + np.asarray(run, dtype=np.int64)
    return np.unique(keys, return_inverse=True)[1]


def _zscore_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """z-score the columns of ``values`` (trial, voxel) within each trial group (ddof=0), in float64.

    A constant column in a group becomes NaN there (0/0), as in ``scipy.stats.zscore``.
    """
    out = np.empty(values.shape, dtype=np.float32)
    for group in np.unique(groups):
        rows = groups == group
        block = values[rows].astype(np.float64)
        mean = block.mean(axis=0)
        std = block.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = (block - mean) / std
    return out


def zscore(responses: xr.DataArray, by: str | None = "session") -> xr.DataArray:
    """z-score each voxel within session, within run, or not at all.

    Parameters
    ----------
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``session`` and ``run`` coords on trial.
    by : {"session", "run", "none"}
        The z-scoring group. Population standard deviation (ddof=0), as ``scipy.stats.zscore``.

    Returns
    -------
    xarray.DataArray, dims (trial, voxel)
        Lazy when the input is dask-backed (one task per voxel chunk, all trials in each; only the
        ``session``/``run`` coords are read); attr ``normalization`` records ``by``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> r = xr.DataArray(np.arange(8.0).reshape(4, 2), dims=("trial", "voxel"),
    ...                  coords={"session": ("trial", [1, 1, 2, 2]), "run": ("trial", [1, 1, 1, 1])})
    >>> zscore(r, by="session").values[:, 0].tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    name = _check(by)
    responses = responses.transpose("trial", "voxel")
    groups = trial_groups(responses["session"].values, responses["run"].values, name)
    if name == "none":
        result = responses.copy()
    else:
        if responses.chunks is not None:
            responses = responses.chunk({"trial": -1})
        result = xr.apply_ufunc(
            _zscore_groups, responses, kwargs={"groups": groups}, dask="parallelized", output_dtypes=[np.float32]
        )
    result.attrs = {**responses.attrs, "normalization": name}
    return result
