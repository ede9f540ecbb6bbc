"""Benchmark: the whole ``neurotask run`` on a full-size synthetic subject, from stores to report.

1. a synthetic CSI1 (``neurotask.datasets``), the flat release-2 layout: by default all 15
   sessions (5254 trials) on a volume whose brain holds ~145k voxels (``--voxels`` scales the
   CSI1 grid so that about that many voxels are in the brain; ``--sessions`` keeps the first
   sessions), its responses planted on ``--models`` synthetic models of 2048 features
   (:func:`neurotask.datasets.make_synthetic_features`) written to a features store that the
   run uses (``[extract] store = ...``); kept under ``--root`` for re-runs;
2. ``neurotask run`` on it in a child process (ingest → noise ceiling → RSA → encode → permute
   (1000 permutations) → similarity → partition (one pair) → report), the machine's default
   LocalCluster unless ``--workers`` is given;
3. meanwhile, every 0.5 s, the RSS and CPU of the child and all its descendants (psutil), and
   the step that is running (read from ``out/pipeline.json``);
4. per step: wall time (``pipeline.json``'s seconds), peak memory summed over all processes,
   mean CPU of the driver and of the workers (percent of one core; and the workers' as a fraction
   of the machine's cores), and a projection to 25 models (steps whose work grows with the models scaled
   by 25 / N, the others kept); written to ``benchmarks/out/full_subject.json`` (``--json``).

``--extract`` instead runs extract → report: synthetic stimuli under BOLD5000's names and
seeded random-weight encoders (the Taskonomy architectures, 2048 features each), extracted on
``--device`` by ``neurotask run --step extract``; the subject is then planted on the extracted
features and the whole run continues (its ``extract`` seconds are the extraction's).

``--against-kernels`` then measures, on the same quiet machine right after the run, what the
targets compare with: the float32 GEMM roofline (``bench_ridge.measure_sgemm``, best of 3), the
encode and partition steps' GFLOP/s (``ridge.ridge_flops`` of their fits) as fractions of it, and
``permutation_test`` on the run's results and responses loaded into memory, in this process
without a cluster (best of 2), against the permute step's wall time.

``--backend``/``--device`` go into the ``[encode]``/``[permute]``/``[partition]`` sections when
the pipeline's config has those keys (recorded in the JSON either way); ``--device`` is also
``[extract] device``.

Usage (full size is long: run it under the shared benchmark lock, on a quiet machine)::

    flock /tmp/neurotask-bench.lock .venv/bin/python benchmarks/bench_full_subject.py [--models 3]
        [--voxels 145684] [--sessions 15] [--workers N] [--root DIR] [--json PATH]

A small check that it works: ``--voxels 4000 --sessions 3``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: CSI1's in-brain voxels on its real 71 × 89 × 72 grid (the synthetic brain's ellipsoid).
FULL_VOXELS = 145_684
N_FEATURES = 2048
#: Steps whose work grows with the number of models (the rest: per subject or per pair).
PER_MODEL_STEPS = ("extract", "encode", "permute", "rsa", "task_similarity")


def volume_shape(n_voxels: int) -> tuple[int, int, int]:
    """The CSI1 grid scaled so that its ellipsoid brain holds about ``n_voxels`` voxels."""
    from neurotask.datasets import VOLUME_SHAPES

    scale = (n_voxels / FULL_VOXELS) ** (1 / 3)
    return tuple(max(4, round(s * scale)) for s in VOLUME_SHAPES["CSI1"])


def generate(root: Path, models: list[str], n_voxels: int, sessions: int | None) -> Path:
    """The synthetic subject and its features store under ``root`` (reused when already there)."""
    from neurotask import stores
    from neurotask.datasets import bold5000_trials, groundtruth_path, make_synthetic_features, write_synthetic_bold5000

    tag = f"{len(models)}m-{n_voxels}v-{sessions or 'all'}s"
    features_store = root / f"features-{tag}.zarr"
    data = root / f"bold5000-{tag}"
    images = bold5000_trials("CSI1", n_sessions=sessions).image.unique().tolist()
    if not stores.is_complete(features_store):
        features = make_synthetic_features(models, images, n_features=N_FEATURES)
        stores.write_dataset(features_store, features.to_dataset(name="features"),
                             parameters={"synthetic": True, "models": models, "n_features": N_FEATURES},
                             chunks={"model": 1, "image": 512, "feature": -1}, region_dim="model")
    if not groundtruth_path(data, "CSI1").exists():
        write_synthetic_bold5000(data, stores.open_features(features_store), "CSI1", n_sessions=sessions,
                                 volume_shape=volume_shape(n_voxels), progress=True)
    return features_store, data


def _run(config_path: Path, steps: list[str] = ()) -> None:
    command = [sys.executable, "-c", "from neurotask.cli import app; app()", "run", str(config_path)]
    subprocess.run([*command, *[a for s in steps for a in ("--step", s)]], cwd=HERE.parent, check=True)


def extracted(root: Path, out: Path, models: list[str], n_voxels: int, sessions: int | None,
              args: argparse.Namespace) -> tuple[dict, Path]:
    """Stimuli and random-weight encoders; ``neurotask run --step extract``; the subject planted on its features."""
    import tomli_w

    from neurotask import stores
    from neurotask.datasets import bold5000_trials, groundtruth_path, write_synthetic_bold5000, write_synthetic_stimuli
    from neurotask.features.encoders import save_random_checkpoint
    from neurotask.pipeline import outputs

    stimuli, weights = root / "stimuli", root / "weights"
    names = bold5000_trials("CSI1", n_sessions=sessions)["name"].unique().tolist()
    write_synthetic_stimuli(stimuli, names=names, subject="CSI1")
    for seed, model in enumerate(models):
        save_random_checkpoint(model, weights, seed=seed)
    extract = {"images": str(stimuli), "weights": str(weights), **({"device": args.device} if args.device else {})}
    data = out / "bold5000"
    data.mkdir(exist_ok=True)  # the config names it; the subject is written after the extraction
    cfg = config(out, models, extract, data, args)
    (out / "bench.toml").write_text(tomli_w.dumps(cfg))
    _run(out / "bench.toml", ["extract"])
    if not groundtruth_path(data, "CSI1").exists():
        write_synthetic_bold5000(data, stores.open_features(outputs(out)["features"]), "CSI1", n_sessions=sessions,
                                 volume_shape=volume_shape(n_voxels), progress=True)
    return cfg, out / "bench.toml"


def config(out: Path, models: list[str], extract: dict, data: Path, args: argparse.Namespace) -> dict:
    """The run's config; backend/device only in the sections whose config has such keys."""
    from neurotask.pipeline import config as pipeline_config

    cfg = {
        "out": str(out), "subjects": ["CSI1"], "models": models, "title": "full-subject benchmark",
        "extract": extract, "ingest": {"root": str(data)},
        "permute": {"n_permutations": args.permutations}, "partition": {"pairs": [models[:2]]},
        "cluster": {"workers": args.workers} if args.workers else {},
    }
    if args.factor_memory:  # bytes of ridge factors held at once: all models in one group reads each chunk once
        cfg["encode"] = {"factor_memory": args.factor_memory}
    sections = {"encode": pipeline_config.Encode, "permute": pipeline_config.Permute,
                "partition": pipeline_config.Partition}
    for section, cls in sections.items():
        names = {f.name for f in dataclasses.fields(cls)}
        for key in ("backend", "device"):
            if key in names and getattr(args, key):
                cfg.setdefault(section, {})[key] = getattr(args, key)
    return cfg


