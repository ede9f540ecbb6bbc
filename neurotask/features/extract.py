"""Feature extraction: images × Taskonomy encoders → the features store, resumably, on Dask.

The store ``features (model, image, feature)`` is written by regions of one model × one image
chunk (default 256 images, the schema's chunking). The unit of work is one image chunk and a
group of models: the chunk's images are decoded once, then every model of the group encodes
them in batches and each model's region is written as soon as it is done. Models are grouped
all together by default (each image decoded once for all 25 models); they are split into
groups only when there are more Dask workers than image chunks, to keep every worker busy.
Each process keeps its loaded encoders (:func:`neurotask.features.encoders.cached_encoder`),
so a worker loads a model once, not once per chunk.

Why a unit is (chunk, model group) and not (chunk, model): a decoded chunk is ~50 MB of uint8
pixels (~200 MB as float32 input); shipping it between workers would cost more than decoding,
and decoding per (chunk, model) would decode every image 25 times.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr

from neurotask.execution import cpu_count, current_client, map_unordered, progress
from neurotask.features import encoders
from neurotask.features.inputs import ChunkPixels, prepared_on_device
from neurotask.features.registry import INPUTS, resolve_models
from neurotask.features.weights import Checkpoint, resolve_weights
from neurotask.stimuli import (
    INPUT_SIZE,
    RESIZE_POLICY,
    ImageError,
    check_image,
    find_images,
    image_id,
    image_source,
    load_image,
)
from neurotask.stores import SCHEMAS, RegionWriter, open_features, provenance, sha256_array

__all__ = ["extract_features", "ON_ERROR", "FEATURE_LAYOUT", "INPUT_SCALING"]

#: What to do with an image that cannot be decoded.
ON_ERROR: dict[str, str] = {
    "raise": "stop with an error naming the file",
    "skip": "leave the image out and list it in the store attrs (skipped_files)",
}

FEATURE_LAYOUT = (
    "encoder output (channel 8, row 16, column 16) flattened in C order: feature = channel*256 + row*16 + column"
)
INPUT_SCALING = (
    "RGB: x/255*2-1 in [-1, 1]; colorization: CIE-Lab L* (sRGB, D65) as L/50-1 in [-1, 1], one channel"
)


# --------------------------------------------------------------------------------------------
# 1. inputs


def _scan(
    paths: Sequence[Path], on_error: str, threads: int
) -> tuple[list[Path], list[str], list[dict[str, str]]]:
    """Decode every image (not resized: :func:`check_image`) to find corrupt files and single-channel ones.

    Done before the store's template is written, so that its image axis holds exactly the
    files that decode: a skipped file leaves no hole. The decode is the one the units repeat
    (same decoder, same conversion), so a file that passes here decodes there.
    """

    def check(path: Path) -> tuple[bool, str]:
        try:
            return check_image(path), ""
        except ImageError as error:
            if on_error == "raise":
                raise
            return False, str(error)

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(check, paths))
    good = [p for p, (_, error) in zip(paths, results) if not error]
    grayscale = [image_id(p) for p, (gray, error) in zip(paths, results) if gray and not error]
    skipped = [{"file": str(p), "error": error} for p, (_, error) in zip(paths, results) if error]
    if not good:
        raise ValueError(f"images: none of the {len(paths)} files could be decoded, e.g. {skipped[:3]}")
    return good, grayscale, skipped


def _decode(paths: Sequence[str], threads: int) -> np.ndarray:
    with ThreadPoolExecutor(threads) as pool:
        return np.stack([image for image, _ in pool.map(load_image, paths)])


def _decoded(chunks: Sequence[Sequence[str]], threads: int, ahead: bool) -> Iterator[np.ndarray]:
    """Each chunk's decoded pixels, in order; with ``ahead``, chunk k+1 decodes while chunk k is encoded.

    Decoding ahead is for encoders on a GPU, where the host's cores are otherwise idle while the
    device encodes; it holds one more chunk of pixels (~50 MB for 256 images). On a CPU the
    decode would take cores from torch, so it is not done there. A chunk's decode error is
    raised when that chunk's turn comes: the chunks before it are encoded (and written) first.
    """
    if not ahead:
        yield from (_decode(paths, threads) for paths in chunks)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="neurotask-decode")
    try:
        following = pool.submit(_decode, chunks[0], threads) if chunks else None
        for k in range(len(chunks)):
            pixels = following.result()
            if k + 1 < len(chunks):
                following = pool.submit(_decode, chunks[k + 1], threads)
            yield pixels
    finally:
        pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------------------------
# 2. the unit of work: one image chunk through a group of models


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _decode_threads(threads: int) -> int:
    return min(threads, 8)


def _worker_threads() -> int:
    """Threads for torch and decoding: all cores in-process; on a Dask worker, what it has.

    Dask's nannies start workers with ``OMP_NUM_THREADS=1`` (one core per worker thread), which
    torch follows; overriding it would oversubscribe a machine running several workers.
    """
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            get_worker()
            return torch.get_num_threads()
        except ValueError:  # not on a worker
            pass
    return cpu_count()


def _encode_chunk(
    paths: Sequence[str],
    checkpoints: Sequence[Checkpoint],
    *,
    device: str,
    batch_size: int | None,
    normalize_outputs: bool,
    fast: bool,
    pixels: np.ndarray | None = None,
    sink: Callable[[str, np.ndarray], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Decode ``paths`` once (unless ``pixels`` holds them) and encode them with each model.

    ``sink`` takes each model's (n, 2048) features as they are done.
    """
    threads = _worker_threads()
    if pixels is None:
        pixels = _decode(paths, _decode_threads(threads))
    if batch_size is None:  # device "auto" is resolved here, on the worker
        batch_size = encoders.default_batch_size(device)
    out: dict[str, np.ndarray] = {}
    chunk = ChunkPixels(pixels, encoders.resolve_device(device))  # on a GPU: copied there once, for every model
    with _torch_threads(threads):
        for checkpoint in checkpoints:
            encoder = encoders.cached_encoder(
                checkpoint, device=device, normalize_outputs=normalize_outputs, fast=fast
            )
            kind = INPUTS[checkpoint.task]
            features = np.empty((len(paths), encoders.N_FEATURES), dtype=np.float32)
            for start in range(0, len(paths), batch_size):
                stop = min(start + batch_size, len(paths))
                features[start:stop] = encoders.encode(encoder, chunk.batch(kind, start, stop))
                if advance is not None:
                    advance(stop - start)
            if sink is None:
                out[checkpoint.task] = features
            else:
                sink(checkpoint.task, features)
    return out


