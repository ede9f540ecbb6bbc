#!/usr/bin/env bash
# GPU check of issue 17 (a full subject on one GPU). Self-contained; run from the repository root:
#
#   bash benchmarks/gpu_full_subject_check.sh                 # on the GPU machine (device cuda)
#   bash benchmarks/gpu_full_subject_check.sh --device cpu --models 2 --voxels 1500 --sessions 2 \
#        --permutations 50 --ridge-voxels 200 --images 8       # dry run of the logic on a CPU
#
# What it does (JSON into benchmarks/results/, or $RESULTS):
#   1. checks torch and CUDA; installs missing Python packages from wheels in .whl/ (no index);
#      neurotask itself is imported from the working tree (PYTHONPATH), not installed;
#   2. ridge side by side on bench_ridge.py's problem (4000 + 1000 trials, 2048 features,
#      --ridge-voxels voxels, 10 alphas, 5 folds): neurotask's torch backend vs himalaya's
#      torch_cuda backend, same run -> gpu_ridge.json (target: himalaya / neurotask >= 2x);
#   3. extraction end to end (scan, decode, encode, write) vs each encoder alone, by
#      gpu_extract_check.sh -> gpu_full_subject_extract.json (target: end to end >= 80% of
#      encoder-alone);
#   4. the full subject, extract -> report, with --models models (default all 25), by
#      bench_full_subject.py --extract (backend auto, device --device) -> gpu_full_subject.json
#      (target: <= 10 minutes on one H200); one worker (one GPU), 48 GiB of ridge factors at
#      once, so every voxel chunk is read once for all 25 models.
# Options: --device D  --models N  --voxels N  --sessions N  --permutations N  --ridge-voxels N
#          --images N  --skip STEP (ridge, extract or subject; repeatable)
set -euo pipefail

DEVICE=cuda
MODELS=25
VOXELS=145684
SESSIONS=""
PERMUTATIONS=1000
RIDGE_VOXELS=20000
IMAGES=256
SKIP=" "
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --voxels) VOXELS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --permutations) PERMUTATIONS=$2; shift 2 ;;
    --ridge-voxels) RIDGE_VOXELS=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --skip) SKIP="$SKIP$2 "; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
RESULTS=${RESULTS:-$PWD/benchmarks/results}
WORK=${WORK:-$(mktemp -d -t nt_gpu_subject_XXXX)}
mkdir -p "$RESULTS" "$WORK"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)
TAG=$([[ "$DEVICE" == cuda* ]] && echo "" || echo "_dryrun_$DEVICE")

# 1. environment
if ! $PY -c "import torch" 2>/dev/null; then
  echo "torch missing: installing from .whl/"
  $PY -m pip install --quiet --no-index --find-links .whl torch
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"
NEEDED="numpy scipy scikit-learn dask distributed xarray zarr nibabel h5py nilearn visualpriors pillow matplotlib
typer rich pooch requests psutil threadpoolctl tomli-w lazy-loader himalaya"
if ! $PY -c "import neurotask.pipeline, neurotask.cli, himalaya, tomli_w, psutil" 2>/dev/null; then
  echo "installing from .whl/: $NEEDED"
  $PY -m pip install --quiet --no-index --find-links .whl $NEEDED
fi
if [[ "$DEVICE" == cuda* ]] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "{\"error\": \"torch sees no CUDA device\"}" > "$RESULTS/gpu_full_subject.json"
  echo "torch sees no CUDA device" >&2
  exit 1
fi
$PY -c "import torch, json; print(json.dumps({'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))" \
  > "$WORK/device.json"
echo "setup: $(( $(date +%s) - START )) s"

# 2. ridge: neurotask torch vs himalaya torch_cuda (torch on a CPU dry run), one process each
if [[ "$SKIP" != *" ridge "* ]]; then
  $PY benchmarks/bench_ridge.py --voxels "$RIDGE_VOXELS" --repeats 2 --device "$DEVICE" \
    --methods neurotask-torch,himalaya-torch_cuda --json "$RESULTS/gpu_ridge$TAG.json"
  echo "ridge: $(( $(date +%s) - START )) s"
fi

# 3. extraction end to end vs encoder alone (the extraction check, its JSON copied here)
if [[ "$SKIP" != *" extract "* ]]; then
  OUT="$WORK/extract" bash benchmarks/gpu_extract_check.sh --device "$DEVICE" --images "$IMAGES" \
    --cpu-subset 2 --tasks normal,depth_euclidean,class_object,segment_semantic,colorization
  cp "$WORK/extract/gpu_extract.json" "$RESULTS/gpu_full_subject_extract$TAG.json"
  echo "extract: $(( $(date +%s) - START )) s"
fi

# 4. the full subject, extract -> report
if [[ "$SKIP" != *" subject "* ]]; then
  $PY benchmarks/bench_full_subject.py --extract --models "$MODELS" --voxels "$VOXELS" \
    ${SESSIONS:+--sessions "$SESSIONS"} --permutations "$PERMUTATIONS" --backend auto --device "$DEVICE" \
    --workers 1 --factor-memory $((48 << 30)) --root "$WORK/subject" --json "$WORK/subject.json"
  $PY - "$WORK/subject.json" "$WORK/device.json" "$RESULTS/gpu_full_subject$TAG.json" <<'PYTHON'
import json
import sys

subject, device = (json.load(open(p)) for p in sys.argv[1:3])
out = sys.argv[3]
# total_seconds sums every step of pipeline.json, the extract step included
subject.update(device, target_seconds=600, within_target=bool(subject["total_seconds"] <= 600))
json.dump(subject, open(out, "w"), indent=1)
print(f"full subject: {subject['total_seconds']:.0f} s (target 600 s) -> {out}")
PYTHON
fi
echo "total: $(( $(date +%s) - START )) s"
