"""One configuration → the whole analysis: extract → ingest → rsa → encode → permute → partition → report.

A TOML file (or a dict of the same shape) names the inputs and, per step, the arguments of the
library function that step calls — the keys are those functions' argument names::

    out = "results"                      # every store and the report go here
    subjects = ["CSI1", "CSI2"]          # several subjects: task similarity averaged across them
    models = ["autoencoding", "depth_euclidean", "room_layout", "class_object"]

    [extract]                            # nt.extract_features(images, models, store, ...)
    images = "BOLD5000/Scene_Stimuli"
    weights = "taskonomy-weights/"
    [ingest]                             # nt.load_bold5000(root, subject, release, store, ...)
    root = "BOLD5000"
    [rsa]                                # nt.rsa.model_similarity(features, subset, ...) per subset
    subsets = { all = {}, scenes = { source = "scene" } }
    [encode]                             # nt.encoding.fit(features, responses, ...)
    test_sessions = [15]
    [permute]                            # nt.stats.permutation_test(results, responses, ...)
    n_permutations = 1000
    [partition]                          # nt.stats.variance_partition(features, responses, pairs, ...)
    pairs = [["autoencoding", "depth_euclidean"]]
    [cluster]                            # neurotask.cluster.get_client(...)
    scheduler = "tcp://login-node:8786"

The whole config is validated before anything is computed (:func:`validate`); errors name the key.
Each step writes its stores under ``out``; ``out/pipeline.json`` records which steps completed
with which settings, so a re-run skips them and resumes a step that was interrupted (the stores'
region writers skip written regions). Changing a step's settings recomputes it and what follows.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from rich.console import Console

from neurotask import stores
from neurotask._steps import STEP_FUNCTIONS, find_function
from neurotask.cluster import CLUSTERS, SLURM_OPTIONS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = [
    "STEPS", "SECTIONS", "ConfigError", "RunSummary", "load_config", "validate", "run", "outputs", "open_outputs",
    "client_from_config",
]

#: The steps, in the order they run.
STEPS: tuple[str, ...] = ("extract", "ingest", "rsa", "encode", "permute", "partition", "report")

SUBJECTS = ("CSI1", "CSI2", "CSI3", "CSI4")

#: Config sections and the keys each accepts (beyond these, any argument of the step's library
#: function is accepted and passed through). The top level is the section "".
SECTIONS: dict[str, dict[str, str]] = {
    "": {
        "out": "output directory for every store and the report (required)",
        "subjects": "BOLD5000 subjects, e.g. ['CSI1'] (default)",
        "models": "Taskonomy models, 'all' (default) or a list",
        "steps": "the steps to run (default: all)",
        "title": "report title",
        "labels": "notes shown at the top of the report, e.g. ['random-weight encoders']",
    },
    "cluster": {
        "scheduler": "address of a running Dask scheduler",
        "cluster": f"one of {sorted(CLUSTERS)}",
        "workers": "worker processes (local) or SLURM jobs",
        "threads_per_worker": "threads per worker",
        "memory_limit": "memory per worker, e.g. '4GB'",
        "processes": "local workers as processes (default true) or threads",
        "slurm": f"SLURM settings: {sorted(SLURM_OPTIONS)}",
    },
    "extract": {
        "images": "stimulus directory, BOLD5000 root or list of files (extracts features)",
        "store": "an existing features store to use instead of extracting",
        "weights": "directory holding the encoder checkpoints",
        "batch_size": "images per batch",
        "device": "'auto', 'cpu' or 'cuda'",
    },
    "ingest": {
        "root": "BOLD5000 root directory",
        "store": "existing responses stores instead of ingesting; '{subject}' is replaced",
        "release": "1, 2 (GLMsingle, default) or 'bids'",
        "normalize": "'session' (default), 'run' or 'none'",
        "betas": "GLMsingle beta type, e.g. 'TYPED'",
    },
    "rsa": {
        "subsets": "named image subsets, e.g. {all = {}, scenes = {source = 'scene'}}",
        "rdm_method": "'correlation', 'cosine' or 'euclidean'",
        "compare": "'spearman', 'pearson' or 'tau-a'",
    },
    "encode": {
        "models": "models (default: the top-level models); a list of names makes a joint model",
        "test_sessions": "held-out session numbers (default: the last session)",
        "test_fraction": "held-out fraction of images, instead of sessions",
        "alphas": "ridge alpha grid",
        "cv": "number of folds (grouped by session)",
    },
    "permute": {
        "n_permutations": "permutations of the test rows (default 1000)",
        "seed": "seed of the permutations",
        "q": "FDR level",
        "method": "'shuffle-test' (default) or 'refit'",
    },
    "partition": {"pairs": "model pairs [[a, b], ...] or 'all'"},
    "report": {"path": "HTML file (default: <out>/report.html)"},
}

_DEFAULT_SUBSETS = {"all": {}, "scenes": {"source": "scene"}}
_console = Console(stderr=True)


class ConfigError(ValueError):
    """A configuration value is wrong; the message names every offending key."""


# --------------------------------------------------------------------------------------------
# configuration


def load_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a TOML config file (or copy a mapping), without validating it."""
    if isinstance(config, Mapping):
        return json.loads(json.dumps(config, default=str))
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{str(path)!r} is not valid TOML: {error}") from error
    base = path.parent
    for section, key in (("", "out"), ("extract", "images"), ("extract", "store"), ("extract", "weights"),
                         ("ingest", "root"), ("ingest", "store"), ("report", "path")):
        table = data if section == "" else data.get(section, {})
        if isinstance(table, dict) and isinstance(table.get(key), str) and not Path(table[key]).is_absolute():
            table[key] = str(base / table[key])  # relative paths are relative to the config file
    return data


