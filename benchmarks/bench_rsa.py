"""Benchmark: full-scale RSA (25 models × 4916 images × 2048 features) against rsatoolbox.

Two image sets: all 4916 BOLD5000 images (12,081,070 pairs) and its 1000 scene images
(499,500 pairs). Each measurement runs in a fresh child process that first builds the
synthetic features (``make_synthetic_features(images=4916)``, float32, 1.0 GB for 25 models),
then times the RSA while a thread samples the process RSS every 5 ms:

* neurotask: ``nt.rsa.model_similarity(features, subset, "correlation", compare)``, in process
  (multithreaded BLAS);
* rsatoolbox 0.3: ``calc_rdm(datasets, method="correlation")`` + ``compare(rdms, rdms, compare)``
  on the same features (float32, as stored).

Cases (compare, images): spearman/all, spearman/scenes, tau-a/scenes, tau-a/all. Where a full run
would take too long or too much memory on this shared 2-core, 24 GB machine, a tool runs on
``--toolbox-models`` models and is extrapolated to 25: rsatoolbox's RDM and Spearman steps are
per model (linear; the 25×25 product over pairs is ignored, which favours rsatoolbox), its tau-a
runs on all m² model pairs (quadratic); neurotask's tau-a on all images is its measured 25-model
Spearman time plus the measured time per model pair × 300 pairs (memory: an upper bound, the sum
of both runs' peaks above the input).

Each rsatoolbox child also runs neurotask on its models and reports the largest difference
between the two similarity matrices. Results go to ``benchmarks/out/rsa.json``.

Run under the shared benchmark lock::

    flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_rsa.py [--images 4916] [--models 25]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SUBSETS = {"all": None, "scene": {"source": "scene"}}


class PeakRSS:
    """Sample this process's resident memory in a thread; ``peak`` is the largest seen (bytes)."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _features(n_models: int, n_images: int):
    from neurotask.datasets import make_synthetic_features
    from neurotask.features.registry import TASKS

    return make_synthetic_features(list(TASKS)[:n_models], n_images, seed=0)


def _toolbox_similarity(features, compare: str) -> tuple:
    import numpy as np
    import rsatoolbox

    start = time.perf_counter()
    datasets = [rsatoolbox.data.Dataset(np.asarray(features.values[m])) for m in range(features.sizes["model"])]
    rdms = rsatoolbox.rdm.calc_rdm(datasets, method="correlation")
    middle = time.perf_counter()
    sim = rsatoolbox.rdm.compare(rdms, rdms, method=compare)
    return sim, middle - start, time.perf_counter() - middle


def child(tool: str, subset_name: str, n_models: int, n_images: int, compare: str) -> dict:
    """Run one measurement in this (fresh) process and return its numbers."""
    import gc

    import numpy as np
    import psutil
    import rsatoolbox  # noqa: F401  (imported before timing, for both tools)

    import neurotask as nt
    from neurotask.rsa import select_images

    features = _features(n_models, n_images)
    features, description = select_images(features, SUBSETS[subset_name])
    features = features.copy(data=np.ascontiguousarray(features.values))  # input resident before timing
    gc.collect()
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    with PeakRSS() as rss:
        if tool == "neurotask":
            sim = nt.rsa.model_similarity(features, rdm_method="correlation", compare=compare, progress=False).values
        else:
            sim, rdm_seconds, compare_seconds = _toolbox_similarity(features, compare)
    seconds = time.perf_counter() - start
    result = {
        "tool": tool, "compare": compare, "subset": description, "models": n_models,
        "images": features.sizes["image"], "pairs": features.sizes["image"] * (features.sizes["image"] - 1) // 2,
        "seconds": seconds, "peak_rss_gb": rss.peak / 1e9, "input_rss_gb": baseline / 1e9,
        "peak_above_input_gb": (rss.peak - baseline) / 1e9,
    }
    if tool == "rsatoolbox":
        result.update(rdm_seconds=rdm_seconds, compare_seconds=compare_seconds, seconds=rdm_seconds + compare_seconds)
        ours = nt.rsa.model_similarity(features, compare=compare, progress=False).values
        result["max_abs_difference_to_neurotask"] = float(np.abs(ours - sim).max())
    if tool == "neurotask" and compare == "tau-a":
        start = time.perf_counter()
        nt.rsa.model_similarity(features, compare="spearman", progress=False)
        result["spearman_seconds"] = time.perf_counter() - start
    return result


