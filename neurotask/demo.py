"""``neurotask demo``: the whole analysis on synthetic BOLD5000 data, end to end, in minutes.

1. features: by default **synthetic features with planted structure**
   (:func:`neurotask.datasets.make_synthetic_features`), so that the run shows the methods
   recovering a known truth; with ``encoders=True`` the Taskonomy encoders are run on synthetic
   stimuli under BOLD5000's real names (published weights when found locally, else seeded
   random-weight encoders, labeled so in the report);
2. a synthetic BOLD5000 subject planted on those features (:func:`write_synthetic_bold5000`),
   whole sessions of the subject's real trial order, so that repeated images exist and the
   noise ceiling is computed;
3. the pipeline: ingest → noise ceiling → RSA → encode → permute → task similarity → partition →
   report, whose planted-truth section compares every estimate with the truth.

Why synthetic features by default: random-weight encoders have no task structure (their
representations are alike whatever the task), and extracting the ~1,100 images of three
sessions takes ~15 minutes per 4 models on a 2-core CPU. The planted features give each model its
own latent factors and let the demo's *shared* pair share half of them: that pair has planted
shared variance, the other pair none, and every driver stays identifiable.

The config the demo ran is written to ``<out>/demo.toml``; ``neurotask run <out>/demo.toml``
re-runs (and resumes) it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr
from rich.console import Console

from neurotask import stores
from neurotask.datasets import (
    TASKONOMY_GROUPS,
    bold5000_trials,
    groundtruth_path,
    make_synthetic_features,
    open_groundtruth,
    write_synthetic_bold5000,
    write_synthetic_stimuli,
)
from neurotask.features.registry import TASKS
from neurotask.features.encoders import save_random_checkpoint
from neurotask.features.weights import WeightsError, resolve_weights
from neurotask.ids import image_id
from neurotask.pipeline import RunSummary, client_from_config, outputs, run

__all__ = ["DEMO_MODELS", "DEMO_PAIRS", "DEMO_SNR", "demo", "planted_features"]

#: The default demo models: two of the 3D group (their features share latent factors) and one
#: each from the 2D and semantic groups.
DEMO_MODELS: tuple[str, ...] = ("autoencoding", "depth_euclidean", "normal", "class_object")
#: The default partition pairs: planted shared signal (same group), and independent (different groups).
DEMO_PAIRS: tuple[tuple[str, str], ...] = (("depth_euclidean", "normal"), ("autoencoding", "class_object"))
#: Planted signal-to-noise range: true R² = snr / (1 + snr), 0.5–0.8 at region centers, so that
#: two training sessions have the power to detect it.
DEMO_SNR = (1.0, 4.0)
#: Sessions written: the first three of the real order (CSI1: 1,110 trials, 23 repeated images).
DEMO_SESSIONS = 3
#: Features per synthetic model: half with the model's own latent factors, half with its group's.
DEMO_FEATURES = 512

_console = Console(stderr=True)


def planted_features(models: Sequence[str], images: Sequence[str], *, n_features: int = DEMO_FEATURES,
                     seed: int = 0) -> xr.DataArray:
    """Synthetic features in which models of one Taskonomy group share half of their latent factors.

    The concatenation (along ``feature``) of two :func:`make_synthetic_features` draws: one where
    every model is its own group (private factors), one with :data:`TASKONOMY_GROUPS` (factors
    shared within a group). A voxel driven by one model of a group is therefore partly predicted
    by the others (planted shared variance) but best by its driver (identifiable).

    Parameters
    ----------
    models : sequence of str
        Taskonomy task names.
    images : sequence of str
        Image ids.
    n_features : int
        Features per model (even).
    seed : int
        Seed of the two draws (``seed`` and ``seed + 1``).

    Returns
    -------
    xarray.DataArray, dims (model, image, feature), float32
        With ``group`` on model and the planted design in attrs (``shared_latent_groups``).

    Examples
    --------
    >>> feats = planted_features(["depth_euclidean", "normal"], ["n01440764_10110", "airplanecabin1"], n_features=8)
    >>> feats.sizes["feature"], str(feats.group.values[0])
    (8, '3d')
    """
    half = n_features // 2
    private = make_synthetic_features(models, images, n_features=half, groups={m: [m] for m in models}, n_latent=8, seed=seed)
    shared = make_synthetic_features(models, images, n_features=n_features - half, n_latent=8, seed=seed + 1)
    features = xr.concat([private.drop_vars("group"), shared], "feature", coords="minimal").transpose("model", "image", "feature")
    membership = {m: g for g, members in TASKONOMY_GROUPS.items() for m in members}
    groups = {g: [m for m in models if membership[m] == g] for g in dict.fromkeys(membership[m] for m in models)}
    features.attrs = {"long_name": "synthetic features with planted shared latent factors", "seed": seed,
                      "shared_latent_groups": {g: ms for g, ms in groups.items() if len(ms) > 1}}
    return features.assign_coords(feature=range(features.sizes["feature"]))


def _weights(models: Sequence[str], directory: Path, console: Console) -> tuple[Path | None, str]:
    """Published weights if every model has them locally, else seeded random checkpoints."""
    try:
        if all(resolve_weights(m, download=False).kind == "published" for m in models):
            return None, "published Taskonomy encoder weights"
    except WeightsError:  # no local published checkpoint: random weights
        pass
    for seed, model in enumerate(models):
        save_random_checkpoint(model, directory, seed=seed)
    console.print(f"[yellow]no published weights found: using random-weight encoders ({directory})[/yellow]")
    return directory, "random-weight encoders: the features are those of untrained networks with seeded random weights"


def _features(out: Path, root: Path, models: list[str], names: list[str], encoders: bool, config: dict[str, Any],
              console: Console) -> tuple[Path, str]:
    """Configure the features: extracted from the stimuli ``names`` (``encoders``) or planted synthetic ones."""
    if encoders:
        write_synthetic_stimuli(root, names=names, subject=config["subjects"][0])
        weights, label = _weights(models, out / "weights", console)
        config["extract"] = {"images": str(root), **({"weights": str(weights)} if weights else {})}
        return outputs(out)["features"], label
    path = out / "synthetic-features.zarr"
    if not stores.is_complete(path):
        feats = planted_features(models, [image_id(n) for n in names])
        groups = feats.attrs.pop("shared_latent_groups")
        stores.write_dataset(path, feats.to_dataset(name="features"),
                             parameters={"synthetic": True, "models": models, "n_features": feats.sizes["feature"],
                                         "shared_latent_groups": groups},
                             chunks={"model": 1, "image": 512, "feature": -1}, region_dim="model")
    config["extract"] = {"store": str(path)}
    return path, ("synthetic features with planted latent factors (not Taskonomy encoders): models of one "
                  "Taskonomy group share half of them")


def demo(
    out: str | Path = "demo-output",
    *,
    full_models: bool = False,
    models: Sequence[str] | None = None,
    subjects: Sequence[str] = ("CSI1",),
    n_sessions: int = DEMO_SESSIONS,
    n_permutations: int = 1000,
    encoders: bool = False,
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
        Use all 25 Taskonomy models instead of :data:`DEMO_MODELS`.
    models : sequence of str, optional
        Explicit models (overrides ``full_models``; partition pairs: :data:`DEMO_PAIRS` when
        both models are present, else the first two models).
    subjects : sequence of str
        Synthetic subjects (each follows its real trial order); several give the report's
        across-subject consistency.
    n_sessions : int
        Whole sessions per subject; the last one is the test set. Three hold 23 repeated images
        for CSI1 (the noise ceiling needs at least 3).
    n_permutations : int
        Permutations of the significance test.
    encoders : bool
        Extract features with the Taskonomy encoders from synthetic stimuli instead of using
        planted synthetic features (≈ 5 images per second per model on a 2-core CPU).
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
    console = console or _console
    out, subjects = Path(out), list(subjects)
    root = out / "bold5000"
    models = list(models or (TASKS if full_models else DEMO_MODELS))
    trials = {s: bold5000_trials(s, n_sessions=n_sessions) for s in subjects}
    names = list(dict.fromkeys(name for t in trials.values() for name in t["name"]))
    console.print(f"[bold]demo[/bold]: {len(models)} models, {len(names)} images, {n_sessions} sessions of synthetic "
                  f"{', '.join(subjects)} → {out}")
    config: dict[str, Any] = {
        "out": str(out), "title": "neurotask demo — synthetic BOLD5000", "subjects": subjects, "models": models,
        "ingest": {"root": str(root)}, "permute": {"n_permutations": n_permutations},
        "partition": {"pairs": _pairs(models)}, "cluster": dict(cluster or {}),
    }
    features, label = _features(out, root, models, names, encoders, config, console)
    config["labels"] = [f"synthetic BOLD5000 data with planted ground truth (not real fMRI), planted SNR {DEMO_SNR}", label]
    _write_toml(out / "demo.toml", config)
    owned = None
    if client is None:
        owned = client = client_from_config(config)
    try:
        if encoders:  # the responses are planted on the extracted features
            run(config, client=client, steps=["extract"], console=console)
        for subject in subjects:
            if not _bold_written(root, subject, len(trials[subject])):
                console.print(f"synthetic BOLD5000 {subject} planted on the features …")
                write_synthetic_bold5000(root, stores.open_features(features), subject, n_sessions=n_sessions,
                                         snr=DEMO_SNR, seed=subjects.index(subject))
        summary = run(config, client=client, console=console)
    finally:
        if owned is not None:
            owned.close()
    return summary


def _pairs(models: Sequence[str]) -> list[list[str]]:
    pairs = [list(p) for p in DEMO_PAIRS if set(p) <= set(models)]
    return pairs or [list(models[:2])]


def _bold_written(root: Path, subject: str, n_trials: int) -> bool:
    """Whether the synthetic subject is on disk with ``n_trials`` trials (read from its ground truth)."""
    if not groundtruth_path(root, subject).exists():
        return False
    return int(open_groundtruth(root, subject).attrs.get("n_trials", -1)) == n_trials


def _write_toml(path: Path, config: dict[str, Any]) -> None:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({k: v for k, v in config.items() if v not in (None, {})}))
