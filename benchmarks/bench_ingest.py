"""Benchmark: ingest a full-size synthetic CSI1 (5254 trials, 71×89×72 voxels, 15 sessions).

Writes the synthetic release-2 tree once (flat, as downloaded; kept for re-runs), then ingests it in a fresh child process
and reports wall time per pass and that process's peak RSS (``ru_maxrss``), next to the time needed
just to decompress the same files (the floor for any NIfTI reader).

Run under the shared benchmark lock::

    flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_ingest.py [--root DIR] [--sessions N]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def generate(root: Path, sessions: int | None) -> None:
    from neurotask.datasets import VOLUME_SHAPES, bold5000_trials, make_synthetic_features, write_synthetic_bold5000

    images = bold5000_trials("CSI1", n_sessions=sessions).image.unique().tolist()
    feats = make_synthetic_features(["normal", "class_object", "depth_euclidean"], images, n_features=64)
    write_synthetic_bold5000(
        root, feats, "CSI1", n_sessions=sessions, volume_shape=VOLUME_SHAPES["CSI1"], progress=True
    )


def ingest(root: Path, store: Path) -> dict:
    import logging

    import neurotask as nt
    from neurotask.fmri import read_layout
    from neurotask.fmri.bold5000 import _stream_volumes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    layout = read_layout(root, "CSI1", 2)
    start = time.perf_counter()
    for _ in _stream_volumes(layout.sessions[0].files[0]):
        pass
    decompress_one = time.perf_counter() - start
    start = time.perf_counter()
    resp = nt.load_bold5000(root, "CSI1", store=store, progress=False)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    block = resp.isel(voxel=slice(0, 4096)).values  # what encoding reads: all trials of one voxel chunk
    read_chunk = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "max_abs_error_vs_scipy_sessions_1_and_15": check_against_scipy(resp, layout),
        "trials": resp.sizes["trial"], "voxels": resp.sizes["voxel"], "sessions": int(resp["session"].max()),
        "ingest_seconds": round(seconds, 1), "decompress_session1_seconds": round(decompress_one, 1),
        "sessions_in_tree": len(layout.sessions), "read_voxel_chunk_seconds": round(read_chunk, 3),
        "voxel_chunk_shape": list(block.shape), "dropped_voxels": json.loads(resp.attrs["dropped_voxels"]),
        "peak_rss_mb": round(peak_mb, 1),
        "store_mb": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20, 1),
        "input_mb": round(sum(f.stat().st_size for f in layout.files) / 2**20, 1),
    }


def check_against_scipy(resp, layout, n_voxels: int = 256) -> float:
    """Max |difference| between stored values and scipy's z-score of the raw betas (first and last
    session, random kept voxels), read independently with nibabel. Runs after peak RSS is taken."""
    import nibabel as nib
    import numpy as np
    import scipy.stats

    rng = np.random.default_rng(0)
    voxels = np.sort(rng.choice(resp.sizes["voxel"], n_voxels, replace=False))
    ijk = tuple(resp[c].values[voxels] for c in ("i", "j", "k"))
    error = 0.0
    for session in (layout.sessions[0], layout.sessions[-1]):
        betas = np.asarray(nib.load(session.files[0]).dataobj)[ijk].T.astype(np.float64)
        expected = scipy.stats.zscore(betas, axis=0)
        stored = resp.isel(voxel=voxels).values[resp["session"].values == session.number]
        error = max(error, float(np.abs(stored - expected).max()))
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/neurotask-bench/csi1-full"))
    parser.add_argument("--sessions", type=int, default=None, help="sessions to write (default: all 15)")
    parser.add_argument("--child", choices=["generate", "ingest"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree, store = args.root / "tree", args.root / "sub-CSI1.zarr"
    if args.child == "generate":
        generate(tree, args.sessions)
        return
    if args.child == "ingest":
        print(json.dumps(ingest(tree, store)))
        return
    from neurotask.datasets import groundtruth_path

    if not groundtruth_path(tree, "CSI1").exists():
        start = time.perf_counter()
        command = [sys.executable, __file__, "--root", str(args.root), "--child", "generate"]
        subprocess.run(command + (["--sessions", str(args.sessions)] if args.sessions else []), check=True)
        print(f"generated the synthetic tree in {time.perf_counter() - start:.0f} s")
    shutil.rmtree(store, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, __file__, "--root", str(args.root), "--child", "ingest"], check=True, capture_output=True,
        text=True,
    )
    sys.stderr.write(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
