"""Model × model similarity of representational geometries: compare RDMs, one model at a time.

:func:`model_similarity` computes each model's condensed RDM (on the Dask client if there is
one, else on threads in this process) and keeps only one 4-byte value per image pair (ranks for
Spearman and tau-a, the dissimilarity for Pearson); the model × model products are then summed
in float64. :func:`compare_rdms` does the comparison for RDMs that are already computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from neurotask import backend as backends
from neurotask.execution import blas_threads, cpu_count, current_client, map_unordered
from neurotask.execution import progress as show_progress
from neurotask.rsa import _kernels, _torch
from neurotask.rsa._kernels import _TRANSFORMS, UnusableFeatures, _correlation_from_products, _cross_products, _tau_a_matrix
from neurotask.rsa._labels import check_choice, plain, rsa_attrs
from neurotask.rsa.rdms import RDM_METHODS
from neurotask.rsa.subsets import select_images
from neurotask.stores import sha256_array

__all__ = ["COMPARE_METHODS", "compare_rdms", "model_similarity"]

#: How two models' RDMs (upper triangles) are compared.
COMPARE_METHODS: dict[str, str] = {
    "spearman": "Spearman rank correlation, ties averaged (rsatoolbox 'spearman')",
    "pearson": "Pearson correlation (rsatoolbox 'corr')",
    "tau-a": "Kendall tau-a, ties counted as neither concordant nor discordant (rsatoolbox 'tau-a')",
}

#: Bytes of RDM work (beyond the kept vectors) that model_similarity may hold at once in process.
_WORK_BUDGET = 1_500_000_000


def _similarity_array(values: np.ndarray, models: xr.DataArray, attrs: dict[str, Any]) -> xr.DataArray:
    names = plain(models.values)
    coords = {"model": names, "model_": ("model_", names)}
    for name, coord in models.coords.items():
        if name != "model":
            coords[str(name)] = ("model", plain(coord.values))
    return xr.DataArray(values.astype(np.float64), dims=("model", "model_"), coords=coords, name="similarity", attrs=attrs)


def _finish(vectors: np.ndarray, offsets: np.ndarray, compare: str, progress: bool = False,
            backend: tuple[str, str] = ("numpy", "cpu"), device_batch: int | None = None) -> np.ndarray:
    """The model × model matrix from the kept vectors (single-threaded BLAS: thin GEMMs).

    ``backend``: the resolved ``(name, device)`` of the cross products; tau-a's O(P log P) counts
    run in numpy either way.
    """
    name, device = backend
    with blas_threads(1):
        if compare != "tau-a":
            if name == "torch":
                return _correlation_from_products(_torch.cross_products(vectors, offsets, device, device_batch))
            return _correlation_from_products(_cross_products(vectors, offsets))
        m = len(vectors)
        with show_progress("tau-a per model pair", m * (m - 1) // 2, enabled=progress) as advance:
            return _tau_a_matrix(vectors, advance)


def compare_rdms(rdms: xr.DataArray, compare: str = "spearman") -> xr.DataArray:
    """Compare every pair of models' RDMs.

    Parameters
    ----------
    rdms : xarray.DataArray, dims (model, pair)
        Condensed RDMs, e.g. from :func:`~neurotask.rsa.rdm` (computed here, one model at a time).
    compare : {"spearman", "pearson", "tau-a"}
        See :data:`COMPARE_METHODS`.

    Returns
    -------
    xarray.DataArray, dims (model, model_), float64
        Computed. Equals rsatoolbox's ``compare(rdms, rdms, method)`` off the diagonal; the
        diagonal is 1 (for tau-a of an RDM with ties, rsatoolbox's is ``1 − tied pairs / all pairs``).

    Raises
    ------
    ValueError
        For an unknown method, wrong dims, or an RDM holding NaN/inf.

    Examples
    --------
    >>> rdms = xr.DataArray([[0.1, 0.5, 0.9], [0.2, 0.4, 0.8]], dims=("model", "pair"),
    ...                     coords={"model": ["a", "b"]})
    >>> float(compare_rdms(rdms).sel(model="a", model_="b"))
    1.0
    """
    check_choice("compare", compare, COMPARE_METHODS)
    if set(rdms.dims) != {"model", "pair"}:
        raise ValueError(f"rdms must have dims ('model', 'pair') (condensed RDMs); got {rdms.dims}")
    rdms = rdms.transpose("model", "pair")
    transformed = []
    for m, model in enumerate(map(str, rdms["model"].values)):
        values = np.asarray(rdms.isel(model=m).values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"the RDM of model {model!r} holds NaN/inf; compute it on images with finite features")
        transformed.append(_TRANSFORMS[compare](values, 0.0))  # given RDMs: their ties exactly
    vectors = np.stack([v for v, _ in transformed])
    offsets = np.array([o for _, o in transformed])
    sim = _finish(vectors, offsets, compare)
    n_images = rdms.attrs.get("n_images", int(round((1 + np.sqrt(1 + 8 * rdms.sizes["pair"])) / 2)))
    attrs = {**rdms.attrs, "compare": compare, "n_images": n_images, "long_name": COMPARE_METHODS[compare]}
    return _similarity_array(sim, rdms["model"], attrs)


def _model_threads(n_pairs: int) -> tuple[int, int]:
    """Models computed at once in this process, and BLAS threads for each.

    One model's RDM and ranks need ~48 bytes per image pair (580 MB at 4916 images); as many
    models run side by side as cores allow within :data:`_WORK_BUDGET`. Each gets its share of
    the cores for BLAS: single-threaded GEMMs side by side also avoid OpenBLAS's thread
    hand-offs, which cost ~0.1 s per call on a busy machine.
    """
    cores = cpu_count()
    threads = max(1, min(cores, _WORK_BUDGET // max(1, 48 * n_pairs)))
    return threads, max(1, cores // threads)


def _model_vector(
    x: np.ndarray, method: str, compare: str, images: np.ndarray, request: backends.Backend,
    device_batch: int | None,
) -> tuple[np.ndarray, float] | UnusableFeatures:
    """One model's task: its kept vector and offset, on the backend resolved where the task runs."""
    name, device = backends.resolve(request)
    if name == "torch":
        return _torch.model_vector(x, method, compare, images, device, device_batch)
    return _kernels._model_vector(x, method, compare, images)


def _model_vectors(
    features: xr.DataArray, images: np.ndarray, method: str, compare: str, client: Any,
    request: backends.Backend, device_batch: int | None,
) -> Iterator[tuple[int, tuple[np.ndarray, float]]]:
    """Yield ``(model index, (vector, offset))`` as models finish, a bounded number held at once.

    Each model's features travel inside its task (numpy) or are read by it (a lazy block), so a
    task lost with its worker can be re-run. With torch in this process, one model at a time:
    the device (and torch's own threads) is the parallelism, and its memory holds one RDM.
    """
    models = [str(m) for m in features["model"].values]
    items = [features.data[m] for m in range(len(models))]
    threads, per_model_blas = _model_threads(len(images) * (len(images) - 1) // 2)
    if client is None and backends.resolve(request)[0] == "torch":
        threads, per_model_blas = 1, None
    with blas_threads(None if client is not None else per_model_blas):
        results = map_unordered(
            _model_vector, items, args=(method, compare, images, request, device_batch), client=client,
            threads=threads, in_flight=None if client is not None else threads,
        )
        for m, result in results:
            if isinstance(result, UnusableFeatures):
                raise result.for_model(models[m])
            yield m, result


def _products_backend(request: backends.Backend, client: Any) -> tuple[str, str]:
    """Where this process sums the cross products: the request resolved here; on a client (whose
    workers may see a GPU this process lacks), this process's own device for a torch request."""
    if client is not None and request.name != "numpy" and request.device != "cpu":
        request = backends.Backend(request.name, "auto")
    return backends.resolve(request)


def _backend_attrs(request: backends.Backend, client: Any) -> dict[str, str]:
    """``backend`` and ``device``: resolved here without a client, as requested on one (each task resolves)."""
    if request.name == "numpy" or client is None:
        return dict(zip(("backend", "device"), backends.resolve(request)))
    return {"backend": request.name, "device": request.device}


def _ids_hash(images: np.ndarray) -> str:
    return sha256_array(np.asarray(json.dumps(list(map(str, images))).encode()))


def _collect(
    features: xr.DataArray, images: np.ndarray, method: str, compare: str, client: Any, progress: bool,
    request: backends.Backend, device_batch: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every model's kept vector (int32 ranks or float32 values) and offset."""
    n_models, p = features.sizes["model"], len(images) * (len(images) - 1) // 2
    vectors = np.empty((n_models, p), dtype=np.float32 if compare == "pearson" else np.int32)
    offsets = np.zeros(n_models)
    with show_progress(f"RDMs of {n_models} models on {len(images)} images", n_models, enabled=progress) as advance:
        for m, (vector, offset) in _model_vectors(features, images, method, compare, client, request, device_batch):
            vectors[m], offsets[m] = vector, offset
            advance()
    return vectors, offsets


def model_similarity(
    features: xr.DataArray,
    subset: Any = None,
    rdm_method: str = "correlation",
    compare: str = "spearman",
    *,
    client: Any = None,
    progress: bool = True,
    backend: str = "numpy",
    device: str = "auto",
    device_batch: int | None = None,
) -> xr.DataArray:
    """Similarity between models' representational geometries (RSA), computed.

    Model by model (on the Dask client if one is given or current; otherwise in this process,
    a few models side by side on threads with single-threaded BLAS), the condensed RDM is
    computed and reduced to one 4-byte value per image pair (ranks for Spearman and tau-a, the
    dissimilarity for Pearson); the model × model products are then summed in float64. Memory
    beyond the input is ``models × pairs × 4`` bytes plus ~48 bytes per pair for each model in
    flight (measured: 1.95 GB for 25 models × 4916 images, 12M pairs).

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features (lazy or in memory) with ``model`` and ``image`` coordinates, float32 or
        float64; a missing ``source`` is derived from BOLD5000-style image ids.
    subset : optional
        Images to use (see :func:`~neurotask.rsa.select_images`), e.g. ``'source == "scene"'``.
    rdm_method : {"correlation", "cosine", "euclidean"}
        See :data:`~neurotask.rsa.RDM_METHODS`.
    compare : {"spearman", "pearson", "tau-a"}
        See :data:`COMPARE_METHODS`. tau-a costs one O(P log P) count per model pair.
    client : distributed.Client, optional
        Where to compute the models' RDMs; default the current client, else this process.
    progress : bool
        Show progress.
    backend : {"numpy", "torch", "auto"}
        Array backend of the RDMs, ranks and cross products (:mod:`neurotask.rsa._torch`: the
        same algorithm and precision, float64 RDMs and products); ``"auto"``: torch on CUDA where
        a GPU is visible, else numpy. tau-a's pair counts run in numpy either way. With torch in
        this process, models are computed one at a time on the device.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device; ``"auto"``: CUDA when available, else the CPU.
    device_batch : int, optional
        Cap on image pairs per torch step (an RDM strip, a block of the cross products); default
        half the device's free memory on CUDA, numpy's strip and block sizes on the CPU. One
        model's whole RDM is on the device while it is ranked (~40 bytes per pair).

    Returns
    -------
    xarray.DataArray, dims (model, model_), float64
        With attrs ``rdm_method``, ``compare``, ``subset``, ``n_images``, ``n_pairs``,
        ``backend`` and ``device`` (resolved in this process; on a client, as requested: each
        task resolves where it runs).

    Raises
    ------
    ValueError
        For unknown methods, a bad subset, or features with NaN, constant (correlation) or zero
        (cosine) rows; the message names the model and images.

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "depth_zbuffer", "jigsaw"], 60, n_features=32)
    >>> sim = model_similarity(feats, progress=False)
    >>> bool(sim.sel(model="normal", model_="depth_zbuffer") > sim.sel(model="normal", model_="jigsaw"))
    True
    """
    check_choice("rdm_method", rdm_method, RDM_METHODS)
    check_choice("compare", compare, COMPARE_METHODS)
    request = backends.check_backend(backend, device, function="model_similarity")
    if device_batch is not None and (not isinstance(device_batch, (int, np.integer)) or device_batch < 1):
        raise ValueError(f"The 'device_batch' parameter of model_similarity must be an int ≥ 1. Got {device_batch!r}.")
    features, description = select_images(features, subset)
    images = plain(features["image"].values).astype(str)
    client = current_client(client)
    vectors, offsets = _collect(features, images, rdm_method, compare, client, progress, request, device_batch)
    sim = _finish(vectors, offsets, compare, progress, _products_backend(request, client), device_batch)
    attrs = rsa_attrs(
        rdm_method, description, len(images), compare=compare, n_pairs=vectors.shape[1],
        long_name=f"{compare} similarity of {rdm_method} RDMs", images_sha256=_ids_hash(images),
        **_backend_attrs(request, client),
    )
    return _similarity_array(sim, features["model"], attrs)
