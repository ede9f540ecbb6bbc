"""``neurotask demo``: the whole analysis on synthetic BOLD5000 data, end to end, in minutes.

1. synthetic stimuli under BOLD5000's real names (:func:`neurotask.datasets.write_synthetic_stimuli`);
2. features extracted with the Taskonomy encoders — published weights when they are found
   locally, otherwise seeded **random-weight encoders** (labeled so in the report);
3. a synthetic BOLD5000 subject planted on those features (:func:`write_synthetic_bold5000`);
4. the pipeline: ingest → RSA → encode → permute → partition → report.

A step whose module is not available is skipped and the report says so. The config the demo ran
is written to ``<out>/demo.toml``; ``neurotask run <out>/demo.toml`` re-runs (and resumes) it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from neurotask import stores
from neurotask._steps import find_function
from neurotask.pipeline import RunSummary, client_from_config, outputs, run

__all__ = ["DEMO_MODELS", "demo"]

#: The default demo models: one from each planted Taskonomy group (2D, 3D, geometric, semantic).
DEMO_MODELS: tuple[str, ...] = ("autoencoding", "depth_euclidean", "room_layout", "class_object")

#: Planted signal-to-noise range: higher than the generator's default, so that a demo of ~100
#: trials has the power to detect it (true R² = snr / (1 + snr): 0.5–0.8 at region centers).
DEMO_SNR = (1.0, 4.0)

_console = Console(stderr=True)


def _weights(models: Sequence[str], directory: Path, console: Console) -> tuple[Path | None, str]:
    """Published weights if every model has them locally, else seeded random checkpoints."""
    weights = find_function("neurotask.features.weights", "resolve_weights")
    if weights is not None:
        try:
            found = [weights(m, download=False) for m in models]
            if all(getattr(c, "kind", "") == "published" for c in found):
                return None, "published Taskonomy encoder weights"
        except Exception:  # no local published checkpoint: fall back to random weights
            pass
    save = find_function("neurotask.features.weights", "save_random_checkpoint")
    if save is None:
        return None, ""
    for seed, model in enumerate(models):
        save(model, directory, seed=seed)
    console.print(f"[yellow]no published weights found: using random-weight encoders ({directory})[/yellow]")
    return directory, "random-weight encoders: the features are those of untrained networks with seeded random weights"


def _synthetic_features(path: Path, models: Sequence[str], images: Sequence[str]) -> None:
    from neurotask.datasets import make_synthetic_features

    if not stores.is_complete(path):
        feats = make_synthetic_features(list(models), list(images), n_features=2048, seed=0)
        stores.write_dataset(path, feats.to_dataset(name="features"), parameters={"synthetic": True, "models": list(models)},
                             chunks={"model": 1, "image": 256, "feature": -1}, region_dim="model")


def demo(
    out: str | Path = "demo-output",
    *,
    full_models: bool = False,
    models: Sequence[str] | None = None,
    n_images: int = 111,
    subject: str = "CSI1",
    n_permutations: int = 200,
    client: Any = None,
    cluster: dict[str, Any] | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run the whole analysis on synthetic BOLD5000 data and write ``<out>/report.html``.

    Parameters
    ----------
    out : path
        Output directory (synthetic data under ``<out>/bold5000``, stores, report).
    full_models : bool
        Use all 25 Taskonomy models instead of :data:`DEMO_MODELS` (extraction then takes
        ~25× longer on a CPU: about ``n_images / 5`` seconds per model here).
    models : sequence of str, optional
        Explicit models (overrides ``full_models``).
    n_images : int
        Trials of the synthetic subject, rounded up to whole runs of 37 (at least two): its
        first trials in the real order; the stimuli are the images they show.
    subject : str
        Whose real trial order the synthetic data follows.
    n_permutations : int
        Permutations of the significance test.
    client : distributed.Client, optional
        Run on this client (default: one from ``cluster``, a LocalCluster sized to the machine).
    cluster : dict, optional
        The pipeline's ``[cluster]`` section (scheduler, cluster, workers, ...).
    console : rich.console.Console, optional
        Where progress goes.

    Returns
    -------
    RunSummary
        Step statuses and the report path.
    """
    from neurotask.datasets import (
        TRIALS_PER_RUN, bold5000_trials, write_synthetic_bold5000, write_synthetic_stimuli,
    )
    from neurotask.features.registry import TASKS

    console = console or _console
    out = Path(out)
    root = out / "bold5000"
    models = list(models or (TASKS if full_models else DEMO_MODELS))
    n_runs = max(2, -(-n_images // TRIALS_PER_RUN))  # betas come in whole runs; CV needs two
    trials = bold5000_trials(subject, n_sessions=1, n_trials=n_runs * TRIALS_PER_RUN)
    names = list(dict.fromkeys(trials["name"]))
    console.print(f"[bold]demo[/bold]: {len(models)} models, {len(names)} images, {len(trials)} trials of synthetic {subject} → {out}")
    write_synthetic_stimuli(root, names=names, subject=subject)
    labels = [f"synthetic BOLD5000 data with planted ground truth (not real fMRI), planted SNR {DEMO_SNR}"]
    config: dict[str, Any] = {
        "out": str(out),
        "title": "neurotask demo — synthetic BOLD5000",
        "subjects": [subject],
        "models": models,
        "ingest": {"root": str(root)},
        "encode": {"test_fraction": 0.2, "cv": min(5, n_runs)},
        "permute": {"n_permutations": n_permutations},
        "partition": {"pairs": [[models[0], models[1]]]},
        "cluster": dict(cluster or {}),
    }
    if find_function("neurotask.features", "extract_features") is not None:
        weights, label = _weights(models, out / "weights", console)
        config["extract"] = {"images": str(root), **({"weights": str(weights)} if weights else {})}
        labels.append(label)
    else:
        path = out / "synthetic-features.zarr"
        _synthetic_features(path, models, [str(i) for i in dict.fromkeys(trials["image"])])
        config["extract"] = {"store": str(path)}
        labels.append("feature extraction not available yet: synthetic features with planted model groups stand in")
        console.print("skipped: extract not available yet (synthetic features stand in)")
    config["labels"] = labels
    _write_toml(out / "demo.toml", config)
    owned = None
    if client is None:
        owned = client = client_from_config(config)
    try:
        run(config, client=client, steps=["extract"], console=console)
        features = outputs(out)["features"] if "images" in config["extract"] else Path(config["extract"]["store"])
        if not stores.is_complete(features):
            console.print("skipped: synthetic BOLD5000 (no features to plant responses on)")
        elif not _bold_written(root, subject, len(trials)):
            console.print(f"synthetic BOLD5000 {subject} planted on the features …")
            write_synthetic_bold5000(root, stores.open_features(features), subject, n_sessions=1, n_trials=len(trials),
                                     snr=DEMO_SNR)
        summary = run(config, client=client, console=console)
    finally:
        if owned is not None:
            owned.close()
    console.print(f"[bold green]report:[/bold green] {summary.report}")
    return summary


def _bold_written(root: Path, subject: str, n_trials: int) -> bool:
    from neurotask.datasets import groundtruth_path

    names = root / "derivatives" / "GLMsingle" / subject / f"{subject}_imgnames.txt"
    if not (groundtruth_path(root, subject).exists() and names.exists()):
        return False
    return len([line for line in names.read_text().splitlines() if line.strip()]) == n_trials


def _write_toml(path: Path, config: dict[str, Any]) -> None:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({k: v for k, v in config.items() if v not in (None, {})}))
