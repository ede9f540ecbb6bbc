"""Checking a whole config before any compute: types, then values that need the inputs at hand."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from neurotask import stores
from neurotask.fmri import available_sessions
from neurotask.pipeline.config import (
    STEPS,
    SUBJECTS,
    ConfigError,
    check_types,
    load_config,
    resolve_models,
)
from neurotask.rsa import select_images

__all__ = ["validate"]

_SUBSET_COORDS = ("source", "image")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def validate(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Check a config before any compute and fill its defaults.

    Parameters
    ----------
    config : path or mapping
        A TOML file or a dict of the same shape (see :mod:`neurotask.pipeline`).

    Returns
    -------
    dict
        The config with defaults filled in (``models`` resolved to names, ``subjects`` a list,
        every section present).

    Raises
    ------
    ConfigError
        Listing every problem, each naming its key (``encode.test_sessions``, ``models``, …):
        unknown keys, keys the pipeline sets itself, values of the wrong type or outside their
        choices, unknown or repeated models, missing paths, test sessions out of range.
    """
    cfg = load_config(config)
    errors: list[str] = []
    check_types(cfg, errors)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    for section in ("cluster", "extract", "ingest", "rsa", "encode", "permute", "partition", "report"):
        cfg.setdefault(section, {})
    _check_values(cfg, errors)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return cfg


def _check_values(cfg: dict[str, Any], errors: list[str]) -> None:
    if not cfg.get("out"):
        errors.append("out: the output directory is required, e.g. out = 'results'")
    steps = cfg.setdefault("steps", list(STEPS))
    if any(s not in STEPS for s in steps):
        errors.append(f"steps: expected a list of {list(STEPS)}; got {steps!r}")
    _check_subjects(cfg, errors)
    features = _given_features(cfg["extract"], errors)
    known = [str(m) for m in features["model"].values] if features is not None else []
    cfg["models"] = resolve_models(cfg.get("models", "all"), "models", errors, known)
    extract, ingest, encode = cfg["extract"], cfg["ingest"], cfg["encode"]
    if "models" in encode:
        encode["models"] = resolve_models(encode["models"], "encode.models", errors, known)
    _check_inputs(cfg, steps, errors)
    _check_sessions(cfg, errors)
    cv = encode.get("cv")
    if isinstance(cv, int) and cv < 2:
        errors.append(f"encode.cv: expected an int >= 2 or 'gcv'; got {cv!r}")
    _positive(encode, "encode", ("alphas",), errors, each=True)
    _positive(cfg["permute"], "permute", ("n_permutations", "voxel_chunk", "permutation_block"), errors)
    _positive(encode, "encode", ("voxel_chunk", "factor_memory", "device_batch"), errors)
    _positive(cfg["rsa"], "rsa", ("device_batch",), errors)
    _positive(extract, "extract", ("batch_size", "image_chunk"), errors)
    _positive(ingest, "ingest", ("trials_per_run", "voxel_chunk"), errors)
    _positive(cfg["cluster"], "cluster", ("workers", "threads_per_worker"), errors)
    for section, key in (("permute", "q"), ("encode", "test_fraction")):
        value = cfg[section].get(key)
        if value is not None and not 0 < value < 1:
            errors.append(f"{section}.{key}: expected a number in (0, 1); got {value!r}")
    _check_pairs(cfg, known, errors)
    _check_subsets(cfg["rsa"], features, errors)
    _check_cluster(cfg["cluster"], errors)
    if "extract" in steps and features is not None:
        _check_store_models(extract["store"], known, cfg["models"], errors)


def _check_subjects(cfg: dict[str, Any], errors: list[str]) -> None:
    """BOLD5000's subjects when the ingest step reads BOLD5000; with one's own responses stores
    (``ingest.store`` without ``root``) any distinct labels that can name output stores."""
    subjects = cfg.setdefault("subjects", ["CSI1"])
    if isinstance(subjects, str):
        subjects = cfg["subjects"] = [subjects]
    if not subjects or len(set(map(str, subjects))) < len(subjects):
        errors.append(f"subjects: expected a list of distinct subjects; got {subjects!r}")
        return
    ingest = cfg["ingest"]
    if "store" in ingest and "root" not in ingest:
        bad = [s for s in subjects if not isinstance(s, str) or not _LABEL.fullmatch(s)]
        if bad:
            errors.append(f"subjects: {bad} cannot name the output stores; use letters, digits, '_', '-' or '.'")
        elif len(subjects) > 1 and "{subject}" not in str(ingest["store"]):
            errors.append(f"ingest.store: {len(subjects)} subjects would all read {str(ingest['store'])!r}; "
                          "put {subject} in the path, e.g. 'responses-{subject}.zarr'")
        return
    bad = [s for s in subjects if s not in SUBJECTS]
    if bad:
        errors.append(f"subjects: unknown subjects {bad}; BOLD5000 has {list(SUBJECTS)} (other labels need "
                      "ingest.store, your own responses stores, e.g. 'responses-{subject}.zarr')")


def _given_features(extract: Mapping[str, Any], errors: list[str]) -> xr.DataArray | None:
    """The features store the config brings (``extract.store`` without ``images``), opened lazily when complete."""
    if "store" not in extract or "images" in extract or not stores.is_complete(extract["store"]):
        return None
    try:
        return stores.open_features(extract["store"])
    except (stores.StoreError, TypeError) as error:
        errors.append(f"extract.store: {error}")
        return None


def _positive(table: Mapping[str, Any], section: str, keys: Sequence[str], errors: list[str], each: bool = False) -> None:
    for key in keys:
        value = table.get(key)
        values = value if each and isinstance(value, list) else [value]
        if value is not None and any(v <= 0 for v in values):
            kind = "a list of positive numbers" if each else "a positive int"
            errors.append(f"{section}.{key}: expected {kind}; got {value!r}")


