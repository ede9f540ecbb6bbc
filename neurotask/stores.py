"""Store schema, validation, lazy opening and resumable region writes (DESIGN §2).

This is the only module that talks to zarr. Every store is an xarray Dataset on zarr v3:

* ``features``  — ``features (model, image, feature)`` float32, chunks (1, 256, all)
* ``responses`` — ``responses (trial, voxel)`` float32, chunks (all, 4096)
* ``results``   — a Dataset of ``(model, voxel)``, ``(model, model_)``, ``(pair, voxel)`` … variables,
  voxel-chunked.

Writes are resumable: :class:`RegionWriter` writes a lazy template first (``compute=False``),
then fills chunk-aligned regions and ticks one completion flag per region. A re-run skips the
regions already ticked. The store carries ``neurotask_complete = False`` until
:meth:`RegionWriter.finalize`, and the ``open_*`` functions refuse an incomplete store, so an
interrupted run never reads as complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

__all__ = [
    "SCHEMAS",
    "StoreSchema",
    "StoreError",
    "RegionWriter",
    "open_features",
    "open_responses",
    "open_results",
    "open_store",
    "validate_features",
    "validate_responses",
    "provenance",
    "sha256_file",
    "sha256_array",
    "is_complete",
]

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
        Required coordinates, mapped to the dim they live on.
    """

    name: str
    variable: str | None
    dims: tuple[str, ...]
    dtype: np.dtype
    chunks: Mapping[str, int]
    coords: Mapping[str, str] = field(default_factory=dict)


