"""Statistics benchmark: permutation nulls, refit-null cost, variance partitioning (one run).

1. Shuffle-test null, ``permutation_test`` (threaded scheduler, this process): n_permutations ×
   voxels × test trials (default the full 1000 × 100,000 × 370), wall time and peak RSS increase.
2. The per-voxel loop users write (``for v: for perm: np.corrcoef``), timed on a subset and
   extrapolated to the same size, in the same run, and the speed-up.
3. Refit null: one model at full subject scale (4884 training trials, 2048 features, 19 alphas):
   setup (eigh + hat matrices) and cost per permutation, measured on a voxel subset, extrapolated.
4. Variance partitioning of one pair on the full CSI1 trial order (5254 trials, 2 × 2048 features):
   timed at two voxel counts, extrapolated linearly (fixed decompositions + per-voxel GEMMs).

Usage: ``flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_stats.py [--quick]
[--only partition,...]``. Writes ``benchmarks/out/stats.json`` (``stats_<parts>.json`` with ``--only``).
Another revision side by side: ``git worktree add /tmp/old REV`` and run this script with
``PYTHONPATH=/tmp/old`` (it prints which package it timed).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import xarray as xr

import neurotask
from neurotask.datasets.synthetic import bold5000_trial_order
from neurotask.stats import permutation_test, variance_partition
from neurotask.stats.permutation import _hat_matrices, _permutations, _refit_null
from neurotask.stimuli import image_id

OUT = Path(__file__).resolve().parent / "out"
#: --only names and the report keys they fill.
PARTS = {"shuffle": "shuffle_test", "refit": "refit", "partition": "variance_partition"}


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 20 ms."""

    def __enter__(self) -> PeakRSS:
        self.process = psutil.Process(os.getpid())
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()

    @property
    def increase_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _responses(values: np.ndarray, images, sessions) -> xr.DataArray:
    n_trials, n_voxels = values.shape
    return xr.DataArray(
        values, dims=("trial", "voxel"),
        coords={"image": ("trial", np.asarray(images)), "session": ("trial", np.asarray(sessions)),
                "run": ("trial", np.ones(n_trials, int)), "i": ("voxel", np.arange(n_voxels)),
                "j": ("voxel", np.zeros(n_voxels, int)), "k": ("voxel", np.zeros(n_voxels, int))},
    )


def bench_shuffle(n_permutations: int, n_voxels: int, n_test: int, loop_voxels: int, loop_permutations: int) -> dict:
    rng = np.random.default_rng(0)
    prediction = rng.standard_normal((1, n_test, n_voxels), dtype=np.float32)
    responses = _responses(0.2 * prediction[0] + rng.standard_normal((n_test, n_voxels), dtype=np.float32),
                           np.arange(n_test).astype(str), np.ones(n_test, int))
    results = xr.Dataset({"is_test": ("trial", np.ones(n_test, bool))}, coords={"model": ["m"]})
    prediction = xr.DataArray(prediction, dims=("model", "trial", "voxel"), coords={"model": ["m"]})
    # warm-up on a slice: imports and thread pools are not part of the peak memory
    permutation_test(results, responses.isel(voxel=slice(0, 100)), predictions=prediction.isel(voxel=slice(0, 100)),
                     n_permutations=10)
    with PeakRSS() as memory:
        start = time.perf_counter()
        perm = permutation_test(results, responses, predictions=prediction, n_permutations=n_permutations, seed=0)
        seconds = time.perf_counter() - start
    # the users' loop on a subset, in the same run
    pred, y = prediction.values[0], responses.values
    perms = _permutations(n_test, loop_permutations, seed=0)
    start = time.perf_counter()
    for v in range(loop_voxels):
        for order in perms:
            np.corrcoef(pred[:, v], y[order, v])[0, 1]
    per_call = (time.perf_counter() - start) / (loop_voxels * loop_permutations)
    loop_seconds = per_call * n_voxels * n_permutations
    return {
        "n_permutations": n_permutations, "n_voxels": n_voxels, "n_test": n_test,
        "seconds": seconds, "peak_rss_increase_mib": memory.increase_mib,
        "input_mib": 2 * n_test * n_voxels * 4 / 2**20,
        "ns_per_voxel_permutation_trial": seconds / (n_permutations * n_voxels * n_test) * 1e9,
        "loop_subset": f"{loop_voxels} voxels x {loop_permutations} permutations",
        "loop_us_per_corrcoef": per_call * 1e6, "loop_seconds_extrapolated": loop_seconds,
        "speedup": loop_seconds / seconds, "significant": int(perm.significant.sum()),
    }


