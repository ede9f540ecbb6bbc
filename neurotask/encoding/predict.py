"""Test-set predictions of fitted encoding models, recomputed lazily from the features (numpy or torch)."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
import xarray as xr

from neurotask import backend as backends
from neurotask import execution, stores
from neurotask.encoding import ridge, ridge_torch
from neurotask.encoding.design import aligned_features, design_matrix, model_factors, model_spaces
from neurotask.encoding.split import training_index

__all__ = ["predict"]


def _prediction_factors(
    aligned: xr.DataArray, spaces: tuple[str, ...], train: np.ndarray, test: np.ndarray, standardize: bool,
    backend: backends.Backend,
) -> ridge.RidgeFactors:
    """One model's refit factors on all training trials (no folds), as numpy (torch: decomposed on the device)."""
    design = design_matrix(aligned, spaces)
    name, device = backends.resolve(backend)
    if name == "torch":
        return ridge_torch.factors_to_numpy(ridge_torch.make_ridge_factors(
            design[train], design[test], [0, train.size], standardize=standardize, folds=False, device=device))
    return model_factors(design, train, test, standardize=standardize)


def _predict_block(y: np.ndarray, factors: ridge.RidgeFactors, train: np.ndarray, alpha: np.ndarray,
                   backend: backends.Backend) -> np.ndarray:
    y_train = np.asarray(y, dtype=np.float32)[train]
    name, device = backends.resolve(backend)
    if name == "torch":
        import torch

        with backends.tf32(backend.allow_tf32):
            return ridge_torch.predict_ridge(ridge_torch.factors_on_device(factors, device),
                                             torch.as_tensor(y_train, device=device), alpha)
    with execution.blas_threads(1):
        return ridge.predict_ridge(factors, y_train, alpha).astype(np.float32)


def _model_predictions(
    results: xr.Dataset, features: xr.DataArray, responses: xr.DataArray, data: da.Array, name: str,
    spaces: tuple[str, ...], train: np.ndarray, test: np.ndarray, standardize: bool, request: backends.Backend,
) -> da.Array:
    """One model's lazy (test trial, voxel) predictions: a decomposition task, then one task per voxel chunk."""
    # the decomposition is a task of the graph (run once, where the graph runs), not data
    # embedded in it: ~50 MB of factors per model would otherwise travel through the scheduler
    factors_key = dask.delayed(_prediction_factors, pure=True)(
        aligned_features(features, responses, spaces), spaces, train, test, standardize or len(spaces) > 1, request,
    )
    alpha = results["alpha"].sel(model=name).values
    columns = np.cumsum((0,) + data.chunks[1])
    blocks = [
        da.from_delayed(dask.delayed(_predict_block)(block, factors_key, train, alpha[start:stop], request),
                        shape=(test.size, stop - start), dtype=np.float32)
        for block, start, stop in zip(data.to_delayed()[0], columns[:-1], columns[1:])
    ]
    return da.concatenate(blocks, axis=1)


def _check_results(results: xr.Dataset, responses: xr.DataArray) -> np.ndarray:
    for name in ("alpha", "is_test"):
        if name not in results:
            raise ValueError(f"results lacks {name!r}; pass the Dataset returned by nt.encoding.fit.")
    is_test = np.asarray(results["is_test"].values, dtype=bool)
    if is_test.shape != (responses.sizes["trial"],) or results.sizes["voxel"] != responses.sizes["voxel"]:
        raise ValueError(
            f"results were fitted on {is_test.size} trials x {results.sizes['voxel']} voxels but responses has "
            f"{responses.sizes['trial']} x {responses.sizes['voxel']}; pass the responses the results were fitted on."
        )
    return is_test


def predict(
    results: xr.Dataset,
    features: xr.DataArray,
    responses: xr.DataArray,
    models: Sequence[str] | None = None,
    *,
    backend: str = "numpy",
    device: str = "auto",
    allow_tf32: bool = False,
) -> xr.DataArray:
    """Test-set predictions of fitted encoding models, recomputed lazily per voxel chunk.

    Each model's whole-training decomposition is a task of the graph (one eigendecomposition
    per model); the predictions are a lazy dask array, one task per voxel chunk of ``responses``.

    Parameters
    ----------
    results : xarray.Dataset
        From :func:`neurotask.encoding.fit`: ``alpha (model, voxel)``, ``is_test (trial)``,
        ``fold (trial)``, attr ``standardize``.
    features : xarray.DataArray, dims (model, image, feature)
        The features the results were fitted on.
    responses : xarray.DataArray, dims (trial, voxel)
        The responses the results were fitted on.
    models : sequence of str, optional
        Subset of ``results.model``; default all.
    backend : {"numpy", "torch", "auto"}
        Array backend of the tasks (as :func:`neurotask.encoding.fit`; ``"auto"`` is resolved
        where each task runs: torch on CUDA when that process sees a GPU, else numpy).
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device.
    allow_tf32 : bool
        Let CUDA GEMMs use TF32.

    Returns
    -------
    xarray.DataArray, dims (model, trial, voxel), float32
        ``prediction`` over the test trials, in the order of ``responses.isel(trial=is_test)``;
        attrs ``backend``, ``device``, ``allow_tf32`` as requested.

    Examples
    --------
    >>> from neurotask.datasets import make_synthetic_features
    >>> from neurotask.encoding import fit
    >>> feats = make_synthetic_features(["normal"], 60, n_features=8)
    >>> resp = xr.DataArray(np.random.default_rng(0).standard_normal((120, 4)).astype("float32"),
    ...                     dims=("trial", "voxel"), coords={"image": ("trial", np.tile(feats.image.values, 2)),
    ...                                                      "session": ("trial", np.repeat(np.arange(6), 20))})
    >>> results = fit(feats, resp, progress=False, repeats="keep")
    >>> predict(results, feats, resp).sizes["trial"] == int(results.is_test.sum())
    True
    """
    request = backends.check_backend(backend, device, allow_tf32, function="predict")
    features = stores.validate_features(features, name="features")
    responses = stores.validate_responses(responses, name="responses")
    is_test = _check_results(results, responses)
    spaces = model_spaces(results)
    names = list(spaces) if models is None else [str(m) for m in models]
    missing = [m for m in names if m not in spaces]
    if missing:
        raise ValueError(f"models {missing} are not in results (it has {list(spaces)}).")
    standardize = bool(results.attrs.get("standardize", False))
    train, test = training_index(results), np.flatnonzero(is_test)
    data = responses.data if isinstance(responses.data, da.Array) else da.from_array(np.asarray(responses.data))
    data = data.rechunk((-1, data.chunksize[1]))
    # torch tasks go to GPU workers when the client's workers advertise that resource
    resources = None if request.name == "numpy" else backends.gpu_resources(execution.current_client())
    with dask.annotate(**({"resources": resources} if resources else {})):
        stacked = [_model_predictions(results, features, responses, data, name, spaces[name], train, test,
                                      standardize, request) for name in names]
    test_responses = responses.isel(trial=test)
    coords = {str(c): test_responses[c] for c in test_responses.coords}
    return xr.DataArray(
        da.stack(stacked, axis=0), dims=("model", "trial", "voxel"), coords={"model": names, **coords},
        name="prediction",
        attrs={"long_name": "ridge prediction of the test responses", "units": responses.attrs.get("units", ""),
               "backend": backend, "device": device, "allow_tf32": bool(allow_tf32)},
    )
