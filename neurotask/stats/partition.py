"""Variance partitioning and transfer between pairs of feature spaces (DESIGN §3).

For a pair (A, B), each R² from its own test-set fit::

    unique_a = r2_ab − r2_b           unique_b = r2_ab − r2_a
    shared   = r2_a + r2_b − r2_ab    relative_unique_a = unique_a / r2_ab
    transfer_a_to_b = shared / r2_b   (the fraction of B's explained variance that A also explains)
    transfer_b_to_a = shared / r2_a

``A∪B`` is the joint model ``(a, b)`` of :func:`neurotask.encoding.fit`, named ``"a+b"``: the two
spaces concatenated, every feature standardized with training statistics. The single models are
fitted standardized too (``standardize=True``) unless ``results`` supplies them. With
``banded=True`` the joint fit has a separate alpha per space: himalaya's ``BandedRidgeCV`` searches
a grid of space weightings ``(w, 1 − w)`` (equivalently, ratios α_A/α_B in ``10^[-2, 2]``) × the
alpha grid, by K-fold CV grouped by session on the training set, per voxel (its CV score is the
validation MSE summed over folds, which ranks candidates like the mean validation R² up to fold
weighting), on the folds of the single-model fits' split.

Summaries (``<variable>_mean``) are taken over the voxels where the quantities are meaningful:
unique and shared over the voxels where both single models are significant (given a
permutation result) or else both have R² > 0; transfer A→B over those of them with R²(B) > 0
(B→A: R²(A) > 0). The rule is in attrs ``summary_rule``, the counts in ``n_voxels_summary``,
``n_voxels_transfer_a_to_b`` and ``n_voxels_transfer_b_to_a``; a summary is NaN only when its
count is 0.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr

from neurotask import encoding, execution
from neurotask.encoding import DEFAULT_ALPHAS, r2_score
from neurotask.encoding.design import aligned_features, model_spaces, model_specs, spaces_coord, standardized_spaces
from neurotask.encoding.split import training_index
from neurotask.stores import validate_features, validate_responses

__all__ = ["variance_partition", "ceiling_normalized", "PARTITION_VARIABLES"]

#: Per-voxel outputs (pair, voxel), in order.
PARTITION_VARIABLES = (
    "r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared",
    "relative_unique_a", "relative_unique_b", "transfer_a_to_b", "transfer_b_to_a",
)
_ADDITIVE = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared")
_BANDED_RATIOS = np.logspace(-2, 2, 9)
#: The fits' split attrs carried into the result (folds rule, repeats left out).
_SPLIT_ATTRS = ("cv_folds", "cv_rule", "repeats", "n_test_trials_dropped", "n_train_trials_dropped")  # alpha_A / alpha_B grid of the banded search


def _ratio(numerator, denominator):
    """numerator / denominator where the denominator is positive, else NaN."""
    return (numerator / denominator).where(denominator > 0)


def _partition(r2_a: xr.DataArray, r2_b: xr.DataArray, r2_ab: xr.DataArray) -> dict[str, xr.DataArray]:
    """The DESIGN §3 quantities from the three R² arrays (float64, so the identities hold to 1e-15)."""
    r2_a, r2_b, r2_ab = (x.astype(np.float64) for x in (r2_a, r2_b, r2_ab))
    unique_a = r2_ab - r2_b
    unique_b = r2_ab - r2_a
    shared = r2_a + r2_b - r2_ab
    return {
        "r2_a": r2_a, "r2_b": r2_b, "r2_ab": r2_ab,
        "unique_a": unique_a, "unique_b": unique_b, "shared": shared,
        "relative_unique_a": _ratio(unique_a, r2_ab), "relative_unique_b": _ratio(unique_b, r2_ab),
        "transfer_a_to_b": _ratio(shared, r2_b), "transfer_b_to_a": _ratio(shared, r2_a),
    }


def ceiling_normalized(values: xr.DataArray | xr.Dataset, ceiling: xr.DataArray) -> xr.DataArray | xr.Dataset:
    """Scores as a fraction of the noise ceiling (voxels with a non-positive ceiling → NaN).

    Parameters
    ----------
    values : xarray.DataArray or Dataset with a ``voxel`` dim
        R²-like scores (explained-variance fractions).
    ceiling : xarray.DataArray, dims (voxel)
        The explainable-variance fraction per voxel, e.g. ``nt.fmri.noise_ceiling(responses)``.
    """
    if ceiling.dims != ("voxel",):
        raise ValueError(f"ceiling must have dims ('voxel',); got {ceiling.dims}. Pass nt.fmri.noise_ceiling(responses).")
    return values / ceiling.where(ceiling > 0)


def _resolve_pairs(pairs, models: Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(pairs, str):
        if pairs != "all":
            raise ValueError(f"pairs must be 'all' or a list of (model_a, model_b) tuples; got {pairs!r}")
        return list(itertools.combinations(models, 2))
    resolved = [tuple(map(str, p)) for p in pairs]
    for pair in resolved:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"each pair must name two different models; got {pair!r}")
        unknown = [m for m in pair if m not in models]
        if unknown:
            raise ValueError(f"pair {pair} names models {unknown} that are not in features (models: {list(models)})")
    if not resolved:
        raise ValueError("pairs is empty; pass at least one (model_a, model_b) pair or 'all'")
    return resolved


def _split_kwargs(results: xr.Dataset | None, fit_kwargs: dict) -> dict:
    """Use the single-model fits' test split for the joint fits unless one was given."""
    if results is None or "test_sessions" in fit_kwargs or "test_fraction" in fit_kwargs:
        return fit_kwargs
    split = json.loads(results.attrs.get("split", "{}") or "{}")
    return {**fit_kwargs, **{k: split[k] for k in ("test_sessions", "test_fraction") if split.get(k) is not None}}