def _allowed_keys(section: str) -> set[str]:
    keys = set(SECTIONS[section])
    function = STEP_FUNCTIONS.get(section)
    if function is not None:
        found = find_function(*function)
        if found is not None:
            import inspect

            keys |= {p for p in inspect.signature(found).parameters if p not in ("client", "features", "responses", "results")}
    return keys


def _models_known() -> tuple[set[str], Callable[[str], str]]:
    from neurotask.features import registry

    resolve = getattr(registry, "resolve_task", None)
    return set(registry.TASKS), (resolve if resolve is not None else str)


def validate(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Check a config before any compute and fill its defaults.

    Parameters
    ----------
    config : path or mapping
        A TOML file or a dict of the same shape (see the module docstring).

    Returns
    -------
    dict
        The config with defaults filled in (``models`` resolved to names, ``subjects`` a list,
        every section present).

    Raises
    ------
    ConfigError
        Listing every problem, each naming its key (``encode.test_sessions``, ``models``, …):
        unknown keys, unknown models or subjects, missing paths, test sessions out of range.
    """
    cfg = load_config(config)
    errors: list[str] = []
    for section in cfg:
        if isinstance(cfg[section], dict) and section not in SECTIONS:
            errors.append(f"unknown section [{section}]; expected one of {sorted(s for s in SECTIONS if s)}")
    for section in SECTIONS:
        table = cfg if section == "" else cfg.setdefault(section, {})
        if not isinstance(table, dict):
            errors.append(f"{section} must be a table ([{section}]); got {table!r}")
            continue
        allowed = _allowed_keys(section)
        for key, value in table.items():
            if section == "" and isinstance(value, dict):
                continue
            if key not in allowed:
                errors.append(f"unknown key {_key(section, key)}; expected one of {sorted(allowed)}")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    _validate_values(cfg, errors)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return cfg


def _key(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _validate_values(cfg: dict[str, Any], errors: list[str]) -> None:
    if not isinstance(cfg.get("out"), str) or not cfg["out"]:
        errors.append("out: the output directory is required, e.g. out = 'results'")
    steps = cfg.setdefault("steps", list(STEPS))
    if not isinstance(steps, list) or any(s not in STEPS for s in steps):
        errors.append(f"steps: expected a list of {list(STEPS)}; got {steps!r}")
    subjects = cfg.setdefault("subjects", ["CSI1"])
    if isinstance(subjects, str):
        subjects = cfg["subjects"] = [subjects]
    bad = [s for s in subjects if s not in SUBJECTS]
    if bad or not subjects:
        errors.append(f"subjects: unknown subjects {bad}; expected some of {list(SUBJECTS)}")
    known, resolve = _models_known()

    def models_of(value: Any, key: str) -> list[Any]:
        if value == "all":
            return [m for m in _task_order() if m in known]
        if not isinstance(value, list) or not value:
            errors.append(f"{key}: expected 'all' or a non-empty list of model names; got {value!r}")
            return []
        out: list[Any] = []
        for item in value:
            if isinstance(item, list):
                out.append([r for r in (models_of(item, key) if item else []) if r])
                continue
            try:
                name = resolve(str(item))
            except ValueError:
                name = str(item)
            if name not in known:
                errors.append(f"{key}: unknown model {item!r}; expected Taskonomy tasks such as {sorted(known)}")
            out.append(name)
        return out

    cfg["models"] = models_of(cfg.get("models", "all"), "models")
    extract, ingest = cfg["extract"], cfg["ingest"]
    _check_paths(cfg, errors)
    if "images" not in extract and "store" not in extract and "extract" in steps:
        errors.append("extract: give images (to extract features) or store (an existing features store)")
    if "root" not in ingest and "store" not in ingest and "ingest" in steps:
        errors.append("ingest: give root (a BOLD5000 directory) or store (existing responses stores)")
    if "store" in extract and "images" not in extract and Path(extract["store"]).exists():
        _check_store_models(extract["store"], cfg["models"], errors)
    encode = cfg["encode"]
    if "models" in encode:
        encode["models"] = models_of(encode["models"], "encode.models")
    _check_sessions(cfg, errors)
    for key in ("cv",):
        value = encode.get(key)
        if value is not None and value != "gcv" and (not isinstance(value, int) or value < 2):
            errors.append(f"encode.cv: expected an int >= 2 or 'gcv'; got {value!r}")
    alphas = encode.get("alphas")
    if alphas is not None and (not isinstance(alphas, list) or not all(_positive(a) for a in alphas)):
        errors.append(f"encode.alphas: expected a list of positive numbers; got {alphas!r}")
    permute = cfg["permute"]
    n = permute.get("n_permutations")
    if n is not None and (not isinstance(n, int) or n < 1):
        errors.append(f"permute.n_permutations: expected a positive int; got {n!r}")
    q = permute.get("q")
    if q is not None and not (isinstance(q, (int, float)) and 0 < q < 1):
        errors.append(f"permute.q: expected a number in (0, 1); got {q!r}")
    pairs = cfg["partition"].get("pairs", [])
    if pairs != "all":
        if not isinstance(pairs, list) or any(not isinstance(p, list) or len(p) != 2 for p in pairs):
            errors.append(f"partition.pairs: expected 'all' or a list of [a, b] pairs; got {pairs!r}")
        else:
            cfg["partition"]["pairs"] = [models_of(p, "partition.pairs") for p in pairs]
    subsets = cfg["rsa"].setdefault("subsets", dict(_DEFAULT_SUBSETS))
    if not isinstance(subsets, dict) or any(not isinstance(v, dict) for v in subsets.values()):
        errors.append(f"rsa.subsets: expected a table of name = {{coord = value}}; got {subsets!r}")
    else:
        for name, where in subsets.items():
            for coord in where:
                if coord not in ("source", "image"):
                    errors.append(f"rsa.subsets.{name}: unknown image coordinate {coord!r}; expected 'source' or 'image'")
    _check_cluster(cfg["cluster"], errors)


def _task_order() -> list[str]:
    from neurotask.features.registry import TASKS

    return list(TASKS)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_paths(cfg: dict[str, Any], errors: list[str]) -> None:
    for section, key in (("extract", "images"), ("extract", "weights"), ("ingest", "root")):
        value = cfg[section].get(key)
        if isinstance(value, str) and not Path(value).exists():
            errors.append(f"{section}.{key}: path {value!r} does not exist")
    extract, ingest = cfg["extract"], cfg["ingest"]
    if "store" in extract and "images" not in extract and not stores.is_complete(extract["store"]):
        errors.append(f"extract.store: {extract['store']!r} is not a complete features store")
    if "store" in ingest and "root" not in ingest:
        for subject in cfg["subjects"]:
            path = str(ingest["store"]).replace("{subject}", subject)
            if not stores.is_complete(path):
                errors.append(f"ingest.store: {path!r} (subject {subject}) is not a complete responses store")


def _check_store_models(path: str, models: list[Any], errors: list[str]) -> None:
    available = set(map(str, stores.open_features(path)["model"].values))
    missing = sorted({m for m in _flatten(models)} - available)
    if missing:
        errors.append(f"models: {missing} are not in the features store extract.store={path!r} (it has {sorted(available)})")


def _flatten(models: Sequence[Any]) -> list[str]:
    return [m for item in models for m in (item if isinstance(item, list) else [item])]


def _sessions_available(cfg: dict[str, Any], subject: str) -> list[int] | None:
    ingest = cfg["ingest"]
    if "root" not in ingest:
        if "store" not in ingest:
            return None
        path = str(ingest["store"]).replace("{subject}", subject)
        if not stores.is_complete(path):
            return None
        return sorted({int(s) for s in stores.open_responses(path)["session"].values})
    root = Path(ingest["root"])
    release = str(ingest.get("release", 2))
    if release == "bids":
        names = [p.name for p in (root / f"sub-{subject}").glob("ses-*")]
    else:
        names = [p.name.split("_ses-")[-1] for p in (root / "derivatives" / "GLMsingle" / subject).glob("*_ses-*.nii*")]
    sessions = sorted({int("".join(c for c in n.split(".")[0] if c.isdigit())) for n in names if any(c.isdigit() for c in n)})
    return sessions or None


def _check_sessions(cfg: dict[str, Any], errors: list[str]) -> None:
    encode = cfg["encode"]
    tests = encode.get("test_sessions")
    if tests is None:
        return
    if isinstance(tests, int):
        tests = encode["test_sessions"] = [tests]
    if "test_fraction" in encode:
        errors.append("encode.test_sessions and encode.test_fraction: give one of them, not both")
    if not isinstance(tests, list) or not all(isinstance(s, int) for s in tests):
        errors.append(f"encode.test_sessions: expected a list of session numbers; got {tests!r}")
        return
    for subject in cfg["subjects"]:
        available = _sessions_available(cfg, subject)
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


def _check_cluster(cluster: dict[str, Any], errors: list[str]) -> None:
    kind = cluster.get("cluster", "local")
    if kind not in CLUSTERS:
        errors.append(f"cluster.cluster: unknown cluster {kind!r}; expected one of {sorted(CLUSTERS)}")
    scheduler = cluster.get("scheduler")
    if scheduler is not None and not str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        errors.append(f"cluster.scheduler: expected an address such as 'tcp://host:8786'; got {scheduler!r}")
    unknown = sorted(set(cluster.get("slurm", {})) - set(SLURM_OPTIONS))
    if unknown:
        errors.append(f"cluster.slurm: unknown keys {unknown}; expected some of {sorted(SLURM_OPTIONS)}")
    for key in ("workers", "threads_per_worker"):
        value = cluster.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            errors.append(f"cluster.{key}: expected a positive int; got {value!r}")


# --------------------------------------------------------------------------------------------
# outputs and the ledger of completed steps


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
    }
    if subject is not None:
        for name in ("responses", "noise_ceiling", "encoding", "permutation", "partition"):
            paths[name] = out / f"{name}-{subject}.zarr"
    return paths


class _Ledger:
    """``pipeline.json``: per step key, the settings digest it ran with and whether it completed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, step: str, digest: str | None, paths: Sequence[Path]) -> bool:
        if digest is None:  # a step that always runs (the report)
            return False
        record = self.records.get(step, {})
        return record.get("digest") == digest and record.get("status") == "complete" and all(
            stores.is_complete(p) if p.suffix == ".zarr" else p.exists() for p in paths
        )

    def start(self, step: str, digest: str | None, paths: Sequence[Path]) -> None:
        record = self.records.get(step)
        if record is not None and record.get("digest") != digest:
            for path in paths:  # other settings: the partial or stale outputs cannot be resumed
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        self.records[step] = {"digest": digest, "status": "running"}
        self._save()

    def finish(self, step: str, status: str, seconds: float, note: str = "") -> None:
        self.records[step].update(status=status, seconds=round(seconds, 2), note=note)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.records, indent=1, sort_keys=True))
        tmp.replace(self.path)


