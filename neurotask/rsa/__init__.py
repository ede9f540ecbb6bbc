"""Representational similarity analysis across models: RDMs, model×model similarity, trees (DESIGN §3).

* :func:`rdm` — one representational dissimilarity matrix per model, lazily, as a labeled
  condensed vector ``(model, pair)`` or a square ``(model, image, image_)`` matrix.
* :func:`model_similarity` — Spearman (or Pearson, Kendall tau-a) between the models' RDMs,
  on all images or a subset, computed one model at a time (on the Dask client if there is one),
  so that memory holds one model's RDM plus one 4-byte vector per model — never 25 square
  matrices.
* :func:`compare_rdms` — the same comparison for RDMs you already have.
* :func:`linkage` — average-linkage tree on ``1 − similarity`` with its leaf order.

Exactness. Spearman ranks average ties (as :func:`scipy.stats.rankdata`); each model's ranks are
kept as *doubled, centered* ranks ``2·rank − (P + 1)``, which are integers, stored as int32
(exact for up to 2³¹ pairs, i.e. ~65,000 images) and multiplied and summed in float64. Kendall
tau-a follows rsatoolbox: ``(concordant − discordant) / (P (P − 1) / 2)`` with tied pairs counted
as neither, computed exactly: one packed sort and one O(P log P) Fenwick-tree count of discordant
pairs per model pair (scipy's kernel behind :func:`scipy.stats.kendalltau`).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd
import xarray as xr
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from neurotask.rsa._kernels import (
    _TRANSFORMS,
    _condensed_rdm,
    _correlation_from_products,
    _cross_products,
    _model_vector,
    _tau_a_matrix,
)
from neurotask.stores import validate_features

__all__ = [
    "RDM_METHODS",
    "COMPARE_METHODS",
    "LINKAGE_METHODS",
    "Tree",
    "select_images",
    "rdm",
    "compare_rdms",
    "model_similarity",
    "linkage",
]

#: Dissimilarity between two images' feature vectors.
RDM_METHODS: dict[str, str] = {
    "correlation": "1 − Pearson r between the images' feature vectors (rsatoolbox 'correlation')",
    "cosine": "1 − cosine similarity between the images' feature vectors (scipy 'cosine')",
    "euclidean": "Euclidean distance between the images' feature vectors (scipy 'euclidean'; "
    "rsatoolbox's 'euclidean' is its square divided by the number of features, same ranks)",
}

#: How two models' RDMs (upper triangles) are compared.
COMPARE_METHODS: dict[str, str] = {
    "spearman": "Spearman rank correlation, ties averaged (rsatoolbox 'spearman')",
    "pearson": "Pearson correlation (rsatoolbox 'corr')",
    "tau-a": "Kendall tau-a, ties counted as neither concordant nor discordant (rsatoolbox 'tau-a')",
}

#: Bytes of RDM work (beyond the kept vectors) that model_similarity may hold at once in process.
_WORK_BUDGET = 1_500_000_000

#: scipy linkage methods valid on a non-Euclidean dissimilarity.
LINKAGE_METHODS: tuple[str, ...] = ("average", "complete", "single", "weighted")


# --------------------------------------------------------------------------------------------
# image subsets


def _plain(values: np.ndarray) -> np.ndarray:
    """Coordinate values with numpy's variable-width strings (as zarr v3 returns them) as ``str``."""
    values = np.asarray(values)
    return np.array(values.tolist(), dtype=str) if values.dtype.kind in "TO" else values


def _image_table(features: xr.DataArray) -> pd.DataFrame:
    coords = {str(name): _plain(coord.values) for name, coord in features.coords.items() if coord.dims == ("image",)}
    return pd.DataFrame(coords)


