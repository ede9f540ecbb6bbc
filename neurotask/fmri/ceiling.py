"""Noise ceiling from repeated images: split-half reliability, Spearman–Brown corrected (DESIGN §3)."""

from __future__ import annotations

from collections import defaultdict

import dask.array as da
import numpy as np
import scipy.sparse
import xarray as xr

from neurotask.stores import validate_responses

__all__ = ["noise_ceiling", "split_half_weights"]


def split_half_weights(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Averaging weights of the odd and even presentations of every repeated image.

    Parameters
    ----------
    images : array of str, shape (n_trials,)
        The image id of each trial, in presentation order.

    Returns
    -------
    trials : array of int, shape (n_repeat_trials,)
        The trials of repeated images (shown at least twice).
    odd, even : scipy.sparse.csr_array, shape (n_repeated_images, n_repeat_trials)
        Row ``m`` averages image ``m``'s 1st, 3rd, … (odd) or 2nd, 4th, … (even) presentations.
    repeated : list of str
        The repeated image ids, in first-presentation order.
    """
    shown: dict[str, list[int]] = defaultdict(list)
    for trial, image in enumerate(np.asarray(images)):
        shown[str(image)].append(trial)
    repeated = [image for image, trials in shown.items() if len(trials) > 1]
    trials = np.array(sorted(t for image in repeated for t in shown[image]), dtype=np.int64)
    column = {t: c for c, t in enumerate(trials)}
    halves = []
    for part in (slice(0, None, 2), slice(1, None, 2)):
        rows, cols, weights = [], [], []
        for row, image in enumerate(repeated):
            chosen = shown[image][part]
            rows += [row] * len(chosen)
            cols += [column[t] for t in chosen]
            weights += [1.0 / len(chosen)] * len(chosen)
        halves.append(scipy.sparse.csr_array((weights, (rows, cols)), shape=(len(repeated), trials.size)))
    odd, even = halves
    return trials, odd, even, repeated


def _split_half_reliability(values: np.ndarray, odd: np.ndarray, even: np.ndarray) -> np.ndarray:
    """Per voxel: Pearson r over images between odd and even presentation means, Spearman–Brown corrected."""
    values = values.astype(np.float64)
    a = odd @ values
    b = even @ values
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        return (2 * r / (1 + r)).astype(np.float32)


def noise_ceiling(responses: xr.DataArray) -> xr.DataArray:
    """Per-voxel noise ceiling: split-half reliability over repeated images, Spearman–Brown corrected.

    For every image shown at least twice (113 in BOLD5000), its responses are averaged over the
    odd (1st, 3rd) and over the even (2nd, 4th) presentations; per voxel, Pearson r between the two
    halves across images is stepped up to the reliability of the full average with Spearman–Brown,
    ``2 r / (1 + r)``. Values near 1 mean a reliable voxel; ≤ 0 means no repeatable signal.

    Parameters
    ----------
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with an ``image`` coord on trial (repeated presentations kept as trials).

    Returns
    -------
    xarray.DataArray, dims (voxel)
        float32, lazy when ``responses`` is dask-backed (one task per voxel chunk), with the voxel
        coords of ``responses`` and attrs ``method``, ``n_images``.

    Examples
    --------
    >>> ceiling = nt.fmri.noise_ceiling(nt.open_responses("sub-CSI1.zarr"))  # doctest: +SKIP
    """
    responses = validate_responses(responses)
    trials, odd, even, repeated = split_half_weights(responses["image"].values)
    if len(repeated) < 3:
        raise ValueError(
            f"responses hold {len(repeated)} repeated images; a split-half noise ceiling needs at least 3 "
            f"(repeated presentations must be kept as trials)."
        )
    data = responses.isel(trial=trials).data
    if isinstance(data, da.Array):
        values = data.rechunk({0: -1}).map_blocks(
            _split_half_reliability, odd, even, drop_axis=0, dtype=np.float32
        )
    else:
        values = _split_half_reliability(np.asarray(data), odd, even)
    voxel_coords = {str(c): responses[c] for c in responses.coords if responses[c].dims == ("voxel",)}
    ceiling = xr.DataArray(values, dims=("voxel",), coords=voxel_coords)
    ceiling.name = "noise_ceiling"
    ceiling.attrs = {
        "long_name": "noise ceiling (split-half reliability, Spearman-Brown corrected)",
        "method": "pearson r between odd- and even-presentation means over repeated images; 2r/(1+r)",
        "n_images": len(repeated),
    }
    return ceiling