# --------------------------------------------------------------------------------------------
# running


@dataclass
class RunSummary:
    """What :func:`run` did: per step key, ``"complete"``, ``"skipped: ..."`` or ``"done before"``."""

    out: Path
    statuses: dict[str, str] = field(default_factory=dict)
    report: Path | None = None


def run(
    config: str | Path | Mapping[str, Any],
    *,
    client: Any = None,
    steps: Sequence[str] | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run the configured steps, skipping completed ones and resuming interrupted ones.

    Parameters
    ----------
    config : path or mapping
        A TOML config file or a dict (see the module docstring); validated first.
    client : distributed.Client, optional
        Run on this client; default: the one ``[cluster]`` describes (a LocalCluster sized to the
        machine when the section is empty), closed at the end.
    steps : sequence of str, optional
        Run only these steps (default: the config's ``steps``, all by default).
    console : rich.console.Console, optional
        Where progress messages go (stderr by default).

    Returns
    -------
    RunSummary
        The output directory, each step's status and the report path.

    Examples
    --------
    >>> summary = nt.pipeline.run("analysis.toml")  # doctest: +SKIP
    >>> summary.report                              # doctest: +SKIP
    PosixPath('results/report.html')
    """
    from neurotask import _steps

    cfg = validate(config)
    console = console or _console
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    paths = outputs(out)
    paths["config"].write_text(json.dumps(cfg, indent=1, sort_keys=True))
    wanted = [s for s in STEPS if s in (steps or cfg["steps"])]
    summary = RunSummary(out=out)
    ledger = _Ledger(paths["ledger"])
    owned = None
    if client is None and any(s != "report" for s in wanted):
        owned = client = client_from_config(cfg)
    try:
        context = _steps.Context(cfg=cfg, out=out, client=client, console=console)
        for step in wanted:
            for key, digest, step_paths, action in _steps.plan(step, context):
                if ledger.done(key, digest, step_paths):
                    summary.statuses[key] = "done before"
                    console.print(f"[dim]{key}: done before, skipped[/dim]")
                    continue
                ledger.start(key, digest, step_paths)
                start = time.perf_counter()
                console.print(f"[bold]{key}[/bold] …")
                status = action()
                seconds = time.perf_counter() - start
                ledger.finish(key, "complete" if status == "complete" else "skipped", seconds, status)
                summary.statuses[key] = status
                if status == "complete":
                    _stamp_config(step_paths, cfg)
                console.print(f"{key}: {status} ({seconds:.1f} s)")
    finally:
        if owned is not None:
            owned.close()
    report = paths["report"] if not cfg["report"].get("path") else Path(cfg["report"]["path"])
    summary.report = report if report.exists() else None
    return summary


def client_from_config(config: str | Path | Mapping[str, Any]) -> Any:
    """The Dask client a config's ``[cluster]`` section describes (see :func:`neurotask.cluster.get_client`).

    Returns
    -------
    distributed.Client
        Close it (or use it as a context manager) to stop what it started.
    """
    from neurotask.cluster import get_client

    cluster = validate(config)["cluster"] if not isinstance(config, Mapping) or "cluster" not in config else config["cluster"]
    return get_client(
        cluster.get("scheduler"), cluster.get("cluster", "local"), workers=cluster.get("workers"),
        threads_per_worker=cluster.get("threads_per_worker"), memory_limit=cluster.get("memory_limit"),
        processes=cluster.get("processes", True), slurm_options=cluster.get("slurm") or None,
    )


def _stamp_config(paths: Sequence[Path], cfg: Mapping[str, Any]) -> None:
    """Results carry the config that made them (beside the writer's own provenance)."""
    for path in paths:
        if path.suffix == ".zarr" and stores.is_complete(path):
            zarr.open_group(str(path), mode="r+").attrs["pipeline_config"] = json.dumps(cfg, sort_keys=True)


def open_outputs(out: str | Path) -> dict[str, Any]:
    """Open whatever a pipeline run left under ``out`` (lazy stores, config, ledger).

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
    if stores.is_complete(features):
        found["features"] = stores.open_features(features)
    for name in ("rsa", "task_similarity"):
        if stores.is_complete(paths[name]):
            found[name] = stores.open_results(paths[name])
    subjects = sorted({p.name.split("-", 1)[1][: -len(".zarr")] for p in out.glob("*-CSI*.zarr")})
    for subject in subjects:
        entry: dict[str, Any] = {}
        for name, path in outputs(out, subject).items():
            if name in ("responses", "noise_ceiling", "encoding", "permutation", "partition") and stores.is_complete(path):
                entry[name] = stores.open_responses(path) if name == "responses" else stores.open_results(path)
        found["subjects"][subject] = entry
    return found