SCHEMAS: dict[str, StoreSchema] = {
    "features": StoreSchema(
        name="features",
        variable="features",
        dims=("model", "image", "feature"),
        dtype=np.dtype("float32"),
        chunks={"model": 1, "image": 256, "feature": -1},
        coords={"model": "model", "image": "image", "source": "image"},
    ),
    "responses": StoreSchema(
        name="responses",
        variable="responses",
        dims=("trial", "voxel"),
        dtype=np.dtype("float32"),
        chunks={"trial": -1, "voxel": 4096},
        coords={"image": "trial", "session": "trial", "run": "trial", "i": "voxel", "j": "voxel", "k": "voxel"},
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


# --------------------------------------------------------------------------------------------
# provenance


def sha256_file(path: str | os.PathLike[str], *, block_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of a file, read in blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Return the hex sha256 digest of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def provenance(
    parameters: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Provenance attrs every writer stamps: version, creation time, parameters, input hashes.

    Parameters
    ----------
    parameters : mapping, optional
        The call's parameters; stored as JSON (non-JSON values are stored as their ``str``).
    inputs : mapping of str to str, optional
        Input names mapped to a hash or identifier (e.g. a file's sha256).

    Returns
    -------
    dict
        ``neurotask_version``, ``created`` (ISO 8601, UTC), ``parameters`` and ``inputs`` (JSON).
    """
    from neurotask import __version__

    return {
        "neurotask_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.dumps(dict(parameters or {}), sort_keys=True, default=str),
        "inputs": json.dumps(dict(inputs or {}), sort_keys=True, default=str),
    }


# --------------------------------------------------------------------------------------------
# validation


def _fix_hint(schema: StoreSchema) -> str:
    return f"a {schema.name} array has dims {schema.dims} and coords {sorted(schema.coords)}"


def _validate(array: xr.DataArray, schema: StoreSchema, name: str) -> xr.DataArray:
    if not isinstance(array, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.DataArray with dims {schema.dims}; got {type(array).__name__}. "
            f"Open a store with neurotask.open_{schema.name}(path)."
        )
    if set(array.dims) != set(schema.dims):
        missing = [d for d in schema.dims if d not in array.dims]
        extra = [d for d in array.dims if d not in schema.dims]
        raise StoreError(
            f"{name} has dims {array.dims}; expected {schema.dims} "
            f"(missing {missing}, unexpected {extra}). Rename or transpose it: {_fix_hint(schema)}."
        )
    array = array.transpose(*schema.dims)
    for coord, dim in schema.coords.items():
        if coord not in array.coords:
            raise StoreError(
                f"{name} lacks the coordinate {coord!r} on dim {dim!r}; {_fix_hint(schema)}. "
                f"Assign it with .assign_coords({coord}=(\"{dim}\", values))."
            )
        if array.coords[coord].dims != (dim,):
            raise StoreError(
                f"{name}'s coordinate {coord!r} lies on dims {array.coords[coord].dims}; expected ({dim!r},)."
            )
    if array.dtype != schema.dtype:
        raise StoreError(
            f"{name} has dtype {array.dtype}; expected {schema.dtype}. Convert with .astype('{schema.dtype}')."
        )
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
    return features


def validate_responses(responses: xr.DataArray, *, name: str = "responses") -> xr.DataArray:
    """Check a responses array against the schema and return it as ``(trial, voxel)``.

    Parameters
    ----------
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``image``, ``session``, ``run`` on trial and ``i``, ``j``, ``k`` on voxel.
    name : str
        How the array is named in error messages.

    Returns
    -------
    xarray.DataArray
        The same array, transposed to the schema's dim order. Nothing is computed.
    """
    return _validate(responses, SCHEMAS["responses"], name)


# --------------------------------------------------------------------------------------------
# opening


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a store exists and was finalized (all its regions written)."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False
    return bool(group.attrs.get(COMPLETE_ATTR, False))


def open_store(
    path: str | os.PathLike[str], *, kind: str = "store", allow_incomplete: bool = False
) -> xr.Dataset:
    """Open any neurotask store lazily (dask-backed), refusing incomplete ones.

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
    if not allow_incomplete and not ds.attrs.get(COMPLETE_ATTR, False):
        done = ds[DONE_VARIABLE].values if DONE_VARIABLE in ds else None
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


def _open_variable(path: str | os.PathLike[str], kind: str, allow_incomplete: bool) -> xr.DataArray:
    schema = SCHEMAS[kind]
    ds = open_store(path, kind=kind, allow_incomplete=allow_incomplete)
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


# --------------------------------------------------------------------------------------------
# resumable region writes


def _chunk_sizes(template: xr.Dataset, chunks: Mapping[str, int]) -> dict[str, int]:
    sizes = {}
    for dim, size in template.sizes.items():
        chunk = chunks.get(str(dim), -1)
        sizes[str(dim)] = int(size) if chunk in (-1, None) or chunk > size else int(chunk)
    return sizes


class RegionWriter:
    """Write a store as a template plus chunk-aligned regions, resumably.

    On construction, a store with the same ``parameters`` that is already complete is left as it
    is (:attr:`complete` is True, nothing is pending); one that was interrupted is resumed
    (only regions not yet ticked are pending); one written with other parameters raises unless
    ``overwrite=True``. Otherwise the lazy ``template`` is written with ``compute=False``.

    Parameters
    ----------
    path : path-like
        Destination zarr store.
    template : xarray.Dataset
        The full dataset's structure: coords with values, data variables as (lazy) dask arrays of
        the right shape and dtype (their values are not written).
    region_dims : sequence of str
        Dims along which the store is written piece by piece; each region is one chunk along each.
    chunks : mapping of str to int
        Chunk size per dim (``-1`` = whole dim); dims not named are not chunked.
    parameters : mapping, optional
        Stamped in provenance; a resumed store must have been created with equal parameters.
    inputs : mapping, optional
        Input hashes, stamped in provenance.
    attrs : mapping, optional
        Further store attrs.
    overwrite : bool
        Replace an existing store written with other parameters.

    Examples
    --------
    >>> writer = RegionWriter("x.zarr", template, region_dims=["voxel"], chunks={"voxel": 4096})  # doctest: +SKIP
    >>> for region in writer.pending():                                                          # doctest: +SKIP
    ...     writer.write(compute(region), region)
    >>> writer.finalize()                                                                        # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        template: xr.Dataset,
        *,
        region_dims: Sequence[str],
        chunks: Mapping[str, int],
        parameters: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.region_dims = tuple(region_dims)
        unknown = [d for d in self.region_dims if d not in template.dims]
        if unknown:
            raise ValueError(f"region_dims {unknown} are not dims of the template {tuple(template.dims)}")
        self.chunk_sizes = _chunk_sizes(template, chunks)
        self.sizes = {str(d): int(n) for d, n in template.sizes.items()}
        self.grid = tuple(-(-self.sizes[d] // self.chunk_sizes[d]) for d in self.region_dims)
        self._parameters_json = json.dumps(dict(parameters or {}), sort_keys=True, default=str)
        self.complete = False
        if self.path.exists() and not self._reuse_existing(overwrite):
            shutil.rmtree(self.path)
        if not self.path.exists():
            self._write_template(template, parameters, inputs, attrs)

    # 1. decide whether an existing store is ours to resume
    def _reuse_existing(self, overwrite: bool) -> bool:
        try:
            group = zarr.open_group(str(self.path), mode="r")
            existing = group.attrs.get("parameters")
        except Exception:  # not a zarr group: a leftover directory
            existing = None
            group = None
        if group is not None and existing == self._parameters_json and DONE_VARIABLE in group:
            if tuple(group[DONE_VARIABLE].shape) == self.grid:
                self.complete = bool(group.attrs.get(COMPLETE_ATTR, False))
                return True
        if overwrite or group is None:
            return False
        raise StoreError(
            f"a store already exists at {str(self.path)!r} with other parameters "
            f"({existing} != {self._parameters_json}). Choose another path, delete it, or pass overwrite=True."
        )

    # 2. write the template: metadata, coords and the completion flags; no data chunks
    def _write_template(
        self,
        template: xr.Dataset,
        parameters: Mapping[str, Any] | None,
        inputs: Mapping[str, str] | None,
        attrs: Mapping[str, Any] | None,
    ) -> None:
        template = template.copy()
        # fixed-width numpy strings have no zarr v3 spec; variable-length strings do
        template = template.assign_coords(
            {str(c): template[c].astype(object) for c in template.coords if template[c].dtype.kind == "U"}
        )
        template.attrs = {**template.attrs, **dict(attrs or {}), **provenance(parameters, inputs)}
        template.attrs[COMPLETE_ATTR] = False
        done_dims = tuple(_DONE_DIM_PREFIX + d for d in self.region_dims)
        template[DONE_VARIABLE] = (done_dims, da.zeros(self.grid, dtype=bool, chunks=1))
        encoding = {}
        for name, variable in template.data_vars.items():
            if name == DONE_VARIABLE:
                encoding[name] = {"chunks": (1,) * len(self.grid)}
                continue
            encoding[name] = {"chunks": tuple(self.chunk_sizes[str(d)] for d in variable.dims)}
            variable.encoding.pop("chunks", None)
            variable.encoding.pop("preferred_chunks", None)
        for name, variable in template.data_vars.items():
            if name != DONE_VARIABLE:
                template[name] = variable.chunk({d: self.chunk_sizes[str(d)] for d in variable.dims})
        # numpy-backed coords are written now; dask-backed data variables only as metadata
        template = template.assign_coords({str(c): template[c].compute() for c in template.coords})
        template.to_zarr(self.path, mode="w", compute=False, encoding=encoding, consolidated=False)

    # 3. what is left
    def _done(self) -> np.ndarray:
        group = zarr.open_group(str(self.path), mode="r")
        return np.asarray(group[DONE_VARIABLE][...], dtype=bool)

    def _region_slices(self, index: tuple[int, ...]) -> dict[str, slice]:
        region = {}
        for dim, i in zip(self.region_dims, index):
            start = i * self.chunk_sizes[dim]
            region[dim] = slice(start, min(start + self.chunk_sizes[dim], self.sizes[dim]))
        return region

    def regions(self) -> Iterator[dict[str, slice]]:
        """Every region of the store, in order (dict of dim to slice)."""
        for index in itertools.product(*(range(n) for n in self.grid)):
            yield self._region_slices(index)

    def pending(self) -> list[dict[str, slice]]:
        """The regions not yet written (all of them for a new store, none once complete)."""
        if self.complete:
            return []
        done = self._done()
        return [
            self._region_slices(index)
            for index in itertools.product(*(range(n) for n in self.grid))
            if not done[index]
        ]

    def _index(self, region: Mapping[str, slice]) -> tuple[int, ...]:
        index = []
        for dim in self.region_dims:
            if dim not in region:
                raise ValueError(f"region {dict(region)} lacks the region dim {dim!r}")
            sl = region[dim]
            chunk = self.chunk_sizes[dim]
            if sl.start % chunk or (sl.stop != self.sizes[dim] and sl.stop - sl.start != chunk):
                raise ValueError(
                    f"region {dim}={sl} is not chunk-aligned (chunk size {chunk}); use writer.pending() regions"
                )
            index.append(sl.start // chunk)
        return tuple(index)

    # 4. write one region, then tick its flag (data first: a crash in between only redoes it)
    def write(self, data: xr.Dataset | xr.DataArray, region: Mapping[str, slice]) -> None:
        """Write one region's data and mark it done.

        Parameters
        ----------
        data : xarray.Dataset or DataArray
            The region's values for every data variable that has the region dims (a DataArray is
            written under its name). Coordinates along the region dims are not rewritten.
        region : mapping of str to slice
            One of :meth:`pending`'s regions.
        """
        index = self._index(region)
        if isinstance(data, xr.DataArray):
            data = data.to_dataset(name=data.name)
        data = data.drop_vars([c for c in data.coords], errors="ignore")
        region_full = {str(d): region.get(str(d), slice(0, self.sizes[str(d)])) for d in data.dims}
        for dim, sl in region_full.items():
            if data.sizes[dim] != sl.stop - sl.start:
                raise ValueError(
                    f"data for region {dim}={sl} has {data.sizes[dim]} elements along {dim!r}; "
                    f"expected {sl.stop - sl.start}"
                )
        data.to_zarr(self.path, region=region_full, consolidated=False)
        group = zarr.open_group(str(self.path), mode="r+")
        group[DONE_VARIABLE][index] = True

    def finalize(self, attrs: Mapping[str, Any] | None = None) -> None:
        """Mark the store complete (all regions must be written) and add final attrs."""
        done = self._done()
        if not done.all():
            raise StoreError(
                f"cannot finalize {str(self.path)!r}: {int((~done).sum())} of {done.size} regions are unwritten"
            )
        group = zarr.open_group(str(self.path), mode="r+")
        group.attrs.update({**dict(attrs or {}), COMPLETE_ATTR: True})
        self.complete = True


def write_dataset(
    path: str | os.PathLike[str],
    dataset: xr.Dataset,
    *,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    chunks: Mapping[str, int] | None = None,
    region_dim: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a (possibly lazy) dataset as a complete store, one chunk along ``region_dim`` at a time.

    A convenience over :class:`RegionWriter` for results that are computed as one graph: each
    region is computed and written in turn, so memory is bounded by one region.

    Parameters
    ----------
    path : path-like
        Destination store.
    dataset : xarray.Dataset
        Data to write; dask-backed variables are computed region by region.
    parameters, inputs : mapping, optional
        Provenance (see :func:`provenance`).
    chunks : mapping, optional
        Chunk sizes per dim; defaults to the dataset's dask chunks (or whole dims).
    region_dim : str, optional
        Dim along which to write piece by piece; default: the first chunked dim, else one region.
    overwrite : bool
        Replace an existing store with other parameters.

    Returns
    -------
    pathlib.Path
        The store path.
    """
    if chunks is None:
        chunks = {str(d): (c[0] if c else -1) for d, c in (dataset.chunksizes or {}).items()}
    if region_dim is None:
        chunked = [d for d, c in chunks.items() if c not in (-1, None) and c < dataset.sizes[d]]
        region_dim = chunked[0] if chunked else next(iter(dataset.dims))
    writer = RegionWriter(
        path, dataset, region_dims=[region_dim], chunks=chunks, parameters=parameters, inputs=inputs,
        overwrite=overwrite,
    )
    for region in writer.pending():
        piece = dataset.isel(region)
        variables = [v for v in piece.data_vars if region_dim in piece[v].dims]
        writer.write(piece[variables].compute(), region)
    # variables without the region dim (e.g. model x model matrices) are written whole
    rest = [v for v in dataset.data_vars if region_dim not in dataset[v].dims]
    if rest and not writer.complete:
        dataset[rest].drop_vars(list(dataset.coords), errors="ignore").compute().to_zarr(
            path, mode="r+", consolidated=False
        )
    if not writer.complete:
        writer.finalize()
    return Path(path)


def iter_chunks(size: int, chunk: int) -> Iterable[slice]:
    """Slices of ``chunk`` elements covering ``range(size)`` (the last one may be shorter)."""
    return (slice(start, min(start + chunk, size)) for start in range(0, size, chunk))