def select_images(features: xr.DataArray, subset: Any = None) -> tuple[xr.DataArray, str]:
    """Restrict features to an image subset.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features with image coordinates (``image``, ``source``, …).
    subset : None, str, mapping, boolean array or sequence of str
        None: all images. A str: a query on the image coordinates (pandas syntax), e.g.
        ``'source == "scene"'``. A mapping: coordinate → value or list of values, e.g.
        ``{"source": "scene"}``. A boolean mask over images (array or DataArray on ``image``).
        A sequence of image ids.

    Returns
    -------
    features : xarray.DataArray, dims (model, image, feature)
        The selected images, in their original order (lazy if the input was).
    description : str
        The subset in words, for attrs and titles.

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "jigsaw"], 100, n_features=8)
    >>> scenes, text = select_images(feats, {"source": "scene"})
    >>> text
    "source == 'scene'"
    """
    n = features.sizes["image"]
    if subset is None:
        return features, "all images"
    table = _image_table(features)
    if isinstance(subset, str):
        try:
            mask = np.asarray(table.eval(subset, engine="python"), dtype=bool)
        except Exception as error:  # pandas raises many types for a bad expression
            raise ValueError(
                f"subset {subset!r} is not a valid query on the image coordinates {sorted(table)} ({error}); "
                f"write e.g. 'source == \"scene\"'"
            ) from error
        description = subset
    elif isinstance(subset, Mapping):
        mask = np.ones(n, dtype=bool)
        parts = []
        for coord, wanted in subset.items():
            if coord not in table:
                raise ValueError(
                    f"subset names the coordinate {coord!r}, which is not on the image dim; "
                    f"image coordinates: {sorted(table)}"
                )
            values = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else list(wanted)
            mask &= table[coord].isin(values).to_numpy()
            parts.append(f"{coord} == {values[0]!r}" if len(values) == 1 else f"{coord} in {values!r}")
        description = " and ".join(parts)
    else:
        values = np.asarray(subset.values if isinstance(subset, xr.DataArray) else subset)
        if values.dtype == bool:
            if values.shape != (n,):
                raise ValueError(f"a boolean subset must have one entry per image ({n}); got shape {values.shape}")
            mask = values
            description = f"boolean mask ({int(mask.sum())} of {n} images)"
        else:
            ids = [str(v) for v in values.ravel()]
            known = pd.Index(_plain(features["image"].values))
            missing = [i for i in ids if i not in known]
            if missing:
                raise ValueError(
                    f"subset names {len(missing)} image ids that are not in features, e.g. {missing[:5]}"
                )
            mask = known.isin(ids)
            description = f"{len(set(ids))} listed image ids"
    count = int(mask.sum())
    if count < 3:
        raise ValueError(
            f"subset {description!r} selects {count} images; an RDM comparison needs at least 3 images "
            f"(2 dissimilarities cannot be rank-correlated). Choose a larger subset."
        )
    return features.isel(image=np.flatnonzero(mask)), description


# --------------------------------------------------------------------------------------------
# argument checks and labels


