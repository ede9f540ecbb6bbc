"""Lazy opening of stores, refusing incomplete ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from neurotask.stores.schema import COMPLETE_ATTR, DONE_VARIABLE, SCHEMAS, StoreError, _DONE_DIM_PREFIX, _validate


def _is_foreign(group: zarr.Group) -> bool:
    """Whether a zarr group holding arrays was written by something other than neurotask's writers.

    Every neurotask writer stamps ``neurotask_complete = False`` with its template, before any
    array exists, and keeps completion flags; a store with neither (``Dataset.to_zarr`` by a
    user) is taken as its writer left it: complete.
    """
    return COMPLETE_ATTR not in group.attrs and DONE_VARIABLE not in group and any(True for _ in group.array_keys())


def _completion(path: str | os.PathLike[str]) -> tuple[bool, zarr.Array | None]:
    """Whether a store is complete, and its region flags (``None`` without any), not read yet.

    The one place that decides: finalized by its writer (``COMPLETE_ATTR``), or written outside
    neurotask (:func:`_is_foreign`). A missing store is incomplete.
    """
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False, None
    complete = bool(group.attrs.get(COMPLETE_ATTR, False)) or _is_foreign(group)
    return complete, group[DONE_VARIABLE] if DONE_VARIABLE in group else None


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a store exists and was finalized (all its regions written), or was written outside neurotask.

    A zarr group with arrays but without neurotask's completion attr (e.g. written with
    ``xarray.Dataset.to_zarr``) counts as complete: there is no record of an interruption.
    """
    return _completion(path)[0]


def open_store(
    path: str | os.PathLike[str], *, kind: str = "store", allow_incomplete: bool = False
) -> xr.Dataset:
    """Open any neurotask store (or one written with ``xarray.Dataset.to_zarr``) lazily, refusing incomplete ones.

    Parameters
    ----------
    path : path-like
        The zarr store directory.
    kind : str
        What is opened, for error messages.
    allow_incomplete : bool
        Open a store whose write was interrupted (unwritten regions read as NaN).

    Returns
    -------
    xarray.Dataset
        Lazy dataset, without the internal completion flags.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(
            f"{kind} store not found at {str(path)!r}. Check the path, or create it first "
            f"(e.g. `neurotask extract` for features, `neurotask ingest` for responses)."
        )
    try:
        ds = xr.open_zarr(path, consolidated=False, chunks={})
    except Exception as error:  # zarr/xarray raise several types for a non-store directory
        raise StoreError(f"{str(path)!r} is not a readable zarr store ({error}).") from error
    complete, flags = (True, None) if allow_incomplete else _completion(path)
    if not complete:
        done = None if flags is None else np.asarray(flags[...], dtype=bool)
        progress = f" ({int(done.sum())} of {done.size} regions written)" if done is not None else ""
        raise StoreError(
            f"{kind} store {str(path)!r} is incomplete{progress}: its write was interrupted. "
            f"Re-run the same command to resume it, or pass allow_incomplete=True to inspect it."
        )
    drop = [v for v in ds.variables if str(v) == DONE_VARIABLE]
    ds = ds.drop_vars(drop)
    # Labels (coords) are small next to the data: read them eagerly from zarr, without dask, so
    # that selections by label need no compute. zarr v3 strings read back as numpy's StringDType,
    # which numpy 2.4 cannot .astype(str); fixed-width unicode is what arrays built from str hold.
    eager = xr.open_zarr(path, consolidated=False, chunks=None)
    labels = {}
    for name in ds.coords:
        if name in ds.indexes:
            continue
        values = eager[name].values
        labels[str(name)] = (ds[name].dims, values.astype(object).astype(str) if values.dtype.kind == "T" else values)
    ds = ds.assign_coords(labels)
    index_strings = {str(c): ds[c].values.astype(object).astype(str) for c in ds.indexes if ds[c].dtype.kind == "T"}
    ds = ds.assign_coords(index_strings)
    return ds.drop_dims([d for d in ds.dims if str(d).startswith(_DONE_DIM_PREFIX)], errors="ignore")


#: The variable name xarray gives an unnamed ``DataArray`` written with ``to_zarr``.
_UNNAMED = "__xarray_dataarray_variable__"


def _open_variable(path: str | os.PathLike[str], kind: str, allow_incomplete: bool) -> xr.DataArray:
    schema = SCHEMAS[kind]
    ds = open_store(path, kind=kind, allow_incomplete=allow_incomplete)
    if schema.variable not in ds and list(ds.data_vars) == [_UNNAMED]:  # an unnamed DataArray.to_zarr
        ds = ds.rename({_UNNAMED: schema.variable})
    if schema.variable not in ds:
        raise StoreError(
            f"{str(path)!r} holds no {schema.variable!r} variable (it has {sorted(map(str, ds.data_vars))}); "
            f"is it a {kind} store?"
        )
    array = ds[schema.variable]
    array.attrs.update(ds.attrs)
    return _validate(array, schema, f"the {kind} store {str(path)!r}")


def open_features(path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> xr.DataArray:
    """Open a features store lazily.

    Parameters
    ----------
    path : path-like
        A store written by :func:`neurotask.extract_features` (or any writer of the schema).
    allow_incomplete : bool
        Open a store whose write was interrupted.

    Returns
    -------
    xarray.DataArray, dims (model, image, feature)
        Dask-backed; nothing is loaded until computed. Store attrs are on the array.

    Examples
    --------
    >>> feats = nt.open_features("features.zarr")  # doctest: +SKIP
    >>> feats.sel(model="normal")                  # doctest: +SKIP
    """
    return _open_variable(path, "features", allow_incomplete)


def open_responses(path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> xr.DataArray:
    """Open a responses store lazily.

    Parameters
    ----------
    path : path-like
        A store written by :func:`neurotask.load_bold5000`.
    allow_incomplete : bool
        Open a store whose write was interrupted.

    Returns
    -------
    xarray.DataArray, dims (trial, voxel)
        Dask-backed, with ``image``, ``session``, ``run`` on trial and ``i, j, k`` on voxel.
    """
    return _open_variable(path, "responses", allow_incomplete)


def open_results(path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a results store (encoding fits, statistics) lazily as a Dataset."""
    return open_store(path, kind="results", allow_incomplete=allow_incomplete)