def run_child(tool: str, subset_name: str, n_models: int, n_images: int, compare: str = "spearman") -> dict:
    command = [sys.executable, __file__, "--child", tool, subset_name, str(n_models), str(n_images), compare]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _extrapolate(measured: dict, models: int, input_gb: float) -> dict:
    """rsatoolbox at ``models``: RDMs and Spearman ranks linear in models; tau-a runs on all m² pairs."""
    k = measured["models"]
    compare_scale = (models / k) ** 2 if measured["compare"] == "tau-a" else models / k
    seconds = measured["rdm_seconds"] * models / k + measured["compare_seconds"] * compare_scale
    return {
        "seconds": measured["seconds"] if k == models else seconds,
        "peak_rss_gb": input_gb + measured["peak_above_input_gb"] * models / k,
        "extrapolated_from_models": None if k == models else k,
    }


def _line(ours: dict, theirs: dict, full: dict, models: int) -> str:
    k = theirs["models"]
    return (
        f"{ours['compare']:>8} | {ours['subset']:>17}: {ours['images']} images, {ours['pairs']:,} pairs, {models} models"
        f" | neurotask {ours['seconds']:.1f} s, peak {ours['peak_rss_gb']:.2f} GB"
        f" ({ours['peak_above_input_gb']:.2f} GB above the {ours['input_rss_gb']:.2f} GB input)"
        + (f" [extrapolated from {ours['models']} models]" if ours["models"] != models else "")
        + f" | rsatoolbox {full['seconds']:.1f} s, peak {full['peak_rss_gb']:.2f} GB"
        + (f" [extrapolated from {k} models: {theirs['seconds']:.1f} s]" if k != models else "")
        + f" | speedup {full['seconds'] / ours['seconds']:.1f}x"
        f" | max |diff| {theirs['max_abs_difference_to_neurotask']:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=25)
    parser.add_argument("--images", type=int, default=4916)
    parser.add_argument("--toolbox-models", type=int, default=4, help="rsatoolbox models on all images")
    parser.add_argument("--cases", default="spearman:all,spearman:scene,tau-a:scene,tau-a:all",
                        help="compare:images cases to run, comma-separated (tau-a:all needs spearman:all)")
    parser.add_argument("--child", nargs=5, metavar=("TOOL", "SUBSET", "MODELS", "IMAGES", "COMPARE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, subset_name, n_models, n_images, compare = args.child
        print(json.dumps(child(tool, subset_name, int(n_models), int(n_images), compare)))
        return

    rows = []
    m, k = args.models, args.toolbox_models
    cases = {("spearman", "all"): (m, k), ("spearman", "scene"): (m, m), ("tau-a", "scene"): (m, k), ("tau-a", "all"): (k, k)}
    chosen = [tuple(case.split(":")) for case in args.cases.split(",")]
    spearman_all = None
    for compare, subset_name in chosen:
        ours_models, their_models = cases[compare, subset_name]
        ours = run_child("neurotask", subset_name, ours_models, args.images, compare)
        theirs = run_child("rsatoolbox", subset_name, their_models, args.images, compare)
        if compare == "spearman" and subset_name == "all":
            spearman_all = ours
        if ours_models != m:  # neurotask tau-a on all images: RDMs as at m models, plus pairs (quadratic)
            pair_seconds = (ours["seconds"] - ours["spearman_seconds"]) / (ours_models * (ours_models - 1) / 2)
            above = spearman_all["peak_above_input_gb"] + ours["peak_above_input_gb"]  # an upper bound
            ours = {**ours, "seconds": spearman_all["seconds"] + pair_seconds * m * (m - 1) / 2,
                    "input_rss_gb": spearman_all["input_rss_gb"], "peak_above_input_gb": above,
                    "peak_rss_gb": spearman_all["input_rss_gb"] + above, "seconds_per_model_pair": pair_seconds}
        full = _extrapolate(theirs, m, spearman_all["input_rss_gb"] if subset_name == "all" else ours["input_rss_gb"])
        rows.append({"neurotask": ours, "rsatoolbox_measured": theirs, "rsatoolbox_at_models": full,
                     "speedup": full["seconds"] / ours["seconds"]})
        print(_line(ours, theirs, full, m), flush=True)
        OUT.mkdir(exist_ok=True)
        (OUT / "rsa.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