def bench_refit(n_train: int, n_test: int, n_features: int, n_voxels: int, n_permutations: int, full_voxels: int) -> dict:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n_train + n_test, n_features), dtype=np.float32)
    y = rng.standard_normal((n_train + n_test, n_voxels), dtype=np.float32)
    alphas = np.logspace(-2, 7, 19)
    start = time.perf_counter()
    hats = _hat_matrices(x[:n_train], x[n_train:], alphas, standardize=False)
    setup = time.perf_counter() - start
    alpha_index = rng.integers(0, alphas.size, n_voxels)
    perms = _permutations(n_train, n_permutations, seed=0)
    start = time.perf_counter()
    _refit_null(perms, hats, alpha_index, y[:n_train], y[n_train:], "r")
    per_permutation = (time.perf_counter() - start) / n_permutations
    return {
        "n_train": n_train, "n_test": n_test, "n_features": n_features, "n_alphas": alphas.size,
        "setup_seconds_per_model": setup, "measured_voxels": n_voxels,
        "seconds_per_permutation_measured": per_permutation,
        "seconds_per_permutation_extrapolated": per_permutation * full_voxels / n_voxels,
        "extrapolated_to_voxels": full_voxels,
        "hours_for_1000_permutations_extrapolated": per_permutation * full_voxels / n_voxels * 1000 / 3600,
    }


def bench_partition(voxel_counts: tuple[int, int], full_voxels: int, n_features: int) -> dict:
    order = [image_id(name) for name in bold5000_trial_order("CSI1")]
    images = list(dict.fromkeys(order))
    n_trials = len(order)
    sessions = np.minimum(np.arange(n_trials) * 15 // n_trials + 1, 15)
    rng = np.random.default_rng(2)
    values = rng.standard_normal((2, len(images), n_features), dtype=np.float32)
    features = xr.DataArray(
        values, dims=("model", "image", "feature"),
        coords={"model": ["autoencoding", "depth_euclidean"], "image": images, "source": ("image", ["coco"] * len(images))},
    )
    timings = {}
    for n_voxels in voxel_counts:
        responses = _responses(rng.standard_normal((n_trials, n_voxels), dtype=np.float32), order, sessions)
        start = time.perf_counter()
        variance_partition(features, responses, [("autoencoding", "depth_euclidean")], progress=False).compute()
        timings[n_voxels] = time.perf_counter() - start
    (v1, t1), (v2, t2) = timings.items()
    per_voxel = (t2 - t1) / (v2 - v1)
    fixed = t1 - per_voxel * v1
    return {
        "n_trials": n_trials, "n_features_per_space": n_features, "cv": 5, "n_alphas": 19,
        "measured_seconds": {str(k): v for k, v in timings.items()},
        "fixed_seconds": fixed, "seconds_per_1000_voxels": per_voxel * 1000,
        "extrapolated_to_voxels": full_voxels, "seconds_extrapolated": fixed + per_voxel * full_voxels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, minutes less)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = args.only.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only names {unknown}; choose from {list(PARTS)}")
    full_voxels = 100_000
    cases = {
        "shuffle_test": lambda: bench_shuffle(200, 10_000, 370, 5, 50) if args.quick
        else bench_shuffle(1000, full_voxels, 370, 20, 100),
        "refit": lambda: bench_refit(1000, 370, 512, 1000, 2, full_voxels) if args.quick
        else bench_refit(4884, 370, 2048, 5000, 3, full_voxels),
        "variance_partition": lambda: bench_partition((200, 600), full_voxels, 256) if args.quick
        else bench_partition((1000, 4000), full_voxels, 2048),
    }
    report = {"package": neurotask.__file__, "cpu_count": os.cpu_count()}
    for part in parts:
        report[PARTS[part]] = cases[PARTS[part]]()
    report["load_average_at_end"] = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    name = "stats" + ("_quick" if args.quick else "") + ("" if set(parts) == set(PARTS) else "_" + "_".join(parts))
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