class Sampler(threading.Thread):
    """RSS and CPU of a process tree every ``interval`` s, attributed to the running step."""

    def __init__(self, pid: int, ledger: Path, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.ledger, self.interval = ledger, interval
        self.samples: list[dict] = []
        self.stop = threading.Event()
        self._known: dict[int, object] = {}

    def _step(self) -> str:
        try:
            records = json.loads(self.ledger.read_text())
        except (OSError, ValueError):
            return "setup"
        running = [k for k, r in records.items() if r.get("status") == "running"]
        return running[-1].split(":")[0].split("/")[0] if running else "between"

    def _processes(self) -> list:
        import psutil

        try:
            found = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for p in found:  # cpu_percent needs the same Process object between calls
            self._known.setdefault(p.pid, p)
        return [self._known[p.pid] for p in found]

    def run(self) -> None:
        import psutil

        while not self.stop.wait(self.interval):
            rss = driver_cpu = workers_cpu = 0.0
            for p in self._processes():
                try:
                    rss += p.memory_info().rss
                    cpu = p.cpu_percent()
                except psutil.Error:
                    continue
                if p.pid == self.root.pid:
                    driver_cpu = cpu
                else:
                    workers_cpu += cpu
            self.samples.append({"t": time.time(), "step": self._step(), "rss": rss, "driver_cpu": driver_cpu,
                                 "workers_cpu": workers_cpu})


def summarize(samples: list[dict], ledger: dict, n_models: int, cores: int) -> dict:
    """Per step: seconds, peak memory, CPU; totals and the projection to 25 models."""
    steps = {}
    for key, record in ledger.items():
        step = key.split(":")[0].split("/")[0]
        mine = [s for s in samples if s["step"] == step]
        row = steps.setdefault(step, {"seconds": 0.0})
        row["seconds"] += float(record.get("seconds", 0.0))
        if mine:
            row["peak_memory_gb"] = round(max(s["rss"] for s in mine) / 1e9, 2)
            row["driver_cpu_percent"] = round(sum(s["driver_cpu"] for s in mine) / len(mine), 1)
            workers = sum(s["workers_cpu"] for s in mine) / len(mine)
            row["workers_cpu_percent"] = round(workers, 1)
            row["workers_cpu_fraction_of_machine"] = round(workers / (100 * cores), 3)
    projected = {step: row["seconds"] * (25 / n_models if step in PER_MODEL_STEPS else 1.0)
                 for step, row in steps.items()}
    return {
        "steps": steps,
        "total_seconds": round(sum(r["seconds"] for r in steps.values()), 1),
        "peak_memory_gb": round(max((s["rss"] for s in samples), default=0) / 1e9, 2),
        "projected_25_models_seconds": {k: round(v, 1) for k, v in projected.items()},
        "projected_25_models_total_seconds": round(sum(projected.values()), 1),
        "projection_rule": f"steps {list(PER_MODEL_STEPS)} scaled by 25 / {n_models}; the others kept",
    }


def main(args: argparse.Namespace) -> dict:
    import tomli_w

    from neurotask.features.registry import TASKS

    models = list(TASKS[: args.models])
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"run-{'extract-' if args.extract else ''}{len(models)}m-{args.voxels}v-{args.sessions or 'all'}s"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").unlink(missing_ok=True)  # every step runs again
    start = time.perf_counter()
    if args.extract:  # the extract step runs here; the run below finds it done
        cfg, config_path = extracted(root, out, models, args.voxels, args.sessions, args)
    else:
        features_store, data = generate(root, models, args.voxels, args.sessions)
        cfg = config(out, models, {"store": str(features_store)}, data, args)
        config_path = out / "bench.toml"
        config_path.write_text(tomli_w.dumps(cfg))
    generate_seconds = time.perf_counter() - start
    command = [sys.executable, "-c", "from neurotask.cli import app; app()", "run", str(config_path)]
    child = subprocess.Popen(command, cwd=HERE.parent)
    sampler = Sampler(child.pid, out / "pipeline.json")
    sampler.start()
    code = child.wait()
    sampler.stop.set()
    sampler.join()
    if code:
        raise SystemExit(f"neurotask run failed with exit status {code}")
    ledger = json.loads((out / "pipeline.json").read_text())
    cores = os.cpu_count() or 1
    result = {
        "models": models, "n_features": N_FEATURES, "sessions": args.sessions or "all",
        "voxels_requested": args.voxels, "volume_shape": list(volume_shape(args.voxels)),
        "permutations": args.permutations, "pairs": cfg["partition"]["pairs"], "workers": args.workers or "default",
        "backend": args.backend, "device": args.device, "cpu_count": cores, "extract_from_images": args.extract,
        "backend_in_config_sections": [s for s in ("encode", "permute", "partition") if "backend" in cfg.get(s, {})],
        "generate_seconds": round(generate_seconds, 1), "ledger": ledger,
        **summarize(sampler.samples, ledger, len(models), cores),
    }
    result.update(_sizes(out))
    if args.against_kernels:
        result["against_kernels"] = against_kernels(out, result["steps"], args.permutations)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "ledger"}, indent=1))
    return result


