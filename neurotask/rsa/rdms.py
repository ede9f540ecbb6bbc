"""Representational dissimilarity matrices of models, lazily, condensed or square."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.spatial.distance as ssd
import xarray as xr

from neurotask import backend as backends
from neurotask.rsa import _torch
from neurotask.rsa._kernels import _check_finite_and_varying, _condensed_rdm
from neurotask.rsa._labels import check_choice, pair_coords, plain, rsa_attrs
from neurotask.rsa.subsets import select_images

__all__ = ["RDM_METHODS", "rdm"]

#: Dissimilarity between two images' feature vectors.
RDM_METHODS: dict[str, str] = {
    "correlation": "1 − Pearson r between the images' feature vectors (rsatoolbox 'correlation')",
    "cosine": "1 − cosine similarity between the images' feature vectors (scipy 'cosine')",
    "euclidean": "Euclidean distance between the images' feature vectors (scipy 'euclidean'; "
    "rsatoolbox's 'euclidean' is its square divided by the number of features, same ranks)",
}


def _square_coords(features: xr.DataArray) -> dict[str, Any]:
    image_coords = {c: v for c, v in features.coords.items() if v.dims == ("image",)}
    other = {f"{c}_" if c != "image" else "image_": (("image_",), v.values) for c, v in image_coords.items()}
    return {**image_coords, **other}


def _model_rdm(x: np.ndarray, method: str, model: str, images: np.ndarray, request: backends.Backend) -> np.ndarray:
    """One model's condensed RDM, on the backend resolved where the task runs."""
    name, device = backends.resolve(request)
    if name == "numpy":
        return _condensed_rdm(x, method, model, images)
    x = np.asarray(x)
    _check_finite_and_varying(x, method, model, images)
    return _torch.condensed_rdm(x, method, device).cpu().numpy()


def rdm(
    features: xr.DataArray,
    method: str = "correlation",
    subset: Any = None,
    *,
    square: bool = False,
    backend: str = "numpy",
    device: str = "auto",
) -> xr.DataArray:
    """Representational dissimilarity matrix of each model, lazily.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features (lazy or in memory) with ``model`` and ``image`` coordinates, float32 or
        float64 (dissimilarities are computed in float64 either way).
    method : {"correlation", "cosine", "euclidean"}
        Dissimilarity between images (see :data:`RDM_METHODS`).
    subset : optional
        Images to use (see :func:`~neurotask.rsa.select_images`).
    square : bool
        Return the square matrices instead of the condensed upper triangles.
    backend : {"numpy", "torch", "auto"}
        Array backend of each model's RDM (float64 either way, see
        :func:`~neurotask.rsa.model_similarity`), resolved when the model is computed.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device.

    Returns
    -------
    xarray.DataArray, dims (model, pair) or (model, image, image_), float64
        Dask-backed, one chunk per model. The condensed form's ``pair`` index is a MultiIndex of
        ``image_i``, ``image_j`` (``i < j`` in image order, scipy ``squareform`` order), so
        ``r.sel(image_i=a, image_j=b)`` works. Computing a model raises ``ValueError`` naming the
        model and images if its features hold NaN or are constant (correlation) or zero (cosine).
        Attrs ``backend`` and ``device`` as requested.

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "jigsaw"], 20, n_features=16)
    >>> r = rdm(feats)
    >>> r.sizes["pair"], rdm(feats, square=True).sizes["image_"]
    (190, 20)
    """
    check_choice("method", method, RDM_METHODS)
    request = backends.check_backend(backend, device, function="rdm")
    features, description = select_images(features, subset)
    images = plain(features["image"].values).astype(str)
    n, p = len(images), len(images) * (len(images) - 1) // 2
    rows = []
    for m, model in enumerate(map(str, features["model"].values)):
        vector = dask.delayed(_model_rdm, pure=True)(features.data[m], method, model, images, request)
        row = da.from_delayed(vector, shape=(p,), dtype=np.float64)
        rows.append(row.map_blocks(ssd.squareform, checks=False, chunks=(n, n), new_axis=1) if square else row)
    data = da.stack(rows)
    attrs = rsa_attrs(method, description, n, long_name=f"{method} dissimilarity", description=RDM_METHODS[method],
                      backend=request.name, device=request.device)
    model_coords = {c: v for c, v in features.coords.items() if v.dims == ("model",)}
    if square:
        return xr.DataArray(
            data, dims=("model", "image", "image_"), coords={**model_coords, **_square_coords(features)},
            name="rdm", attrs=attrs,
        )
    coords = xr.Coordinates(model_coords).merge(pair_coords(images)).coords
    return xr.DataArray(data, dims=("model", "pair"), coords=coords, name="rdm", attrs=attrs)
