"""Where the ridge fits run: threads in this process, or tasks on a Dask client (DESIGN §6).

Both paths take a :class:`FitPlan` and return the per-voxel scores (and test predictions):

* in this process, each voxel chunk is split across one thread per core with single-threaded
  BLAS (all cores busy, no BLAS barriers to stall on), and a reader thread keeps the next
  chunk loading (zarr decompression releases the GIL) while the cores fit the current one;
* on a client, the decompositions are tasks on the workers (one per fold, so they run in
  parallel), the factors stay on the workers as futures, and chunk tasks use them with
  single-threaded BLAS. Features and the split travel inside the tasks
  (:func:`neurotask.execution.submit_with_data`), so every factor is recomputable after a
  worker is lost.

Models are processed in groups whose factors fit in ``factor_memory``; each voxel chunk is
read once per group.

With the torch backend (:mod:`neurotask.backend`), a chunk's training responses move to the
device once and stay there for every model of the group, in voxel batches sized to the
device's free memory; in this process the factors are computed on the device, on a client one
task per model computes them (on a ``GPU``-resource worker when the workers advertise one, as
the chunk tasks then are) and each worker copies them to its device once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from neurotask import backend as backends
from neurotask import execution, stores
from neurotask.encoding import ridge, ridge_torch
from neurotask.encoding.split import Split

__all__ = ["FitPlan", "PredictionSink", "default_chunk", "model_groups", "on_torch", "run_cluster", "run_local"]


@dataclass(frozen=True)
class FitPlan:
    """Everything the chunk tasks of one fit share.

    Attributes
    ----------
    designs : list of ndarray of shape (trial, k_m), float32
        One design per model (all trials, in trial order).
    standardize : list of bool
        Per model: scale features to unit training variance.
    split : Split
        Training folds and test trials.
    alphas : ndarray of shape (n_alphas,)
        The alpha grid.
    solver : {"kfold", "gcv"}
        Key of :data:`neurotask.encoding.ridge.RIDGE_SOLVERS`.
    variables : list of str
        Per-voxel outputs, in order (scores, ``alpha``, ``cv_r2``).
    groups : list of list of int
        Models whose factors are held at once.
    chunk : int
        Voxels per task.
    predictions : bool
        Also return the test predictions.
    backend : neurotask.backend.Backend
        Array backend of the kernels (resolved where they run).
    device_batch : int, optional
        Cap on voxel columns per device step (torch backend).
    """

    designs: list[np.ndarray]
    standardize: list[bool]
    split: Split
    alphas: np.ndarray
    solver: str
    variables: list[str]
    groups: list[list[int]]
    chunk: int
    predictions: bool
    backend: backends.Backend = backends.Backend()
    device_batch: int | None = None

    def factors(self, m: int) -> ridge.RidgeFactors:
        """Model ``m``'s factors, computed in this process (on the device with the torch backend)."""
        return _factors(self.designs[m], self.split, self.alphas, self.standardize[m], self.solver, self.backend)


def _factors(design: np.ndarray, split: Split, alphas: np.ndarray, standardize: bool, solver: str,
             backend: backends.Backend) -> ridge.RidgeFactors:
    name, device = backends.resolve(backend)
    args = (design[split.train_index], design[split.test_index], split.bounds)
    options = {"alphas": alphas, "standardize": standardize, "folds": solver == "kfold"}
    if name == "torch":
        return ridge_torch.make_ridge_factors(*args, device=device, **options)
    return ridge.make_ridge_factors(*args, **options)