def against_kernels(out: Path, steps: dict, permutations: int) -> dict:
    """The encode, partition and permute steps against their kernels, measured now (``--against-kernels``)."""
    from bench_ridge import measure_sgemm

    from neurotask import stores
    from neurotask.encoding.ridge import ridge_flops
    from neurotask.stats import permutation_test

    roofline = max(measure_sgemm() for _ in range(3))
    results = stores.open_results(next(out.glob("encoding-*.zarr")))
    split, alphas = json.loads(results.attrs["split"]), json.loads(results.attrs["alphas"])
    fits = {"encode": (results.sizes["model"], N_FEATURES), "partition": (1, 2 * N_FEATURES)}  # (fits, features)
    found = {"sgemm_gflops": round(roofline, 1)}
    for step, (n_fits, n_features) in fits.items():
        flops = n_fits * ridge_flops(split["n_train"], split["n_test"], n_features, results.sizes["voxel"],
                                     len(alphas), int(results.attrs["cv_folds"]))
        gflops = flops / steps[step]["seconds"] / 1e9
        found[step] = {"tflop": round(flops / 1e12, 1), "gflops": round(gflops, 1),
                       "roofline_fraction": round(gflops / roofline, 3)}
    keep = [v for v in ("is_test", "prediction", "r", "r2", "alpha") if v in results]
    in_memory = results[keep].load()
    responses = stores.open_responses(next(out.glob("responses-*.zarr"))).load()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        permutation_test(in_memory, responses, n_permutations=permutations, client=None)
        times.append(time.perf_counter() - start)
    found["permute"] = {"in_memory_one_process_seconds": round(min(times), 1),
                        "step_over_in_memory": round(steps["permute"]["seconds"] / min(times), 2)}
    return found


