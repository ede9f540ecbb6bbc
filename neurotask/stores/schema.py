"""Store schemas and the validation of analysis inputs (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from neurotask.ids import image_source

COMPLETE_ATTR = "neurotask_complete"
DONE_VARIABLE = "_regions_done"
_DONE_DIM_PREFIX = "_region_"


class StoreError(ValueError):
    """A store is missing, incomplete or does not follow the neurotask schema."""


@dataclass(frozen=True)
class StoreSchema:
    """What a neurotask store must hold.

    Parameters
    ----------
    name : str
        Store kind (``"features"``, ``"responses"``, ``"results"``).
    variable : str or None
        Name of the main data variable (None for results datasets, which hold several).
    dims : tuple of str
        Dimensions of the main variable, in order.
    dtype : numpy dtype
        dtype of the main variable.
    chunks : dict
        Default chunk size per dim; ``-1`` means the whole dim.
    coords : dict
        Essential coordinates, mapped to the dim they live on: an input without them is refused.
    optional : dict
        Coordinates that are checked when present and filled (or done without) when absent.
    """

    name: str
    variable: str | None
    dims: tuple[str, ...]
    dtype: np.dtype
    chunks: Mapping[str, int]
    coords: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)


SCHEMAS: dict[str, StoreSchema] = {
    "features": StoreSchema(
        name="features",
        variable="features",
        dims=("model", "image", "feature"),
        dtype=np.dtype("float32"),
        chunks={"model": 1, "image": 256, "feature": -1},
        coords={"model": "model", "image": "image"},
        optional={"source": "image"},
    ),
    "responses": StoreSchema(
        name="responses",
        variable="responses",
        dims=("trial", "voxel"),
        dtype=np.dtype("float32"),
        chunks={"trial": -1, "voxel": 4096},
        coords={"image": "trial", "session": "trial"},
        optional={"run": "trial", "i": "voxel", "j": "voxel", "k": "voxel"},
    ),
    "results": StoreSchema(
        name="results",
        variable=None,
        dims=("model", "voxel"),
        dtype=np.dtype("float32"),
        chunks={"model": -1, "voxel": 4096},
        coords={"model": "model"},
    ),
}




def _fix_hint(schema: StoreSchema) -> str:
    return f"a {schema.name} array has dims {schema.dims} and coords {sorted(schema.coords)}"


def _validate(array: xr.DataArray, schema: StoreSchema, name: str) -> xr.DataArray:
    """Check dims and essential coords; cast to the schema's dtype (lazily); transpose."""
    if not isinstance(array, xr.DataArray):
        fix = (f"pass one of its variables, e.g. ds[{schema.variable!r}]" if isinstance(array, xr.Dataset)
               else f"open a store with neurotask.open_{schema.name}(path)")
        raise TypeError(
            f"{name} must be an xarray.DataArray with dims {schema.dims}; got {type(array).__name__}: {fix}."
        )
    if set(array.dims) != set(schema.dims):
        missing = [d for d in schema.dims if d not in array.dims]
        extra = [d for d in array.dims if d not in schema.dims]
        raise StoreError(
            f"{name} has dims {array.dims}; expected {schema.dims} "
            f"(missing {missing}, unexpected {extra}). Rename or transpose it: {_fix_hint(schema)}."
        )
    array = array.transpose(*schema.dims)
    for coord, dim in {**schema.coords, **schema.optional}.items():
        if coord not in array.coords:
            if coord in schema.optional:
                continue
            raise StoreError(
                f"{name} lacks the coordinate {coord!r} on dim {dim!r}; {_fix_hint(schema)}. "
                f"Assign it with .assign_coords({coord}=(\"{dim}\", values))."
            )
        if array.coords[coord].dims != (dim,):
            raise StoreError(
                f"{name}'s coordinate {coord!r} lies on dims {array.coords[coord].dims}; expected ({dim!r},)."
            )
    if array.dtype != schema.dtype:
        if array.dtype.kind not in "fiub":
            raise StoreError(f"{name} has dtype {array.dtype}; expected numbers ({schema.dtype}).")
        array = array.astype(schema.dtype)  # lazy for dask-backed arrays; attrs are kept
    return array


def _check_unique(values: np.ndarray, what: str, name: str) -> None:
    unique, counts = np.unique(np.asarray(values), return_counts=True)
    duplicated = unique[counts > 1]
    if duplicated.size:
        raise StoreError(
            f"{name} has {duplicated.size} duplicate {what} ids, e.g. {list(duplicated[:5])}; "
            f"each {what} must appear once. Drop the duplicates (e.g. .drop_duplicates('{what}'))."
        )


def validate_features(features: xr.DataArray, *, name: str = "features") -> xr.DataArray:
    """Check a features array against the schema and return it as ``(model, image, feature)``.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features with ``model``, ``image`` and ``source`` coordinates, float32.
    name : str
        How the array is named in error messages (the caller's argument name).

    Returns
    -------
    xarray.DataArray
        The same array, transposed to the schema's dim order. Nothing is computed.

    Raises
    ------
    TypeError
        If ``features`` is not a DataArray.
    StoreError
        On wrong or missing dims or coords, wrong dtype, or duplicate model or image ids.
    """
    features = _validate(features, SCHEMAS["features"], name)
    _check_unique(features["image"].values, "image", name)
    _check_unique(features["model"].values, "model", name)
    if "source" not in features.coords:
        features = features.assign_coords(source=("image", image_sources(features["image"].values)))
    return features


def image_sources(images: Sequence[Any]) -> np.ndarray:
    """The BOLD5000 source of each image id (coco, imagenet, scene), or ``"unknown"`` for other ids.

    BOLD5000 ids are recognised when every id is one: COCO and ImageNet ids have fixed patterns,
    and a set of ids that includes some of those is taken to be BOLD5000, its other ids scenes.
    Without any COCO or ImageNet id, the ids are not BOLD5000's and every source is unknown.
    """
    ids = [str(i) for i in images]
    sources = np.array([image_source(i) for i in ids], dtype=object)
    if not np.isin(sources, ("coco", "imagenet")).any():
        sources[:] = "unknown"
    return sources.astype(str)


def validate_responses(responses: xr.DataArray, *, name: str = "responses") -> xr.DataArray:
    """Check a responses array against the schema and return it as ``(trial, voxel)``.

    Parameters
    ----------
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``image`` and ``session`` on trial (essential). Optional: ``run`` on trial
        (filled with 1: one run per session), ``i``, ``j``, ``k`` on voxel (without them there is
        no brain map; release-1 ROI data and other datasets have no voxel grid).
    name : str
        How the array is named in error messages.

    Returns
    -------
    xarray.DataArray
        The array, transposed to the schema's dim order, float32, with ``run`` present.
        Nothing is computed.

    Raises
    ------
    TypeError
        If ``responses`` is not a DataArray.
    StoreError
        On wrong dims, a missing ``image`` or ``session`` coordinate, or a non-numeric dtype.
    """
    responses = _validate(responses, SCHEMAS["responses"], name)
    if "run" not in responses.coords:
        responses = responses.assign_coords(run=("trial", np.ones(responses.sizes["trial"], dtype=np.int64)))
    return responses


def has_voxel_grid(responses: xr.DataArray) -> bool:
    """Whether the voxels carry ``i``, ``j``, ``k`` grid positions (needed for brain maps)."""
    return all(c in responses.coords and responses[c].dims == ("voxel",) for c in ("i", "j", "k"))
