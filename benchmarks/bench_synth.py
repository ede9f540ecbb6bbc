"""Time and peak memory of writing synthetic BOLD5000 data at full size.

Each case runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own:

- ``release2-full``: what ``neurotask synth --full --no-stimuli`` does — synthetic features
  (25 models × 4916 images × 256) and the full CSI1 release-2 tree (5254 trials, 15 sessions,
  71×89×72), streamed session by session.
- ``release2-full-2048``: the same tree planted from 2048-dimensional features of 5 models.
- ``stimuli-full``: all 4916 CSI1 stimulus images.

Run: ``flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_synth.py [--quick]``
(``--quick``: 2 sessions, for a smoke test). Writes to a temporary directory, removed afterwards;
results go to ``benchmarks/out/synth.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _case(name: str, root: str, quick: bool, queue: mp.Queue) -> None:
    from neurotask.datasets import (
        VOLUME_SHAPES,
        bold5000_trials,
        make_synthetic_features,
        write_synthetic_bold5000,
        write_synthetic_dataset,
        write_synthetic_stimuli,
    )

    n_sessions = 2 if quick else None
    start = time.perf_counter()
    if name == "release2-full":
        truth = write_synthetic_dataset(root, "CSI1", n_sessions=n_sessions, full=True, stimuli=False)
        detail = f"{truth.attrs['n_trials']} trials, {truth.sizes['voxel']} brain voxels"
    elif name == "release2-full-2048":
        images = bold5000_trials("CSI1", n_sessions=n_sessions).image.unique().tolist()
        models = ["autoencoding", "depth_euclidean", "normal", "class_object", "room_layout"]
        features = make_synthetic_features(models, images, n_features=2048)
        truth = write_synthetic_bold5000(root, features, "CSI1", n_sessions=n_sessions, volume_shape=VOLUME_SHAPES["CSI1"])
        detail = f"{truth.attrs['n_trials']} trials, features {dict(features.sizes)}"
    elif name == "stimuli-full":
        paths = write_synthetic_stimuli(root, n_images=200 if quick else None)
        detail = f"{len(paths)} images, {1000 * (time.perf_counter() - start) / len(paths):.1f} ms/image"
    else:
        raise ValueError(f"unknown case {name!r}")
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    queue.put({"case": name, "seconds": seconds, "peak_rss_mib": peak_mib, "disk_mib": size / 2**20, "detail": detail})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sessions / 200 images: a smoke test")
    parser.add_argument("--cases", nargs="*", default=["release2-full", "release2-full-2048", "stimuli-full"])
    args = parser.parse_args()
    context = mp.get_context("spawn")
    results = []
    for name in args.cases:
        root = tempfile.mkdtemp(prefix=f"bench-synth-{name}-")
        queue = context.Queue()
        process = context.Process(target=_case, args=(name, root, args.quick, queue))
        process.start()
        result = queue.get()
        process.join()
        shutil.rmtree(root, ignore_errors=True)
        results.append(result)
        print(json.dumps(result), flush=True)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / ("synth_quick.json" if args.quick else "synth.json")).write_text(json.dumps(results, indent=2))
    print("\n| case | time (s) | peak RSS (MiB) | written (MiB) | detail |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['disk_mib']:.0f} | {r['detail']} |")


if __name__ == "__main__":
    main()
