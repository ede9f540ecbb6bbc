"""Where a pipeline run puts its stores under its output folder, and opening what it left there.

Low in the layers so that the report can read a run's outputs without importing the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neurotask.stores.open import is_complete, open_features, open_responses, open_results

__all__ = ["PER_SUBJECT", "open_outputs", "outputs"]

#: The stores a run writes once per subject, as ``<name>-<subject>.zarr``.
PER_SUBJECT = ("responses", "noise_ceiling", "encoding", "permutation", "partition")


def outputs(out: str | Path, subject: str | None = None) -> dict[str, Path]:
    """Where each step writes under ``out`` (per subject where the step is per subject)."""
    out = Path(out)
    paths = {
        "features": out / "features.zarr",
        "rsa": out / "rsa.zarr",
        "task_similarity": out / "task_similarity.zarr",
        "report": out / "report.html",
        "ledger": out / "pipeline.json",
        "config": out / "config.json",
        "lock": out / ".neurotask.lock",
    }
    if subject is not None:
        for name in PER_SUBJECT:
            paths[name] = out / f"{name}-{subject}.zarr"
    return paths


def open_outputs(out: str | Path) -> dict[str, Any]:
    """Open whatever a pipeline run left under ``out`` (lazy stores, config, ledger).

    Parameters
    ----------
    out : path-like
        A pipeline output folder.

    Returns
    -------
    dict
        ``features``, ``rsa``, ``task_similarity`` (when present), ``subjects`` mapping each
        subject to its ``responses``, ``noise_ceiling``, ``encoding``, ``permutation``,
        ``partition`` stores (those present), ``config`` and ``ledger``.
    """
    out = Path(out)
    paths = outputs(out)
    found: dict[str, Any] = {"subjects": {}}
    for name in ("config", "ledger"):
        if paths[name].exists():
            found[name] = json.loads(paths[name].read_text())
    extract = found.get("config", {}).get("extract", {})
    features = Path(extract["store"]) if "store" in extract and "images" not in extract else paths["features"]
    if is_complete(features):
        found["features"] = open_features(features)
    for name in ("rsa", "task_similarity"):
        if is_complete(paths[name]):
            found[name] = open_results(paths[name])
    subjects = sorted({p.name.split("-", 1)[1][: -len(".zarr")] for p in out.glob("*-*.zarr")
                       if p.name.split("-", 1)[0] in PER_SUBJECT})
    for subject in subjects:
        entry: dict[str, Any] = {}
        for name, path in outputs(out, subject).items():
            if name in PER_SUBJECT and is_complete(path):
                entry[name] = open_responses(path) if name == "responses" else open_results(path)
        found["subjects"][subject] = entry
    return found