def _check_choice(name: str, value: str, choices: Sequence[str] | Mapping[str, str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")


def _pair_coords(images: np.ndarray) -> xr.Coordinates:
    n = len(images)
    codes_dtype = np.int16 if n < 2**15 else np.int32
    i, j = np.triu_indices(n, 1)
    index = pd.MultiIndex(
        levels=[pd.Index(images, name="image_i"), pd.Index(images, name="image_j")],
        codes=[i.astype(codes_dtype), j.astype(codes_dtype)],
        names=["image_i", "image_j"],
        verify_integrity=False,
    )
    return xr.Coordinates.from_pandas_multiindex(index, "pair")


def _attrs(method: str, subset: str, n_images: int, **more: Any) -> dict[str, Any]:
    return {"rdm_method": method, "subset": subset, "n_images": n_images, **more}


# --------------------------------------------------------------------------------------------
# public API


def rdm(
    features: xr.DataArray,
    method: str = "correlation",
    subset: Any = None,
    *,
    square: bool = False,
) -> xr.DataArray:
    """Representational dissimilarity matrix of each model, lazily.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features (lazy or in memory), float32.
    method : {"correlation", "cosine", "euclidean"}
        Dissimilarity between images (see :data:`RDM_METHODS`).
    subset : optional
        Images to use (see :func:`select_images`).
    square : bool
        Return the square matrices instead of the condensed upper triangles.

    Returns
    -------
    xarray.DataArray, dims (model, pair) or (model, image, image_), float64
        Dask-backed, one chunk per model. The condensed form's ``pair`` index is a MultiIndex of
        ``image_i``, ``image_j`` (``i < j`` in image order, scipy ``squareform`` order), so
        ``r.sel(image_i=a, image_j=b)`` works. Computing a model raises ``ValueError`` naming the
        model and images if its features hold NaN or are constant (correlation) or zero (cosine).

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "jigsaw"], 20, n_features=16)
    >>> r = rdm(feats)
    >>> r.sizes["pair"], rdm(feats, square=True).sizes["image_"]
    (190, 20)
    """
    _check_choice("method", method, RDM_METHODS)
    features = validate_features(features)
    features, description = select_images(features, subset)
    images = _plain(features["image"].values).astype(str)
    n, p = len(images), len(images) * (len(images) - 1) // 2
    rows = []
    for m, model in enumerate(map(str, features["model"].values)):
        vector = dask.delayed(_condensed_rdm, pure=True)(features.data[m], method, model, images)
        row = da.from_delayed(vector, shape=(p,), dtype=np.float64)
        rows.append(row.map_blocks(ssd.squareform, checks=False, chunks=(n, n), new_axis=1) if square else row)
    data = da.stack(rows)
    attrs = _attrs(method, description, n, long_name=f"{method} dissimilarity", description=RDM_METHODS[method])
    model_coords = {c: v for c, v in features.coords.items() if v.dims == ("model",)}
    if square:
        image_coords = {c: v for c, v in features.coords.items() if v.dims == ("image",)}
        other = {f"{c}_" if c != "image" else "image_": (("image_",), v.values) for c, v in image_coords.items()}
        return xr.DataArray(
            data, dims=("model", "image", "image_"), coords={**model_coords, **image_coords, **other},
            name="rdm", attrs=attrs,
        )
    coords = xr.Coordinates(model_coords).merge(_pair_coords(images)).coords
    return xr.DataArray(data, dims=("model", "pair"), coords=coords, name="rdm", attrs=attrs)


def _current_client(client: Any) -> Any:
    if client is not None or "distributed" not in sys.modules:  # no import: nobody made a client
        return client
    try:
        return sys.modules["distributed"].default_client()
    except ValueError:
        return None


def _similarity_array(values: np.ndarray, models: xr.DataArray, attrs: dict[str, Any]) -> xr.DataArray:
    names = _plain(models.values)
    coords = {"model": names, "model_": ("model_", names)}
    for name, coord in models.coords.items():
        if name != "model":
            coords[str(name)] = ("model", _plain(coord.values))
    return xr.DataArray(values.astype(np.float64), dims=("model", "model_"), coords=coords, name="similarity", attrs=attrs)


def _finish(vectors: np.ndarray, offsets: np.ndarray, compare: str, progress: Progress | None = None) -> np.ndarray:
    if compare == "tau-a":
        m = len(vectors)
        task = progress.add_task("tau-a per model pair", total=m * (m - 1) // 2) if progress else None
        return _tau_a_matrix(vectors, (lambda: progress.advance(task)) if progress else None)
    return _correlation_from_products(_cross_products(vectors, offsets))


def compare_rdms(rdms: xr.DataArray, compare: str = "spearman") -> xr.DataArray:
    """Compare every pair of models' RDMs.

    Parameters
    ----------
    rdms : xarray.DataArray, dims (model, pair)
        Condensed RDMs, e.g. from :func:`rdm` (computed here, one model at a time).
    compare : {"spearman", "pearson", "tau-a"}
        See :data:`COMPARE_METHODS`.

    Returns
    -------
    xarray.DataArray, dims (model, model_), float64
        Computed. Equals rsatoolbox's ``compare(rdms, rdms, method)``.
    """
    _check_choice("compare", compare, COMPARE_METHODS)
    if set(rdms.dims) != {"model", "pair"}:
        raise ValueError(f"rdms must have dims ('model', 'pair') (condensed RDMs); got {rdms.dims}")
    rdms = rdms.transpose("model", "pair")
    transformed = []
    for m, model in enumerate(map(str, rdms["model"].values)):
        values = np.asarray(rdms.isel(model=m).values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"the RDM of model {model!r} holds NaN/inf; compute it on images with finite features")
        transformed.append(_TRANSFORMS[compare](values))
    vectors = np.stack([v for v, _ in transformed])
    offsets = np.array([o for _, o in transformed])
    with threadpool_limits(1):
        sim = _finish(vectors, offsets, compare)
    n_images = rdms.attrs.get("n_images", int(round((1 + np.sqrt(1 + 8 * rdms.sizes["pair"])) / 2)))
    attrs = {**rdms.attrs, "compare": compare, "n_images": n_images, "long_name": COMPARE_METHODS[compare]}
    return _similarity_array(sim, rdms["model"], attrs)


def model_similarity(
    features: xr.DataArray,
    subset: Any = None,
    rdm_method: str = "correlation",
    compare: str = "spearman",
    *,
    client: Any = None,
    progress: bool = True,
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
        Features (lazy or in memory), float32.
    subset : optional
        Images to use (see :func:`select_images`), e.g. ``'source == "scene"'``.
    rdm_method : {"correlation", "cosine", "euclidean"}
        See :data:`RDM_METHODS`.
    compare : {"spearman", "pearson", "tau-a"}
        See :data:`COMPARE_METHODS`. tau-a costs one O(P log P) count per model pair.
    client : distributed.Client, optional
        Where to compute the models' RDMs; default the current client, else this process.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.DataArray, dims (model, model_), float64
        With attrs ``rdm_method``, ``compare``, ``subset``, ``n_images``, ``n_pairs``.

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "depth_zbuffer", "jigsaw"], 60, n_features=32)
    >>> sim = model_similarity(feats, progress=False)
    >>> bool(sim.sel(model="normal", model_="depth_zbuffer") > sim.sel(model="normal", model_="jigsaw"))
    True
    """
    _check_choice("rdm_method", rdm_method, RDM_METHODS)
    _check_choice("compare", compare, COMPARE_METHODS)
    features = validate_features(features)
    features, description = select_images(features, subset)
    images = _plain(features["image"].values).astype(str)
    models = [str(m) for m in features["model"].values]
    n, p = len(images), len(images) * (len(images) - 1) // 2
    vectors = np.empty((len(models), p), dtype=np.float32 if compare == "pearson" else np.int32)
    offsets = np.zeros(len(models))
    client = _current_client(client)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"RDMs of {len(models)} models on {n} images", total=len(models))
        for m, (vector, offset) in _model_vectors(features, images, rdm_method, compare, client):
            vectors[m], offsets[m] = vector, offset
            bar.advance(task)
        with threadpool_limits(1):  # thin GEMMs (models × block of pairs): threads only cost
            sim = _finish(vectors, offsets, compare, bar)
    attrs = _attrs(
        rdm_method, description, n, compare=compare, n_pairs=p, long_name=f"{compare} similarity of {rdm_method} RDMs",
        images_sha256=_ids_hash(images),
    )
    return _similarity_array(sim, features["model"], attrs)


def _ids_hash(images: np.ndarray) -> str:
    from neurotask.stores import sha256_array

    return sha256_array(np.asarray(json.dumps(list(map(str, images))).encode()))


def _model_vectors(features: xr.DataArray, images: np.ndarray, method: str, compare: str, client: Any):
    """Yield ``(model index, (vector, offset))`` as models finish, holding one result at a time."""
    models = [str(m) for m in features["model"].values]
    if client is None:
        yield from _model_vectors_in_process(features, images, method, compare)
        return
    from distributed import as_completed

    from neurotask.cluster import submit_with_data

    def submit(m: int) -> Any:
        data = features.data[m]
        if isinstance(data, da.Array):
            [future] = client.compute([dask.delayed(_model_vector, pure=True)(data, method, compare, models[m], images)])
            return future
        # in memory: carried in the task (not scattered), so a lost worker's task can be re-run
        return submit_with_data(client, _model_vector, np.asarray(data), method, compare, models[m], images)

    futures = {submit(m): m for m in range(len(models))}
    for future in as_completed(futures):
        yield futures.pop(future), future.result()
        future.release()


def _model_threads(n_pairs: int) -> tuple[int, int]:
    """Models computed at once in this process, and BLAS threads for each.

    One model's RDM and ranks need ~48 bytes per image pair (580 MB at 4916 images); as many
    models run side by side as cores allow within :data:`_WORK_BUDGET`. Each gets its share of
    the cores for BLAS: single-threaded GEMMs side by side also avoid OpenBLAS's thread
    hand-offs, which cost ~0.1 s per call on a busy machine.
    """
    cores = os.cpu_count() or 1
    threads = max(1, min(cores, _WORK_BUDGET // max(1, 48 * n_pairs)))
    return threads, max(1, cores // threads)


def _model_vectors_in_process(features: xr.DataArray, images: np.ndarray, method: str, compare: str):
    models = [str(m) for m in features["model"].values]
    threads, blas_threads = _model_threads(len(images) * (len(images) - 1) // 2)

    def one(m: int) -> tuple[np.ndarray, float]:
        return _model_vector(np.asarray(features.data[m]), method, compare, models[m], images)

    with threadpool_limits(blas_threads), ThreadPoolExecutor(threads) as pool:
        pending = {pool.submit(one, m): m for m in range(min(threads, len(models)))}
        queued = iter(range(len(pending), len(models)))
        while pending:  # at most `threads` models in flight, so at most that many results held
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
                for m in itertools.islice(queued, 1):
                    pending[pool.submit(one, m)] = m


class Tree(NamedTuple):
    """A hierarchical clustering of models.

    Attributes
    ----------
    matrix : numpy.ndarray of shape (n_models - 1, 4)
        scipy linkage matrix.
    order : numpy.ndarray of shape (n_models,)
        Leaf order (indices into ``labels``), as the dendrogram draws it.
    labels : list of str
        Model names, in the similarity matrix's order.
    method : str
        Linkage method.
    """

    matrix: np.ndarray
    order: np.ndarray
    labels: list[str]
    method: str

    @property
    def leaves(self) -> list[str]:
        """Model names in leaf order."""
        return [self.labels[i] for i in self.order]

    def clusters(self, n_clusters: int) -> xr.DataArray:
        """Cut the tree into ``n_clusters`` groups; returns a group number (1…) per model."""
        if not 1 <= n_clusters <= len(self.labels):
            raise ValueError(f"n_clusters must be in 1..{len(self.labels)}; got {n_clusters}")
        groups = sch.fcluster(self.matrix, n_clusters, criterion="maxclust")
        return xr.DataArray(groups, dims="model", coords={"model": self.labels}, name="cluster")


def linkage(similarity: xr.DataArray, method: str = "average") -> Tree:
    """Hierarchical clustering of models on ``1 − similarity`` (scipy).

    Parameters
    ----------
    similarity : xarray.DataArray, dims (model, model_)
        A symmetric similarity, e.g. from :func:`model_similarity` or the brain-derived one.
    method : {"average", "complete", "single", "weighted"}
        Linkage method (average = UPGMA, as in Taskonomy and Neural Taskonomy).

    Returns
    -------
    Tree
        ``matrix`` (scipy linkage), ``order`` (leaf order), ``labels``, ``method``.

    Examples
    --------
    >>> sim = xr.DataArray([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]], dims=("model", "model_"),
    ...                    coords={"model": ["a", "b", "c"], "model_": ["a", "b", "c"]})
    >>> linkage(sim).clusters(2).values.tolist()
    [1, 1, 2]
    """
    _check_choice("method", method, LINKAGE_METHODS)
    if set(similarity.dims) != {"model", "model_"}:
        raise ValueError(f"similarity must have dims ('model', 'model_'); got {similarity.dims}")
    values = np.asarray(similarity.transpose("model", "model_").values, dtype=np.float64)
    if not np.all(np.isfinite(values)) or not np.allclose(values, values.T, atol=1e-10):
        raise ValueError("similarity must be finite and symmetric (model × model)")
    distance = np.clip(1.0 - values, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    matrix = sch.linkage(ssd.squareform(distance, checks=False), method=method)
    return Tree(matrix, sch.leaves_list(matrix), [str(m) for m in similarity["model"].values], method)
