#!/usr/bin/env bash
# GPU check of neurotask feature extraction (issue 3). Self-contained; run from the repository root:
#
#   bash benchmarks/gpu_extract_check.sh                      # on the GPU machine (device cuda)
#   bash benchmarks/gpu_extract_check.sh --device cpu --images 8 --cpu-subset 2 --tasks normal,colorization
#                                                             # dry run of the logic on a CPU
#
# What it does, in < 4 minutes on one GPU:
#   1. checks torch and CUDA; installs missing Python packages from wheels in .whl/ (no index);
#      neurotask itself is imported from the working tree (PYTHONPATH), not installed;
#   2. writes seeded random-weight checkpoints for 5 tasks (incl. colorization, 1 input channel)
#      and 256 synthetic 375x375 JPEG stimuli;
#   3. extracts them on the device into a zarr store with extract_features (end to end: scan,
#      decode, load, encode, write; the pixels go to the device once per image chunk and the
#      inputs, colorization's Lab conversion included, are made there), then times each encoder
#      alone on inputs already on the device (images/s per model, channels-last and NCHW);
#   4. extracts a subset on the CPU and reports the max abs difference to the device features;
#   5. writes $OUT/gpu_extract.json (OUT defaults to ./gpu_extract_out).
# Options: --device D  --images N  --cpu-subset N  --tasks a,b,c  --batch-size N
set -euo pipefail

DEVICE=cuda
IMAGES=256
CPU_SUBSET=16
TASKS=normal,depth_euclidean,class_object,segment_semantic,colorization
BATCH=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --cpu-subset) CPU_SUBSET=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$PWD/gpu_extract_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)

# 1. environment
if ! $PY -c "import torch" 2>/dev/null; then
  echo "torch missing: installing from .whl/"
  $PY -m pip install --quiet --no-index --find-links .whl torch
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"
# the project's dependencies (pyproject.toml) except torch; the pipeline and the CLI import all of them
NEEDED="numpy scipy scikit-learn dask distributed xarray zarr nibabel h5py nilearn visualpriors pillow matplotlib
typer rich pooch requests psutil threadpoolctl tomli-w lazy-loader"
if ! $PY -c "import neurotask.pipeline, neurotask.cli" 2>/dev/null; then
  echo "installing from .whl/: $NEEDED"
  $PY -m pip install --quiet --no-index --find-links .whl $NEEDED
fi
if [[ "$DEVICE" == cuda* ]] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "{\"error\": \"torch sees no CUDA device\"}" > "$OUT/gpu_extract.json"
  echo "torch sees no CUDA device" >&2
  exit 1
fi
echo "setup: $(( $(date +%s) - START )) s"

# 2-5. the check
$PY - "$DEVICE" "$IMAGES" "$CPU_SUBSET" "$TASKS" "$BATCH" "$OUT" <<'PYTHON'
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neurotask.features import encoders
from neurotask.features.encoders import save_random_checkpoint
from neurotask.features.extract import extract_features
from neurotask.features.registry import INPUTS
from neurotask.features.weights import resolve_weights
from neurotask.features.inputs import ChunkPixels
from neurotask.stimuli import load_image

device, n_images, n_cpu, tasks, batch, out = sys.argv[1:]
n_images, n_cpu, batch, tasks = int(n_images), int(n_cpu), int(batch), tasks.split(",")
report = {"device": device, "torch": torch.__version__, "n_images": n_images, "tasks": tasks, "batch_size": batch,
          "cpu_count": os.cpu_count()}
if device.startswith("cuda"):
    report["gpu"] = torch.cuda.get_device_name(0)

def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()

work = Path(tempfile.mkdtemp(prefix="nt_gpu_check_"))
t0 = time.perf_counter()
for i, task in enumerate(tasks):
    save_random_checkpoint(task, work / "weights", seed=i)
rng = np.random.default_rng(0)
(work / "images").mkdir()
paths = []
for i in range(n_images):
    small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    path = work / "images" / f"image{i:04d}.jpg"
    Image.fromarray(small).resize((375, 375), Image.Resampling.BICUBIC).save(path, quality=90)
    paths.append(path)
report["prepare_s"] = time.perf_counter() - t0
print(f"checkpoints and {n_images} stimuli: {report['prepare_s']:.1f} s", flush=True)

# 3a. end to end, into a store
t0 = time.perf_counter()
feats = extract_features(paths, tasks, work / "features.zarr", weights=work / "weights", batch_size=batch,
                         device=device)
values = feats.values
sync()
report["end_to_end_s"] = time.perf_counter() - t0
report["end_to_end_images_per_s_per_model"] = n_images * len(tasks) / report["end_to_end_s"]
report["store_shape"] = list(feats.shape)
report["finite"] = bool(np.isfinite(values).all())
print(f"extract_features on {device}: {report['end_to_end_s']:.1f} s for {n_images} images x {len(tasks)} models", flush=True)

# 3b. each encoder alone on its inputs, prepared beforehand on the device (no decode, no load, no
#     preprocessing, no write): the rate end to end is held against
pixels = ChunkPixels(np.stack([load_image(p)[0] for p in paths]), encoders.resolve_device(device))
rates = {}
for layout, fast in (("channels_last", True), ("nchw", False)):
    for task in tasks:
        encoder = encoders.load_encoder(task, resolve_weights(task, work / "weights"), device=device,
                                        fast=fast)
        batches = [pixels.batch(INPUTS[task], start, start + batch) for start in range(0, n_images, batch)]
        encoders.encode(encoder, batches[0])  # warm-up (cuDNN plans)
        sync()
        t0 = time.perf_counter()
        for inputs in batches:
            encoders.encode(encoder, inputs)
        sync()
        rates.setdefault(layout, {})[task] = n_images / (time.perf_counter() - t0)
        del encoder, batches
report["images_per_s_per_model"] = rates
if device.startswith("cuda"):
    report["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
best = max(np.mean(list(r.values())) for r in rates.values())
report["projected_25_models_x_4916_images_min"] = {
    "encode_only": 25 * 4916 / best / 60,
    "end_to_end": 25 * 4916 / report["end_to_end_images_per_s_per_model"] / 60,
}
print(json.dumps(rates, indent=1), flush=True)

# 4. CPU on a subset, same default settings
t0 = time.perf_counter()
cpu = extract_features(paths[:n_cpu], tasks, weights=work / "weights", batch_size=min(batch, 16), device="cpu")
report["cpu_subset_s"] = time.perf_counter() - t0
report["cpu_subset_images_per_s_per_model"] = n_cpu * len(tasks) / report["cpu_subset_s"]
diff = np.abs(cpu.values - values[:, :n_cpu])
report["max_abs_diff_vs_cpu"] = {t: float(d.max()) for t, d in zip(tasks, diff)}
report["mean_abs_diff_vs_cpu"] = {t: float(d.mean()) for t, d in zip(tasks, diff)}
print("max abs diff device vs cpu:", report["max_abs_diff_vs_cpu"], flush=True)

Path(out, "gpu_extract.json").write_text(json.dumps(report, indent=2))
print(f"wrote {Path(out, 'gpu_extract.json')}")
PYTHON
echo "total: $(( $(date +%s) - START )) s"