def _write_unit(
    writer: RegionWriter,
    image_region: slice,
    model_index: Mapping[str, int],
    paths: Sequence[str],
    checkpoints: Sequence[Checkpoint],
    **kwargs: Any,
) -> list[str]:
    """A Dask task: encode one chunk with a model group and write each model's region."""

    def sink(task: str, features: np.ndarray) -> None:
        i = model_index[task]
        region = {"model": slice(i, i + 1), "image": image_region}
        writer.write(xr.DataArray(features[None], dims=SCHEMAS["features"].dims, name="features"), region)

    _encode_chunk(paths, checkpoints, sink=sink, **kwargs)
    return [c.task for c in checkpoints]


# --------------------------------------------------------------------------------------------
# 3. orchestration


def _units(
    pending: Iterable[Mapping[str, slice]], tasks: Sequence[str], n_workers: int
) -> list[tuple[slice, list[str]]]:
    """Group pending regions by image chunk; split a chunk's models only to occupy idle workers."""
    by_chunk: dict[tuple[int, int], list[str]] = {}
    for region in pending:
        key = (region["image"].start, region["image"].stop)
        by_chunk.setdefault(key, []).append(tasks[region["model"].start])
    n_groups = max(1, math.ceil(n_workers / max(1, len(by_chunk))))
    units = []
    for (start, stop), chunk_tasks in by_chunk.items():
        for group in np.array_split(np.array(chunk_tasks, dtype=object), min(n_groups, len(chunk_tasks))):
            units.append((slice(start, stop), [str(t) for t in group]))
    return units