def _cv_folds(fold: np.ndarray, train: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fit's folds as (training, validation) positions within the training trials."""
    train_fold = fold[train]
    return [(np.flatnonzero(train_fold != f), np.flatnonzero(train_fold == f)) for f in np.unique(train_fold)]


def _banded_r2(
    designs: list[np.ndarray], y: np.ndarray, train: np.ndarray, test: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]], alphas: np.ndarray,
) -> np.ndarray:
    """Test R² per voxel of a banded ridge (one alpha per space) chosen by K-fold CV on the fit's folds."""
    from himalaya.backend import set_backend
    from himalaya.ridge import BandedRidgeCV

    set_backend("numpy", on_error="warn")
    weights = _BANDED_RATIOS / (1 + _BANDED_RATIOS)
    grid = np.stack([weights, 1 - weights], axis=1)  # (w_A, w_B): alpha_A / alpha_B = w_B / w_A
    model = BandedRidgeCV(
        groups="input", fit_intercept=True, cv=folds,
        solver_params={"n_iter": grid, "alphas": alphas, "progress_bar": False},
    )
    # himalaya runs many small SVDs: multithreaded OpenBLAS on a busy machine made them 250x slower
    # (0.14 s -> 35 s on the test problem); chunks run in parallel on Dask instead
    with execution.blas_threads(1):
        model.fit([d[train] for d in designs], y[train].astype(np.float32))
        prediction = np.asarray(model.predict([d[test] for d in designs]), dtype=np.float64)
    return r2_score(y[test].astype(np.float64), prediction).astype(np.float32)


def _banded_fits(
    features: xr.DataArray, responses: xr.DataArray, pairs: list[tuple[str, str]], singles: xr.Dataset, alphas,
) -> xr.DataArray:
    train, test = training_index(singles), np.flatnonzero(np.asarray(singles["is_test"].values, bool))
    if "fold" not in singles:
        raise ValueError("results lacks the 'fold (trial)' variable that banded=True takes its folds from; pass "
                         "the Dataset returned by nt.encoding.fit.")
    folds = _cv_folds(np.asarray(singles["fold"].values), train)
    y = responses.data if isinstance(responses.data, da.Array) else da.from_array(responses.values, chunks=(-1, 4096))
    y = y.rechunk({0: -1})
    alphas = np.asarray(DEFAULT_ALPHAS if alphas is None else alphas, dtype=np.float64)
    r2 = []
    for pair in pairs:
        designs = standardized_spaces(aligned_features(features, responses, pair), pair, train)
        kernel = lambda block, designs=designs: _banded_r2(designs, block, train, test, folds, alphas)[None]  # noqa: E731
        r2.append(da.map_blocks(kernel, y, chunks=(1, y.chunks[1]), dtype=np.float32))
    specs = model_specs(pairs, [str(m) for m in features["model"].values])
    return xr.DataArray(da.concatenate(r2, axis=0), dims=("model", "voxel"),
                        coords={"model": [spec.name for spec in specs], "spaces": spaces_coord(specs)})


