"""Stores: schema, validation, lazy opening, provenance and resumable region writes (DESIGN §2).

The only package that talks to zarr. Every store is an xarray Dataset on zarr v3:

* ``features``  — ``features (model, image, feature)`` float32, chunks (1, 256, all)
* ``responses`` — ``responses (trial, voxel)`` float32, chunks (all, 4096)
* ``results``   — a Dataset of ``(model, voxel)``, ``(model, model_)``, ``(pair, voxel)`` … variables,
  voxel-chunked.

Writes are resumable: :class:`RegionWriter` writes a lazy template first (``compute=False``),
then fills chunk-aligned regions and ticks one completion flag per region. A re-run skips the
regions already ticked. The store carries ``neurotask_complete = False`` until
:meth:`RegionWriter.finalize`, and the ``open_*`` functions refuse an incomplete store, so an
interrupted run never reads as complete.

Modules: :mod:`~neurotask.stores.schema` (schemas, validation of analysis inputs),
:mod:`~neurotask.stores.open` (lazy opening), :mod:`~neurotask.stores.regions` (resumable
writes), :mod:`~neurotask.stores.provenance` (hashes, provenance attrs),
:mod:`~neurotask.stores.layout` (where a pipeline run puts its stores).
"""

from neurotask.stores.open import is_complete, open_features, open_responses, open_results, open_store
from neurotask.stores.provenance import fingerprint, provenance, sha256_array, sha256_file
from neurotask.stores.regions import RegionWriter, iter_chunks, write_dataset
from neurotask.stores.schema import (
    COMPLETE_ATTR,
    DONE_VARIABLE,
    SCHEMAS,
    StoreError,
    StoreSchema,
    has_voxel_grid,
    image_sources,
    validate_features,
    validate_responses,
)

__all__ = [
    "COMPLETE_ATTR",
    "DONE_VARIABLE",
    "SCHEMAS",
    "RegionWriter",
    "StoreError",
    "StoreSchema",
    "has_voxel_grid",
    "image_sources",
    "fingerprint",
    "is_complete",
    "iter_chunks",
    "open_features",
    "open_responses",
    "open_results",
    "open_store",
    "provenance",
    "sha256_array",
    "sha256_file",
    "validate_features",
    "validate_responses",
    "write_dataset",
]