def _sizes(out: Path) -> dict:
    """Trials and voxels of the ingested responses."""
    from neurotask import stores

    found = sorted(out.glob("**/responses*.zarr"))
    if not found:
        return {}
    responses = stores.open_responses(found[0])
    return {"trials": int(responses.sizes["trial"]), "voxels": int(responses.sizes["voxel"])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=3, help="synthetic models (the first N Taskonomy tasks)")
    parser.add_argument("--voxels", type=int, default=FULL_VOXELS, help="about this many in-brain voxels")
    parser.add_argument("--sessions", type=int, default=None, help="first N sessions (default all 15)")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="LocalCluster workers (default: the pipeline's)")
    parser.add_argument("--backend", default="", help="ridge/permutation backend, when the config has the key")
    parser.add_argument("--device", default="", help="torch device, when the config has the key")
    parser.add_argument("--factor-memory", type=int, default=0, help="[encode] factor_memory in bytes")
    parser.add_argument("--extract", action="store_true", help="extract → report from synthetic stimuli")
    parser.add_argument("--against-kernels", action="store_true",
                        help="then the GEMM roofline and the permute kernel in memory, for the targets")
    parser.add_argument("--root", default=str(HERE / "out" / "full_subject"), help="data and run folder (kept)")
    parser.add_argument("--json", default=str(HERE / "out" / "full_subject.json"))
    main(parser.parse_args())
