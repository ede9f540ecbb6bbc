"""Feature extraction throughput: the per-image visualpriors loop users write today vs neurotask.

Each variant runs in its own subprocess (clean peak-memory figure), one after the other in the
same run, on the same synthetic 375x375 JPEG stimuli and the same seeded random-weight
checkpoints:

* ``naive``  — for each task, for each image: PIL decode, resize, ``to_tensor * 2 - 1`` (a
  contiguous CHW tensor, as torchvision's ``to_tensor`` in visualpriors' README example),
  ``visualpriors.representation_transform(x, task, device="cpu")`` (its loader pointed at the
  local checkpoint; model loading not timed);
* ``naive_nhwc`` — the same loop with the HWC array only permuted (no ``.contiguous()``): the
  tensor is then channels-last in memory and torch picks its fast channels-last kernels;
* ``neurotask`` — ``extract_features(paths, tasks, store=None)`` with every default (batch size 2 on
  CPU; exact mode: visualpriors' modules and NCHW layout, its numbers), whole call timed (scan,
  weights, loading, decode, encode);
* ``fast`` — the same with ``fast=True`` (batch norms folded, channels-last convolutions: float32
  rounding differences up to ~3e-4);
* ``store`` — the default, writing a zarr store.

Run: ``flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_extract.py [--images 16] [--repeats 2]
[--variants naive,neurotask]``. Prints a table and writes ``benchmarks/out/bench_extract.json``; each
variant's row carries the 1-minute load average before and after its kept round (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_BOLD5000_IMAGES = 4916
N_TASKS = 25
VARIANTS = ("naive", "naive_nhwc", "neurotask", "fast", "store")


def _stimuli(directory: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        path = directory / f"image{i:04d}.jpg"
        Image.fromarray(small).resize((375, 375), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def _naive(paths: list[str], tasks: list[str], weights: str, contiguous: bool) -> dict[str, float]:
    import numpy as np
    import torch
    from PIL import Image

    import torch.utils.model_zoo  # noqa: F401  (visualpriors uses it without importing it)
    from visualpriors import representation_transform
    from visualpriors.transforms import VisualPriorRepresentation

    for task in tasks:
        (checkpoint,) = Path(weights).glob(f"{task}_encoder-*.pth")
        VisualPriorRepresentation.feature_task_to_net[task] = VisualPriorRepresentation._load_encoder(
            f"http://127.0.0.1:9/{checkpoint.name}", model_dir=weights, progress=False
        )
    start = time.perf_counter()
    for task in tasks:
        for path in paths:
            image = Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255 * 2 - 1).permute(2, 0, 1)[None]
            if contiguous:
                x = x.contiguous()
            representation_transform(x, task, device="cpu")
    return {"seconds": time.perf_counter() - start}


def _neurotask(paths: list[str], tasks: list[str], weights: str, fast: bool, store: str | None) -> dict[str, float]:
    from neurotask.features import extract_features

    start = time.perf_counter()
    extract_features(paths, tasks, store, weights=weights, device="cpu", fast=fast)
    return {"seconds": time.perf_counter() - start}


def _child(args: argparse.Namespace) -> None:
    import resource

    import torch

    paths = json.loads(args.paths)
    tasks = args.tasks.split(",")
    if args.variant in ("naive", "naive_nhwc"):
        result = _naive(paths, tasks, args.weights, contiguous=args.variant == "naive")
    else:
        store = str(Path(args.weights).parent / "bench.zarr") if args.variant == "store" else None
        result = _neurotask(paths, tasks, args.weights, fast=args.variant == "fast", store=store)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result))


def _encoder_gflops() -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from visualpriors.taskonomy_network import TaskonomyEncoder

    with torch.device("meta"):
        net = TaskonomyEncoder().eval()
        with FlopCounterMode(display=False) as counter:
            net(torch.empty(1, 3, 256, 256))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all variants; the fastest of each is kept")
    parser.add_argument("--tasks", default="normal,depth_euclidean")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"a subset of {','.join(VARIANTS)} (naive first)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        _child(args)
        return

    from neurotask.features.encoders import save_random_checkpoint

    tasks = args.tasks.split(",")
    variants = args.variants.split(",")
    if variants[0] != "naive" or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: a subset of {','.join(VARIANTS)} starting with naive; got {args.variants!r}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "images").mkdir()
        paths = [str(p) for p in _stimuli(tmp_path / "images", args.images)]
        weights = tmp_path / "weights"
        for i, task in enumerate(tasks):
            save_random_checkpoint(task, weights, seed=i)
        results: dict[str, dict] = {}
        # rounds of every variant in turn; each variant's fastest round is kept (the machine's
        # speed drifts by ~10% between quiet runs, alike for all variants within a round)
        for _ in range(args.repeats):
            for variant in variants:
                shutil.rmtree(tmp_path / "bench.zarr", ignore_errors=True)  # "store" writes it anew each round
                load_before = os.getloadavg()[0]
                out = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--paths", json.dumps(paths), "--tasks",
                     args.tasks, "--weights", str(weights)],
                    check=True, capture_output=True, text=True,
                )
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run["images_per_s_per_encoder"] = args.images * len(tasks) / run["seconds"]
                run["load_average"] = [load_before, os.getloadavg()[0]]
                if variant not in results or run["seconds"] < results[variant]["seconds"]:
                    results[variant] = run

    gflops = _encoder_gflops()
    naive_rate = results["naive"]["images_per_s_per_encoder"]
    lines = [
        f"{args.images} images x {len(tasks)} encoders ({args.tasks}), CPU: {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; encoder: {gflops:.1f} GFLOP per image",
        f"{'variant':<12} {'s':>8} {'img/s/enc':>10} {'x naive':>8} {'peak RSS MB':>12} {'25x4916 (h)':>12} {'load':>10}",
    ]
    for variant, r in results.items():
        rate = r["images_per_s_per_encoder"]
        hours = N_TASKS * N_BOLD5000_IMAGES / rate / 3600
        lines.append(
            f"{variant:<12} {r['seconds']:>8.1f} {rate:>10.2f} {rate / naive_rate:>8.2f} {r['peak_rss_mb']:>12.0f} {hours:>12.1f}"
            f" {r['load_average'][0]:>4.1f}-{r['load_average'][1]:<4.1f}"
        )
    print("\n".join(lines))
    target = Path(__file__).parent / "out" / "bench_extract.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps({"images": args.images, "tasks": tasks, "gflop_per_image": gflops,
                                  "load_average": os.getloadavg()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
