"""Benchmark: full-scale RSA (25 models × 4916 images × 2048 features) against rsatoolbox.

Two image sets: all 4916 BOLD5000 images (12,081,070 pairs) and its 1000 scene images
(499,500 pairs). Each measurement runs in a fresh child process that first builds the
synthetic features (``make_synthetic_features(images=4916)``, float32, 1.0 GB for 25 models),
then times the RSA while a thread samples the process RSS every 5 ms:

* neurotask: ``nt.rsa.model_similarity(features, subset, "correlation", "spearman")``, in process
  (multithreaded BLAS), all 25 models;
* rsatoolbox 0.3: ``calc_rdm(datasets, method="correlation")`` + ``compare(rdms, rdms, "spearman")``
  on the same features. On all images it would need ~10 GB on this shared 24 GB machine, so it
  runs on ``--toolbox-models`` models and its time and memory above the input are extrapolated
  *linearly* to 25 models (both its RDM and its ranking steps are per model; the only quadratic
  part, a 25×25 product over the pairs, is ignored, which favours rsatoolbox).

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


def _toolbox_similarity(features):
    import numpy as np
    import rsatoolbox

    datasets = [rsatoolbox.data.Dataset(np.asarray(features.values[m])) for m in range(features.sizes["model"])]
    rdms = rsatoolbox.rdm.calc_rdm(datasets, method="correlation")
    return rsatoolbox.rdm.compare(rdms, rdms, method="spearman")


def child(tool: str, subset_name: str, n_models: int, n_images: int) -> dict:
    """Run one measurement in this (fresh) process and return its numbers."""
    import gc

    import numpy as np
    import psutil

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
            sim = nt.rsa.model_similarity(features, rdm_method="correlation", compare="spearman", progress=False).values
        else:
            sim = _toolbox_similarity(features)
    seconds = time.perf_counter() - start
    result = {
        "tool": tool, "subset": description, "models": n_models, "images": features.sizes["image"],
        "pairs": features.sizes["image"] * (features.sizes["image"] - 1) // 2, "seconds": seconds,
        "peak_rss_gb": rss.peak / 1e9, "input_rss_gb": baseline / 1e9, "peak_above_input_gb": (rss.peak - baseline) / 1e9,
    }
    if tool == "rsatoolbox":
        ours = nt.rsa.model_similarity(features, progress=False).values
        result["max_abs_difference_to_neurotask"] = float(np.abs(ours - sim).max())
    return result


def run_child(tool: str, subset_name: str, n_models: int, n_images: int) -> dict:
    command = [sys.executable, __file__, "--child", tool, subset_name, str(n_models), str(n_images)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=25)
    parser.add_argument("--images", type=int, default=4916)
    parser.add_argument("--toolbox-models", type=int, default=4, help="rsatoolbox models on all images")
    parser.add_argument("--child", nargs=4, metavar=("TOOL", "SUBSET", "MODELS", "IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, subset_name, n_models, n_images = args.child
        print(json.dumps(child(tool, subset_name, int(n_models), int(n_images))))
        return

    rows = []
    for subset_name in SUBSETS:
        ours = run_child("neurotask", subset_name, args.models, args.images)
        k = args.toolbox_models if subset_name == "all" else args.models
        theirs = run_child("rsatoolbox", subset_name, k, args.images)
        scale = args.models / k
        theirs_full = {
            "seconds": theirs["seconds"] * scale,
            "peak_rss_gb": ours["input_rss_gb"] + theirs["peak_above_input_gb"] * scale,
            "extrapolated_from_models": k if k != args.models else None,
        }
        rows.append({"neurotask": ours, "rsatoolbox_measured": theirs, "rsatoolbox_at_models": theirs_full,
                     "speedup": theirs_full["seconds"] / ours["seconds"]})
        print(
            f"{ours['subset']:>18}: {ours['images']} images, {ours['pairs']:,} pairs, {args.models} models | "
            f"neurotask {ours['seconds']:.1f} s, peak {ours['peak_rss_gb']:.2f} GB "
            f"({ours['peak_above_input_gb']:.2f} GB above the {ours['input_rss_gb']:.2f} GB input) | "
            f"rsatoolbox {theirs_full['seconds']:.1f} s, peak {theirs_full['peak_rss_gb']:.2f} GB"
            + (f" (extrapolated from {k} models: {theirs['seconds']:.1f} s)" if k != args.models else "")
            + f" | speedup {rows[-1]['speedup']:.1f}x | max |diff| {theirs['max_abs_difference_to_neurotask']:.1e}",
            flush=True,
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "rsa.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