def _check_inputs(cfg: dict[str, Any], steps: Sequence[str], errors: list[str]) -> None:
    extract, ingest = cfg["extract"], cfg["ingest"]
    for section, key in (("extract", "images"), ("extract", "weights"), ("ingest", "root")):
        value = cfg[section].get(key)
        if isinstance(value, str) and not Path(value).exists():
            errors.append(f"{section}.{key}: path {value!r} does not exist")
    mask = ingest.get("mask")
    if isinstance(mask, str) and mask != "finite" and not Path(mask).exists():
        errors.append(f"ingest.mask: path {mask!r} does not exist; give a mask file or 'finite'")
    if "images" not in extract and "store" not in extract and "extract" in steps:
        errors.append("extract: give images (to extract features) or store (an existing features store)")
    if "root" not in ingest and "store" not in ingest and "ingest" in steps:
        errors.append("ingest: give root (a BOLD5000 directory) or store (existing responses stores)")
    if "store" in extract and "images" not in extract and not stores.is_complete(extract["store"]):
        errors.append(f"extract.store: {extract['store']!r} is not a complete features store")
    if "store" in ingest and "root" not in ingest:
        for subject in cfg["subjects"]:
            path = str(ingest["store"]).replace("{subject}", subject)
            if not stores.is_complete(path):
                errors.append(f"ingest.store: {path!r} (subject {subject}) is not a complete responses store")


def _check_pairs(cfg: dict[str, Any], known: Sequence[str], errors: list[str]) -> None:
    pairs = cfg["partition"].get("pairs", [])
    if pairs == "all":
        return
    if any(len(p) != 2 for p in pairs):
        errors.append(f"partition.pairs: expected 'all' or a list of [a, b] pairs; got {pairs!r}")
        return
    cfg["partition"]["pairs"] = [resolve_models(p, "partition.pairs", errors, known) for p in pairs]


def _check_subsets(rsa: dict[str, Any], features: xr.DataArray | None, errors: list[str]) -> None:
    """Each named subset: a table of image coordinate = value(s), selecting enough of the given features' images.

    Without ``rsa.subsets`` the rsa step chooses (``all``, and ``scenes`` where the features hold
    scene images: :func:`neurotask.pipeline.steps.default_subsets`).
    """
    subsets = rsa.get("subsets")
    if subsets is None:
        return
    if not subsets:
        errors.append("rsa.subsets: expected at least one named subset, e.g. {all = {}}; got an empty table")
    for name, where in subsets.items():
        if not isinstance(where, dict):
            errors.append(f"rsa.subsets.{name}: expected a table of coord = value; got {where!r}")
            continue
        for coord, wanted in where.items():
            if coord not in _SUBSET_COORDS:
                errors.append(f"rsa.subsets.{name}: unknown image coordinate {coord!r}; expected 'source' or 'image'")
            elif not _strings(wanted):
                errors.append(f"rsa.subsets.{name}.{coord}: expected a string or a list of strings; got {wanted!r}")
        if features is not None and not any(e.startswith(f"rsa.subsets.{name}") for e in errors):
            try:
                select_images(features, where or None)
            except ValueError as error:
                errors.append(f"rsa.subsets.{name}: {error}")


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value))


def _check_cluster(cluster: dict[str, Any], errors: list[str]) -> None:
    from neurotask.cluster import SLURM_OPTIONS

    scheduler = cluster.get("scheduler")
    if scheduler is not None and not str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        errors.append(f"cluster.scheduler: expected an address such as 'tcp://host:8786'; got {scheduler!r}")
    unknown = sorted(set(cluster.get("slurm", {})) - set(SLURM_OPTIONS))
    if unknown:
        errors.append(f"cluster.slurm: unknown keys {unknown}; expected some of {sorted(SLURM_OPTIONS)}")


def _check_store_models(path: str, known: Sequence[str], models: list[Any], errors: list[str]) -> None:
    available = set(known)
    missing = sorted({m for item in models for m in (item if isinstance(item, list) else [item])} - available)
    if missing:
        errors.append(f"models: {missing} are not in the features store extract.store={path!r} (it has {sorted(available)})")


def _sessions(cfg: dict[str, Any], subject: str) -> list[int] | None:
    ingest = cfg["ingest"]
    if "root" in ingest:
        try:
            return available_sessions(ingest["root"], subject, ingest.get("release", 2)) or None
        except (ValueError, FileNotFoundError):  # the ingest step reports a tree it cannot read
            return None
    if "store" not in ingest:
        return None
    path = str(ingest["store"]).replace("{subject}", subject)
    if not stores.is_complete(path):
        return None
    return sorted({int(s) for s in stores.open_responses(path)["session"].values})


def _check_sessions(cfg: dict[str, Any], errors: list[str]) -> None:
    encode = cfg["encode"]
    tests = encode.get("test_sessions")
    if tests is None:
        return
    if isinstance(tests, int):
        tests = encode["test_sessions"] = [tests]
    if "test_fraction" in encode:
        errors.append("encode.test_sessions and encode.test_fraction: give one of them, not both")
    for subject in cfg["subjects"]:
        available = _sessions(cfg, subject)
        if available is None:
            continue
        outside = [s for s in tests if s not in available]
        if outside:
            errors.append(
                f"encode.test_sessions: sessions {outside} are out of range for {subject} "
                f"(it has sessions {available[0]}..{available[-1]})"
            )
        elif len(set(tests)) >= len(available):
            errors.append(f"encode.test_sessions: holding out every session of {subject} leaves no training data")
