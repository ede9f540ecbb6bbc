"""The design path of every ridge fit: features → aligned design → standardized design.

:func:`neurotask.encoding.fit`, :func:`neurotask.encoding.predict`, the refit null of
:func:`neurotask.stats.permutation_test` and :func:`neurotask.stats.variance_partition` all build
their designs here:

1. :func:`model_specs` — which models, and which feature spaces each one concatenates (a joint
   model ``("a", "b")`` is named ``"a+b"``; the results carry its spaces in the ``spaces``
   coordinate, read back with :func:`model_spaces`);
2. :func:`aligned_features` — each trial's row is its image's features (by image id);
3. :func:`design_matrix` — one model's (trial, feature) float32 design, checked finite;
4. :func:`model_factors` — the design split into training and test rows, centered (and
   standardized) with training statistics and decomposed (:mod:`neurotask.encoding.ridge`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from neurotask.encoding import ridge
from neurotask.fmri import align

__all__ = [
    "SPACES_COORD",
    "ModelSpec",
    "aligned_features",
    "design_matrix",
    "model_factors",
    "model_spaces",
    "model_specs",
    "spaces_coord",
    "standardized_spaces",
]

#: Coordinate on ``model`` naming each model's feature spaces (a JSON list per model).
SPACES_COORD = "spaces"


@dataclass(frozen=True)
class ModelSpec:
    """A fitted model: its name and the feature spaces it concatenates."""

    name: str
    spaces: tuple[str, ...]

    @property
    def joint(self) -> bool:
        """Whether the model concatenates several spaces (always standardized)."""
        return len(self.spaces) > 1


def _spaces(model: str | Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """The feature spaces a ``models`` entry names: itself when it is a model, else its "+"-separated parts."""
    if not isinstance(model, str):
        return tuple(str(m) for m in model)
    return (model,) if model in available else tuple(model.split("+"))


def model_specs(models: Sequence[str | Sequence[str]] | str | None, available: Sequence[str]) -> list[ModelSpec]:
    """The models to fit: a joint model ``("a", "b")`` (or the string ``"a+b"``) is named ``"a+b"``.

    The string form is the one place where "+" is read, and only when the string is not itself a
    model of ``available`` (a model may be named ``"a+b"``): results carry the spaces explicitly.
    """
    if models is None:
        models = list(available)
    elif isinstance(models, str):
        models = [models]
    specs = []
    for model in models:
        spaces = _spaces(model, available)
        unknown = [s for s in spaces if s not in available]
        if unknown or not spaces:
            raise ValueError(
                f"models names {unknown or model!r}, which features lacks; features has models {list(available)}. "
                f"Pass names from features.model, or tuples of them for joint models."
            )
        specs.append(ModelSpec("+".join(spaces), spaces))
    names = [spec.name for spec in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"models lists {duplicated} more than once.")
    return specs


def spaces_coord(specs: Sequence[ModelSpec]) -> tuple[str, list[str], dict[str, str]]:
    """The ``spaces`` coordinate on ``model`` for results of ``specs`` (JSON lists: zarr-friendly)."""
    return "model", [json.dumps(list(spec.spaces)) for spec in specs], {"long_name": "feature spaces of the model"}


def model_spaces(results: xr.Dataset | xr.DataArray) -> dict[str, tuple[str, ...]]:
    """Each model of encoding results and the feature spaces it concatenates.

    Parameters
    ----------
    results : xarray.Dataset or DataArray with a ``model`` dim
        From :func:`neurotask.encoding.fit`. Without a ``spaces`` coordinate every model is
        its own single space.

    Returns
    -------
    dict of str to tuple of str
        ``{"autoencoding": ("autoencoding",), "autoencoding+depth": ("autoencoding", "depth")}``.

    Examples
    --------
    >>> ds = xr.Dataset(coords={"model": ["a", "a+b"], "spaces": ("model", ['["a"]', '["a", "b"]'])})
    >>> model_spaces(ds)
    {'a': ('a',), 'a+b': ('a', 'b')}
    """
    names = [str(m) for m in results["model"].values]
    if SPACES_COORD not in results.coords:
        return {name: (name,) for name in names}
    return {name: tuple(json.loads(str(s))) for name, s in zip(names, results[SPACES_COORD].values)}


def aligned_features(features: xr.DataArray, responses: xr.DataArray, spaces: Sequence[str]) -> xr.DataArray:
    """The ``(model, trial, feature)`` design of ``spaces``: each trial's row is its image's features."""
    return align(features.sel(model=list(spaces)), responses)


def design_matrix(aligned: xr.DataArray, spaces: Sequence[str]) -> np.ndarray:
    """One model's (trial, feature) design as float32 numpy (spaces concatenated), checked finite."""
    parts = []
    for space in spaces:
        values = np.asarray(aligned.sel(model=space).values, dtype=np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            trials, columns = np.nonzero(bad)
            images = pd.unique(aligned["image"].values[trials].astype(str))
            raise ValueError(
                f"features of model {space!r} hold {int(bad.sum())} NaN/inf values, in images {list(images[:5])} "
                f"(features {sorted(set(columns.tolist()))[:5]}); fix or drop those images before fitting."
            )
        parts.append(values)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def model_factors(
    design: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    *,
    standardize: bool,
    bounds: Sequence[int] | np.ndarray | None = None,
    alphas: Sequence[float] | np.ndarray = (),
) -> ridge.RidgeFactors:
    """Ridge factors of a design: training rows ``train`` (in fold order), test rows ``test``.

    With ``bounds`` (K-fold CV) every fold is decomposed for ``alphas``; without, only the whole
    training set (GCV, predictions, the refit null).
    """
    folds = bounds is not None
    bounds = np.asarray(bounds if folds else [0, train.size], dtype=np.int64)
    return ridge.make_ridge_factors(design[train], design[test], bounds, alphas=alphas, standardize=standardize,
                                    folds=folds)


def standardized_spaces(aligned: xr.DataArray, spaces: Sequence[str], train: np.ndarray) -> list[np.ndarray]:
    """Each space's (trial, feature) design standardized with the training rows' statistics (as a joint fit)."""
    out = []
    for space in spaces:
        x = design_matrix(aligned, [space])
        out.append(ridge.standardize_features(x[train], x, standardize=True)[1])
    return out