def model_groups(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive models whose factor sizes (bytes) add up to at most ``budget`` (at least one each)."""
    groups: list[list[int]] = [[]]
    used = 0
    for index, size in enumerate(sizes):
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


def default_chunk(responses: xr.DataArray, client: Any) -> int:
    """Voxels per task: the stored chunk, narrowed on a client so that every worker thread gets work."""
    n_voxels = responses.sizes["voxel"]
    chunk = responses.data.chunksize[1] if isinstance(responses.data, da.Array) else 4096
    if client is not None:
        # enough chunks to keep every worker thread busy and even out the last ones' finish,
        # but wide enough for efficient GEMMs
        threads = sum(client.nthreads().values()) or 1
        target = max(512, math.ceil(n_voxels / (8 * threads)))
        if target < chunk:
            # a divisor of the stored chunk: each task then reads a part of one stored chunk
            # (2500-voxel tasks over 4096-voxel chunks cost 10% more than 2048-voxel ones)
            divisors = [p for p in range(math.ceil(chunk / target), chunk // 256 + 1) if chunk % p == 0]
            chunk = chunk // divisors[0] if divisors else target
    return int(min(chunk, n_voxels))


# --------------------------------------------------------------------------------------------
# chunk kernel


def _voxel_labels(responses: xr.DataArray) -> pd.DataFrame:
    names = [c for c in ("i", "j", "k", "roi") if c in responses.coords and responses[c].dims == ("voxel",)]
    return pd.DataFrame({c: responses[c].values for c in names}, index=pd.RangeIndex(responses.sizes["voxel"]))


def _check_block(y: np.ndarray, split: Split, start: int, voxel_labels: pd.DataFrame) -> None:
    bad = ~np.isfinite(y)
    if bad.any():
        voxels = np.flatnonzero(bad.any(axis=0))
        raise ValueError(
            f"responses hold NaN/inf in {voxels.size} voxels (positions {(start + voxels[:5]).tolist()}, "
            f"{voxel_labels.iloc[voxels[:5]].to_dict('records')}) over {int(bad.any(axis=1).sum())} trials; "
            f"mask or impute them before fitting."
        )
    train = y[split.train_index]
    constant = np.flatnonzero(np.all(train == train[:1], axis=0))
    if constant.size:
        raise ValueError(
            f"{constant.size} voxels are constant over the training trials (positions "
            f"{(start + constant[:5]).tolist()}, {voxel_labels.iloc[constant[:5]].to_dict('records')}); "
            f"drop them from responses before fitting."
        )


def _fit_block(
    y: np.ndarray, factors: Sequence[ridge.RidgeFactors], plan: FitPlan, start: int, voxel_labels: pd.DataFrame,
    blas_threads: int | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit every model of a group on one voxel chunk.

    Returns the (model, variable, voxel) float32 scores and, with ``plan.predictions``, the
    (model, test trial, voxel) float32 test predictions.
    """
    y = np.asarray(y, dtype=np.float32)
    split = plan.split
    name, device = backends.resolve(plan.backend)
    if name == "torch":
        _check_block(y, split, start, voxel_labels)
        return _fit_block_torch(y, factors, plan, device)
    with execution.blas_threads(blas_threads):
        _check_block(y, split, start, voxel_labels)
        y_train, y_test = y[split.train_index], y[split.test_index]
        out = np.empty((len(factors), len(plan.variables), y.shape[1]), dtype=np.float32)
        predictions = np.empty((len(factors), y_test.shape[0], y.shape[1]), np.float32) if plan.predictions else None
        for m, model_factors in enumerate(factors):
            scores = ridge.fit_ridge_chunk(model_factors, y_train, y_test, plan.alphas, plan.solver)
            for v, name in enumerate(plan.variables):
                out[m, v] = scores[name]
            if predictions is not None:
                predictions[m] = scores["prediction"]
    return out, predictions


def _fit_block_torch(
    y: np.ndarray, factors: Sequence[ridge.RidgeFactors], plan: FitPlan, device: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_fit_block` on a torch device: the training responses move there once for every model."""
    import torch

    split = plan.split
    y_train = torch.as_tensor(y[split.train_index], device=device)
    y_test = y[split.test_index]
    factors = [ridge_torch.factors_on_device(f, device) if isinstance(f.design, np.ndarray) else f for f in factors]
    n_voxels = y.shape[1]
    per_voxel = ridge_torch.bytes_per_voxel(y.shape[0], int(factors[0].design.shape[1]), len(split.bounds) - 1,
                                            plan.alphas.size)
    batch = backends.voxel_batch(n_voxels, per_voxel, device, plan.device_batch)
    out = np.empty((len(factors), len(plan.variables), n_voxels), dtype=np.float32)
    predictions = np.empty((len(factors), y_test.shape[0], n_voxels), np.float32) if plan.predictions else None
    with backends.tf32(plan.backend.allow_tf32):
        for cols in stores.iter_chunks(n_voxels, batch):
            for m, model_factors in enumerate(factors):
                scores = ridge_torch.fit_ridge_chunk(model_factors, y_train[:, cols], y_test[:, cols], plan.alphas,
                                                     plan.solver)
                for v, name in enumerate(plan.variables):
                    out[m, v, cols] = scores[name]
                if predictions is not None:
                    predictions[m, :, cols] = scores["prediction"]
    return out, predictions


#: Where a chunk's test predictions go instead of memory: ``sink(group, voxels, predictions)``.
PredictionSink = Callable[[list[int], slice, np.ndarray], None]


class _Outputs:
    """The fit's outputs, filled chunk by chunk (predictions kept, or handed to a sink as they come)."""

    def __init__(self, plan: FitPlan, n_voxels: int, sink: PredictionSink | None = None) -> None:
        n_models = len(plan.designs)
        self.values = np.empty((n_models, len(plan.variables), n_voxels), dtype=np.float32)
        n_test = plan.split.test_index.size
        self.sink = sink
        keep = plan.predictions and sink is None
        self.predictions = np.empty((n_models, n_test, n_voxels), dtype=np.float32) if keep else None

    def put(self, group: list[int], voxels: slice, block: tuple[np.ndarray, np.ndarray | None]) -> None:
        self.values[group, :, voxels] = block[0]
        if self.sink is not None and block[1] is not None:
            self.sink(group, voxels, block[1])
        elif self.predictions is not None:
            self.predictions[group, :, voxels] = block[1]


# --------------------------------------------------------------------------------------------
# in this process


def run_local(plan: FitPlan, responses: xr.DataArray, progress: bool, sink: PredictionSink | None = None) -> _Outputs:
    """Fit in this process: per group, factors, then every voxel chunk across one thread per core
    (numpy), or on the device (torch)."""
    n_voxels = responses.sizes["voxel"]
    outputs = _Outputs(plan, n_voxels, sink)
    on_torch = backends.resolve(plan.backend)[0] == "torch"
    labels = _voxel_labels(responses)
    slices = list(stores.iter_chunks(n_voxels, plan.chunk))
    threads = execution.cpu_count()

    def read(sl: slice) -> np.ndarray:
        return np.asarray(responses.isel(voxel=sl).values)

    def fit_part(y: np.ndarray, factors: list, sl: slice, part: np.ndarray) -> tuple:
        return _fit_block(y[:, part], factors, plan, sl.start + part[0], labels.iloc[sl].iloc[part], None)

    with execution.progress("ridge: voxel chunks", len(plan.groups) * len(slices), enabled=progress) as advance, \
            ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(1) as reader:
        for group in plan.groups:
            pending = reader.submit(read, slices[0])
            factors = [plan.factors(m) for m in group]
            for i, sl in enumerate(slices):
                y = pending.result()
                if i + 1 < len(slices):
                    pending = reader.submit(read, slices[i + 1])
                if on_torch:  # torch runs its own threads (CPU) or the device
                    outputs.put(group, sl, _fit_block(y, factors, plan, sl.start, labels.iloc[sl], None))
                    advance()
                    continue
                # one slice of the chunk per core, each on single-threaded BLAS: independent GEMMs
                # keep their speed when another process takes a core; multithreaded OpenBLAS
                # stalls at its barriers then
                parts = [p for p in np.array_split(np.arange(y.shape[1]), threads) if p.size]
                with execution.blas_threads(1):
                    blocks = list(pool.map(lambda p: fit_part(y, factors, sl, p), parts))
                predictions = None if blocks[0][1] is None else np.concatenate([b[1] for b in blocks], axis=2)
                outputs.put(group, sl, (np.concatenate([b[0] for b in blocks], axis=2), predictions))
                advance()
    return outputs


# --------------------------------------------------------------------------------------------
# on a Dask client: one task per decomposition, results kept on the workers


def _remote_prepare(x_train, x_test, standardize):  # noqa: ANN001, ANN202
    with execution.blas_threads(1):
        design, test_design, offset, scale = ridge.standardize_features(x_train, x_test, standardize=standardize)
        return design, test_design, offset, scale, ridge.training_gram(design)


def _remote_fold_eigh(prepared, bounds, fold):  # noqa: ANN001, ANN202
    with execution.blas_threads(1):
        return ridge.fold_eigh(prepared[0], bounds, fold, prepared[4])


def _remote_fold_solutions(eigh, alphas):  # noqa: ANN001, ANN202
    with execution.blas_threads(1):
        out = np.empty((alphas.size, eigh[2].shape[0], eigh[1].shape[0]), dtype=np.float32)
        ridge.fold_solutions(eigh, alphas, out)
        return out


def _remote_full(prepared):  # noqa: ANN001, ANN202
    with execution.blas_threads(1):
        return ridge.decompose_training(prepared[0], prepared[1], prepared[4])


def _remote_assemble(prepared, bounds, alphas, full, eighs, solutions):  # noqa: ANN001, ANN202
    design, _, offset, scale, _ = prepared
    # the alpha blocks' rows as one list per fold: no copy of the (n_alphas, n_val, k) solutions
    folds = tuple(ridge.FoldFactors(alphas, [s for block in blocks for s in block], eigh[3])
                  for eigh, blocks in zip(eighs, solutions))
    return ridge.RidgeFactors(design, bounds, folds, *full, offset, scale)


def _submit_factors(client: Any, plan: FitPlan, m: int) -> Any:
    split, design, alphas = plan.split, plan.designs[m], plan.alphas
    # the features travel inside the task, not scattered: every factor stays recomputable after a lost worker
    prepared = execution.submit_with_data(client, _remote_prepare, design[split.train_index],
                                          design[split.test_index], plan.standardize[m])
    n_folds = len(split.bounds) - 1 if plan.solver == "kfold" else 0
    # decompositions before products (priority): every worker then has an eigh to run while
    # the others finish, and the last product ends with the last decomposition's
    full = client.submit(_remote_full, prepared, pure=False, priority=1)
    eighs = [client.submit(_remote_fold_eigh, prepared, split.bounds, f, pure=False, priority=1)
             for f in range(n_folds)]
    # the per-alpha products as (fold, alpha block) tasks, so every worker thread gets a share
    blocks = ridge.alpha_blocks(alphas.size, sum(client.nthreads().values()))
    solutions = [[client.submit(_remote_fold_solutions, eigh, alphas[block], pure=False) for block in blocks]
                 for eigh in eighs]
    return client.submit(_remote_assemble, prepared, split.bounds, alphas, full, eighs, solutions, pure=False)


def _remote_factors(design, split, alphas, standardize, solver, backend):  # noqa: ANN001, ANN202
    """One model's factors in one task, on the worker's device (torch) and returned as numpy."""
    factors = _factors(design, split, alphas, standardize, solver, backend)
    return ridge_torch.factors_to_numpy(factors) if not isinstance(factors.design, np.ndarray) else factors


def _submit_torch_factors(client: Any, plan: FitPlan, m: int, resources: dict[str, int] | None) -> Any:
    return execution.submit_with_data(client, _remote_factors, plan.designs[m], plan.split, plan.alphas,
                                      plan.standardize[m], plan.solver, plan.backend, resources=resources)


def on_torch(plan: FitPlan, client: Any) -> bool:
    """Whether a client's fit takes the torch path: asked for, or ``"auto"`` with workers that advertise a
    ``GPU`` resource or see a CUDA device (each task then resolves ``"auto"`` where it runs)."""
    if plan.backend.name != "auto":
        return plan.backend.name == "torch"
    return backends.gpu_resources(client) is not None or backends.workers_see_cuda(client)


def _chunk_plan(plan: FitPlan) -> FitPlan:
    """The plan a chunk task needs: no designs (the factors carry them)."""
    return FitPlan([], plan.standardize, plan.split, plan.alphas, plan.solver, plan.variables, [], plan.chunk,
                   plan.predictions, plan.backend, plan.device_batch)


def run_cluster(client: Any, plan: FitPlan, responses: xr.DataArray, progress: bool,
                sink: PredictionSink | None = None) -> _Outputs:
    """Fit on a Dask client: per group, factors as futures, then one task per voxel chunk.

    On the torch path, factor and chunk tasks carry ``resources={"GPU": 1}`` when the workers
    advertise that resource.
    """
    from distributed import as_completed

    n_voxels = responses.sizes["voxel"]
    outputs = _Outputs(plan, n_voxels, sink)
    torch_path = on_torch(plan, client)
    resources = backends.gpu_resources(client) if torch_path else None
    if not torch_path:
        plan = dataclasses.replace(plan, backend=backends.Backend("numpy"))
    labels = _voxel_labels(responses)
    data = responses.data if isinstance(responses.data, da.Array) else da.from_array(np.asarray(responses.data))
    blocks = data.rechunk((-1, plan.chunk)).to_delayed()[0]
    slices = list(stores.iter_chunks(n_voxels, plan.chunk))
    # recomputable, unlike scattered data
    plan_f = execution.submit_with_data(client, lambda value: value, _chunk_plan(plan))
    with execution.progress("ridge: voxel chunks", len(plan.groups) * len(slices), enabled=progress) as advance:
        for group in plan.groups:
            factors = [_submit_torch_factors(client, plan, m, resources) if torch_path
                       else _submit_factors(client, plan, m) for m in group]
            tasks = [dask.delayed(_fit_block, pure=True)(block, factors, plan_f, sl.start, labels.iloc[sl], 1)
                     for block, sl in zip(blocks, slices)]
            futures = client.compute(tasks, resources=resources)
            where = {future.key: sl for future, sl in zip(futures, slices)}
            for future, values in as_completed(futures, with_results=True):
                outputs.put(group, where[future.key], values)
                future.release()  # the workers drop this chunk's outputs now, not at the group's end
                advance()
            del factors, tasks, futures  # release this group's factors on the workers
    return outputs