def _significant(permutation: xr.Dataset, models: list[str]) -> xr.DataArray:
    have = [str(m) for m in permutation["model"].values]
    missing = [m for m in models if m not in have]
    if "significant" not in permutation or missing:
        raise ValueError(f"permutation must be nt.stats.permutation_test's result for the single models; it lacks "
                         f"{missing or ['significant']} (it has models {have}).")
    return permutation["significant"].sel(model=models).astype(bool)


def _summaries(out: xr.Dataset, permutation: xr.Dataset | None, pairs: list[tuple[str, str]]) -> str:
    """Add ``<variable>_mean`` over the meaningful voxels and their counts (module docstring); return the rule."""
    positive_a, positive_b = out["r2_a"] > 0, out["r2_b"] > 0
    if permutation is None:
        both = positive_a & positive_b
        rule = "unique, shared and transfer over voxels where R²(A) > 0 and R²(B) > 0"
    else:
        by_pair = lambda models: xr.DataArray(  # noqa: E731
            _significant(permutation, models).values, dims=("pair", "voxel"), coords={"pair": out["pair"].values})
        both = by_pair([a for a, _ in pairs]) & by_pair([b for _, b in pairs])
        rule = ("unique and shared over voxels where both single models are significant; transfer A→B over those "
                "with R²(B) > 0, B→A over those with R²(A) > 0")
    masks = {"summary": both, "transfer_a_to_b": both & positive_b, "transfer_b_to_a": both & positive_a}
    means = _partition(*(out[v].where(both).mean("voxel") for v in ("r2_a", "r2_b", "r2_ab")))
    for name, (numerator, denominator) in {"transfer_a_to_b": ("shared", "r2_b"),
                                           "transfer_b_to_a": ("shared", "r2_a")}.items():
        where = masks[name]
        means[name] = _ratio(out[numerator].where(where).mean("voxel"), out[denominator].where(where).mean("voxel"))
    for name in PARTITION_VARIABLES:
        out[f"{name}_mean"] = means[name]
    for name, mask in masks.items():
        out[f"n_voxels_{name}"] = mask.sum("voxel").astype(np.int64)
        out[f"n_voxels_{name}"].attrs["long_name"] = f"voxels the {name.replace('_', ' ')} means are taken over"
    return rule