def _run_unit(
    unit: tuple[slice, Sequence[str], Sequence[Checkpoint]],
    *,
    writer: RegionWriter | None,
    model_index: Mapping[str, int],
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """One unit of work (a task on a cluster): its features in memory, or written to the store.

    ``kwargs`` go to :func:`_encode_chunk` (``pixels``: the chunk already decoded, in process).
    """
    image_region, paths, checkpoints = unit
    if writer is None:
        return _encode_chunk(paths, checkpoints, **kwargs)
    _write_unit(writer, image_region, model_index, paths, checkpoints, **kwargs)
    return {}


Result = Iterator[tuple[str, slice, np.ndarray]]


def _run_units(
    units: list[tuple[slice, list[str]]],
    checkpoints: Mapping[str, Checkpoint],
    writer: RegionWriter | None,
    model_index: Mapping[str, int],
    paths: list[str],
    run: Mapping[str, Any],
    client: Any,
) -> Result:
    """Run the units and yield in-memory results (task, images, features) as units complete.

    On a client every unit is a task carrying its inputs (re-run if its worker is lost). In this
    process the units run one after the other (torch uses all cores), progress advances per
    batch, and on a GPU the next unit's images decode while this one encodes (:func:`_decoded`).
    """
    total = sum((sl.stop - sl.start) * len(group) for sl, group in units)
    items = [(sl, paths[sl], [checkpoints[t] for t in group]) for sl, group in units]
    with progress("extracting features (images x models)", total, enabled=bool(units)) as advance:
        kwargs = {"writer": writer, "model_index": model_index, **run}
        if client is not None:
            for index, features in map_unordered(_run_unit, items, kwargs=kwargs, client=client):
                sl, group = units[index]
                yield from ((task, sl, f) for task, f in features.items())
                advance((sl.stop - sl.start) * len(group))
            return
        ahead = prepared_on_device(encoders.resolve_device(run["device"]))
        decoded = _decoded([item[1] for item in items], _decode_threads(_worker_threads()), ahead)
        with contextlib.closing(decoded):
            for item, pixels in zip(items, decoded):
                features = _run_unit(item, pixels=pixels, advance=advance, **kwargs)
                yield from ((task, item[0], f) for task, f in features.items())


def _attrs(
    checkpoints: Mapping[str, Checkpoint],
    grayscale: list[str],
    skipped: list[dict[str, str]],
    normalize_outputs: bool,
) -> dict[str, Any]:
    kinds = {c.kind for c in checkpoints.values()}
    return {
        "encoder": f"{encoders.ENCODER}; visualpriors {version('visualpriors')}",
        "input_size": INPUT_SIZE,
        "input_scaling": INPUT_SCALING,
        "resize_policy": RESIZE_POLICY,
        "normalize_outputs": bool(normalize_outputs),
        "feature_layout": FEATURE_LAYOUT,
        "weights_kind": kinds.pop() if len(kinds) == 1 else "mixed",
        "weights_sha256": json.dumps({t: c.sha256 for t, c in checkpoints.items()}),
        "weights": json.dumps({t: {"file": c.path.name, "sha256": c.sha256, "kind": c.kind} for t, c in checkpoints.items()}),
        "grayscale_images": json.dumps(grayscale),
        "skipped_files": json.dumps(skipped),
    }


_VARIABLE_ATTRS = {"long_name": "Taskonomy encoder features", "units": "1"}


def _check_parameters(models: str | Iterable[str], batch_size: int | None, image_chunk: int, on_error: str) -> tuple[str, ...]:
    """The resolved tasks; raises the uniform parameter error for a bad batch size, chunk or on_error."""
    tasks = tuple(resolve_models(models))
    for name, value in (("batch_size", 1 if batch_size is None else batch_size), ("image_chunk", image_chunk)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"The {name!r} parameter of extract_features must be an int >= 1. Got {value!r} instead.")
    if on_error not in ON_ERROR:
        raise ValueError(f"unknown on_error {on_error!r}; expected one of {sorted(ON_ERROR)}")
    return tasks


def _parameters(
    tasks: Sequence[str], paths: Sequence[Path], ids: Sequence[str], checkpoints: Mapping[str, Checkpoint],
    options: Mapping[str, Any],
) -> tuple[dict[str, Any], str]:
    """The store's parameters (a re-run with other ones is refused) and the images' hash (ids and sizes)."""
    sizes = [p.stat().st_size for p in paths]
    images_hash = sha256_array(np.array([f"{i}:{s}" for i, s in zip(ids, sizes)], dtype=object).astype(str))
    parameters = {
        "models": list(tasks),
        "images_sha256": images_hash,
        "n_images": len(ids),
        "weights_sha256": {t: c.sha256 for t, c in checkpoints.items()},
        "normalize_outputs": options["normalize_outputs"],
        "fast": options["fast"],
        "input_size": INPUT_SIZE,
        "image_chunk": options["image_chunk"],
        "on_error": options["on_error"],
    }
    return parameters, images_hash


def _writer(
    store: str | os.PathLike[str], coords: Mapping[str, Any], shape: tuple[int, int, int],
    parameters: Mapping[str, Any], images_hash: str, attrs: Mapping[str, Any], overwrite: bool,
) -> RegionWriter:
    """The store's resumable writer, regions of one model x one image chunk."""
    image_chunk = parameters["image_chunk"]
    zeros = da.zeros(shape, dtype=np.float32, chunks=(1, image_chunk, -1))
    template = xr.Dataset({"features": (SCHEMAS["features"].dims, zeros, _VARIABLE_ATTRS)}, coords=coords)
    return RegionWriter(
        store, template, region_dims=["model", "image"], chunks={"model": 1, "image": image_chunk, "feature": -1},
        parameters=parameters, inputs={"images": images_hash}, attrs=attrs, overwrite=overwrite,
    )


def _all_regions(shape: tuple[int, int, int], image_chunk: int) -> list[dict[str, slice]]:
    """Every (model, image chunk) region, for a run without a store."""
    n_models, n_images, _ = shape
    chunks = [slice(s, min(s + image_chunk, n_images)) for s in range(0, n_images, image_chunk)]
    return [{"model": slice(m, m + 1), "image": sl} for m in range(n_models) for sl in chunks]


def extract_features(
    images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    models: str | Iterable[str] = "all",
    store: str | os.PathLike[str] | None = None,
    *,
    weights: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    client: Any = None,
    on_error: str = "raise",
    normalize_outputs: bool = True,
    fast: bool = False,
    image_chunk: int = 256,
    overwrite: bool = False,
) -> xr.DataArray:
    """Encode stimulus images with Taskonomy encoders into a features store.

    Parameters
    ----------
    images : path-like or iterable of path-like
        A directory tree of images, a BOLD5000 stimuli root, one file, or a list of files
        (see :func:`neurotask.stimuli.find_images`). Image ids are the file stems.
    models : "all", str or iterable of str
        Tasks or aliases (see :func:`neurotask.features.registry.resolve_models`).
    store : path-like, optional
        The zarr store to write; re-running on an interrupted store computes only the missing
        regions. Without a store the features are computed in memory.
    weights : path-like, optional
        Checkpoint directory searched first (then ``NEUROTASK_WEIGHTS``, the torch hub cache, a
        download; see :mod:`neurotask.features.weights`). With a Dask cluster the checkpoint and
        image paths must be readable by the workers.
    batch_size : int, optional
        Images per forward pass; default by device (2 on CPU, the fastest there; 16 on CUDA;
        see :data:`neurotask.features.encoders.DEFAULT_BATCH_SIZE`).
    device : str
        ``"auto"`` (CUDA when available; resolved on each worker), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    client : distributed.Client, optional
        Run on this cluster (default: the current client if any, else in this process with a
        progress bar, using all cores).
    on_error : {"raise", "skip"}
        What to do with an image that cannot be decoded (see :data:`ON_ERROR`).
    normalize_outputs : bool
        Apply the encoders' final GroupNorm, as ``visualpriors.representation_transform`` does.
    fast : bool
        Fast inference: batch norms folded into the convolutions, which run channels-last (on
        CPU ~1.3x faster); features then differ from ``visualpriors``' by float32 rounding (up to
        ~3e-4). The default, ``False``, reproduces ``visualpriors.representation_transform``'s
        numbers (same modules, NCHW). (The device and the thread count change the summation
        order too; resume a store with the settings it was started with for identical values.)
    image_chunk : int
        Images per store chunk and per unit of work.
    overwrite : bool
        Replace a store written with other parameters.

    Returns
    -------
    xarray.DataArray, dims (model, image, feature)
        float32 with ``model``, ``image`` and ``source`` coords; lazy (opened from ``store``) or
        in memory (without one). Attrs: encoder, input_size, input_scaling, resize_policy,
        normalize_outputs, feature_layout, weights_kind, weights_sha256, weights,
        grayscale_images, skipped_files, provenance.

    Raises
    ------
    ValueError
        On empty input, duplicate image ids, an undecodable image (``on_error="raise"``), unknown
        models, or bad parameters.
    neurotask.features.weights.WeightsError
        When weights are missing, corrupt or do not fit.

    Examples
    --------
    >>> from neurotask.features.encoders import save_random_checkpoint
    >>> paths = nt.datasets.write_synthetic_stimuli("stimuli", n_images=4)        # doctest: +SKIP
    >>> save_random_checkpoint("normal", "weights", seed=0)                        # doctest: +SKIP
    >>> feats = extract_features(paths, ["normal"], "features.zarr", weights="weights")  # doctest: +SKIP
    >>> feats.sizes                                                                # doctest: +SKIP
    Frozen({'model': 1, 'image': 4, 'feature': 2048})
    """
    # 1. check the parameters and the inputs
    tasks = _check_parameters(models, batch_size, image_chunk, on_error)
    client = current_client(client)
    if client is None:  # on a cluster "auto" and the batch size are resolved on each worker
        device = str(encoders.resolve_device(device))
        batch_size = encoders.default_batch_size(device) if batch_size is None else batch_size
    paths, grayscale, skipped = _scan(find_images(images), on_error, _decode_threads(_worker_threads()))
    ids = [image_id(p) for p in paths]

    # 2. weights, resolved (and downloaded) here so that every worker reads the same verified files
    checkpoints = {task: resolve_weights(task, weights) for task in tasks}

    # 3. the store's template, or an in-memory array
    options = {"normalize_outputs": bool(normalize_outputs), "fast": bool(fast), "image_chunk": int(image_chunk),
               "on_error": on_error}
    parameters, images_hash = _parameters(tasks, paths, ids, checkpoints, options)
    attrs = {**_attrs(checkpoints, grayscale, skipped, normalize_outputs), "fast": bool(fast)}
    coords = {"model": list(tasks), "image": ids, "source": ("image", [image_source(i) for i in ids])}
    shape = (len(tasks), len(ids), encoders.N_FEATURES)
    writer = None if store is None else _writer(store, coords, shape, parameters, images_hash, attrs, overwrite)
    pending = _all_regions(shape, image_chunk) if writer is None else writer.pending()

    # 4. run the units: on the cluster, or here; with a store they write their regions, yield nothing
    values = np.empty(shape if writer is None else (0, 0, 0), dtype=np.float32)
    model_index = {t: i for i, t in enumerate(tasks)}
    n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
    run = {"device": device, "batch_size": None if batch_size is None else int(batch_size),
           "normalize_outputs": bool(normalize_outputs), "fast": bool(fast)}
    units = _units(pending, tasks, n_workers)
    for task, sl, features in _run_units(units, checkpoints, writer, model_index, [str(p) for p in paths], run, client):
        values[model_index[task], sl] = features

    # 5. finish
    final = {"device": device, "batch_size": "auto" if batch_size is None else int(batch_size)}
    if writer is None:
        array = xr.DataArray(values, dims=SCHEMAS["features"].dims, coords=coords, name="features", attrs=_VARIABLE_ATTRS)
        array.attrs.update({**attrs, **provenance(parameters, {"images": images_hash}), **final})
        return array
    if not writer.complete:
        writer.finalize(final)
    return open_features(store)