def variance_partition(
    features: xr.DataArray,
    responses: xr.DataArray,
    pairs: Sequence[tuple[str, str]] | str = "all",
    *,
    results: xr.Dataset | None = None,
    permutation: xr.Dataset | None = None,
    banded: bool = False,
    standardize: bool = True,
    ceiling: xr.DataArray | None = None,
    alphas: Sequence[float] | None = None,
    cv: int | None = None,
    client=None,
    backend: str = "numpy",
    device: str = "auto",
    **fit_kwargs,
) -> xr.Dataset:
    """Unique and shared variance and transfer for pairs of feature spaces, per voxel and summarized.

    Fits each pair's joint model ``"a+b"`` (and the single models, unless ``results`` holds them)
    with :func:`neurotask.encoding.fit`, then applies the DESIGN §3 definitions (module docstring).

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features of the models named in ``pairs`` (``model`` and ``image`` coords).
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``image`` and ``session`` on trial (lazy is fine).
    pairs : sequence of (str, str) or "all"
        Model pairs (A, B); "all" = every unordered pair of ``features``' models.
    results : xarray.Dataset, optional
        Single-model fits to reuse (``r2 (model, voxel)``); their test split is used for the joint
        fits. Without it the single models are fitted on their standardized spaces (the same
        preprocessing as inside the joint model).
    permutation : xarray.Dataset, optional
        :func:`neurotask.stats.permutation_test` of the single models: the summaries are then
        over the voxels where both are significant (else where both have R² > 0).
    banded : bool
        Fit the joint model with a separate alpha per space (himalaya ``BandedRidgeCV``), on the
        folds of the single-model fits.
    standardize : bool
        Standardize the single models' features when fitting them (the joint model always is).
    ceiling : xarray.DataArray, dims (voxel), optional
        Noise ceiling (e.g. ``nt.fmri.noise_ceiling(responses)``): adds ``<variable>_normalized``
        for the additive variables (R², unique, shared as fractions of the ceiling).
    alphas : sequence of float, optional
        Alpha grid (default ``logspace(-2, 7, 19)``).
    cv : int, optional
        K of the session-grouped K-fold CV choosing alphas; default as :func:`neurotask.encoding.fit`
        (5, or leave-one-group-out with fewer training groups).
    client : distributed.Client, optional
        Passed to the fits.
    backend : {"numpy", "torch", "auto"}
        Array backend of the ridge fits (:func:`neurotask.encoding.fit`); the banded search
        runs in himalaya's numpy backend.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device of the fits.
    **fit_kwargs
        Further arguments of :func:`neurotask.encoding.fit` (``test_sessions``, ``repeats``…).

    Returns
    -------
    xarray.Dataset
        Variables of :data:`PARTITION_VARIABLES` with dims (pair, voxel) (``pair`` coord ``"a+b"``,
        ``model_a``/``model_b`` on pair, voxel coords from ``responses``); ``<variable>_mean`` (pair)
        over the voxels of the summary rule (attr ``summary_rule``; the ratio means are ratios of
        the means, so the identities also hold for the means); ``n_voxels_summary``,
        ``n_voxels_transfer_a_to_b``, ``n_voxels_transfer_b_to_a`` (pair). Voxelwise ratios are NaN
        where the denominator is ≤ 0. Lazy when the fits are. Attrs ``backend`` and
        ``device`` of the joint fits.

    Examples
    --------
    >>> vp = nt.stats.variance_partition(feats, resp, pairs=[("autoencoding", "depth_euclidean")])  # doctest: +SKIP
    >>> float(vp.transfer_a_to_b_mean[0])                                                            # doctest: +SKIP
    """
    features = validate_features(features)
    responses = validate_responses(responses)
    pairs = _resolve_pairs(pairs, [str(m) for m in features["model"].values])
    needed = list(dict.fromkeys(m for pair in pairs for m in pair))
    fit_kwargs = {"alphas": alphas, "cv": cv, "client": client, "backend": backend, "device": device,
                  **_split_kwargs(results, fit_kwargs)}
    if results is not None and set(needed) <= {str(m) for m in results["model"].values}:
        singles = results
    else:
        # scores only: the test predictions (model x test trial x voxel) are not needed here
        singles = encoding.fit(features, responses, needed, standardize=standardize, predictions=False, **fit_kwargs)
    on = {"backend": "numpy", "device": "cpu"}
    if banded:
        r2_joint = _banded_fits(features, responses, pairs, singles, alphas)
    else:
        joint = encoding.fit(features, responses, pairs, predictions=False, **fit_kwargs)
        r2_joint, on = joint["r2"], {key: joint.attrs.get(key, value) for key, value in on.items()}
    out = _per_voxel(singles["r2"], r2_joint, pairs, responses)
    rule = _summaries(out, permutation, pairs)
    if ceiling is not None:
        for name in _ADDITIVE:
            out[f"{name}_normalized"] = ceiling_normalized(out[name], ceiling.drop_vars(list(ceiling.coords)))
    split = {k: singles.attrs[k] for k in _SPLIT_ATTRS if k in singles.attrs}
    out.attrs = {"method": "banded ridge" if banded else "ridge", "definitions": "DESIGN §3 variance partitioning",
                 "summary_rule": rule, **split, **on}
    return out


def _per_voxel(r2_singles: xr.DataArray, r2_joint: xr.DataArray, pairs: list[tuple[str, str]],
               responses: xr.DataArray) -> xr.Dataset:
    """The (pair, voxel) variables of :data:`PARTITION_VARIABLES`; joint models found by their spaces."""
    joint = {spaces: name for name, spaces in model_spaces(r2_joint).items()}
    names = [joint[pair] for pair in pairs]
    pair_coords = {"pair": names, "model_a": ("pair", [a for a, _ in pairs]), "model_b": ("pair", [b for _, b in pairs])}

    def by_pair(r2: xr.DataArray, which: list[str]) -> xr.DataArray:
        picked = r2.sel(model=which).drop_vars([c for c in r2.coords if c != "voxel" and "voxel" not in r2[c].dims])
        return picked.rename(model="pair").assign_coords(pair_coords).transpose("pair", "voxel")

    parts = _partition(by_pair(r2_singles, [a for a, _ in pairs]), by_pair(r2_singles, [b for _, b in pairs]),
                       by_pair(r2_joint, names))
    out = xr.Dataset(parts)
    voxel_coords = {name: c for name, c in responses.coords.items() if c.dims == ("voxel",)}
    return out.drop_vars([c for c in out.coords if c not in ("pair", "model_a", "model_b")]).assign_coords(voxel_coords)
