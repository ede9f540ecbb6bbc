"""The pipeline's configuration: one typed section per step, checked before anything runs.

Each section is a dataclass whose fields are the arguments a user may set; their types, choices
and help texts are what :func:`validate` checks, what ``neurotask run --help`` and the README's
config reference show (:func:`reference`). Arguments the pipeline sets itself (a step's inputs,
``store``, ``subject``, ``subset``, ``client``) are not fields: setting one fails with its key.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from neurotask.backend import BACKENDS
from neurotask.cluster import CLUSTERS, SLURM_OPTIONS
from neurotask.encoding import SCORINGS
from neurotask.encoding.split import REPEATS
from neurotask.features import TASKS, resolve_task
from neurotask.features.extract import ON_ERROR
from neurotask.fmri import BETAS, NORMALIZATIONS
from neurotask.rsa import COMPARE_METHODS, RDM_METHODS
from neurotask.stats import PERMUTATION_METHODS, STATISTICS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["SECTIONS", "STEPS", "SUBJECTS", "ConfigError", "load_config", "reference", "check_types"]

#: The steps, in the order they run.
STEPS: tuple[str, ...] = ("extract", "ingest", "rsa", "encode", "permute", "partition", "report")

SUBJECTS = ("CSI1", "CSI2", "CSI3", "CSI4")

#: Keys the pipeline sets itself, per section, and why a config cannot.
RESERVED: dict[str, dict[str, str]] = {
    "extract": {"models": "the top-level `models` key chooses them"},
    "ingest": {"subject": "the top-level `subjects` key lists them", "progress": "always shown"},
    "rsa": {"subset": "name image subsets in rsa.subsets", "features": "the features step's store"},
    "encode": {"store": "results go to <out>/encoding-<subject>.zarr", "features": "the features step's store",
               "responses": "the ingest step's store", "client": "set in [cluster]", "progress": "always shown"},
    "permute": {"results": "the encode step's store", "responses": "the ingest step's store",
                "features": "the features step's store", "predictions": "kept by the encode step",
                "client": "set in [cluster]", "progress": "always shown"},
    "partition": {"results": "the encode step's store", "features": "the features step's store",
                  "responses": "the ingest step's store", "permutation": "the permute step's store",
                  "ceiling": "the noise ceiling step's store", "client": "set in [cluster]",
                  "test_sessions": "the encode step's split", "test_fraction": "the encode step's split",
                  "alphas": "the encode step's", "cv": "the encode step's", "seed": "the encode step's"},
}


class ConfigError(ValueError):
    """A configuration value is wrong; the message names every offending key."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


Path_ = str  # a path in the config: a string, relative to the config file
Pair = list[str]


@dataclass
class Top:
    out: Path_ = field(default="", metadata=_help("output directory for every store and the report (required)"))
    subjects: Union[list[str], str] = field(default="CSI1", metadata=_help(
        f"BOLD5000 subjects, some of {list(SUBJECTS)}; with ingest.store (your own responses) any labels"))
    models: Union[list[Union[str, list[str]]], Literal["all"]] = field(
        default="all", metadata=_help("Taskonomy models: 'all' or a list (aliases accepted)"))
    steps: list[str] = field(default_factory=lambda: list(STEPS), metadata=_help(f"steps to run, some of {list(STEPS)}"))
    title: str = field(default="neurotask report", metadata=_help("report title"))
    labels: list[str] = field(default_factory=list, metadata=_help("notes shown at the top of the report"))


@dataclass
class Cluster:
    scheduler: str = field(default="", metadata=_help("address of a running Dask scheduler, e.g. 'tcp://host:8786'"))
    cluster: Literal[tuple(CLUSTERS)] = field(default="local", metadata=_help("where workers start"))
    workers: int = field(default=0, metadata=_help("worker processes (local) or SLURM jobs"))
    threads_per_worker: int = field(default=0, metadata=_help("threads per worker"))
    memory_limit: str = field(default="", metadata=_help("memory per worker, e.g. '4GB'"))
    processes: bool = field(default=True, metadata=_help("local workers as processes (true) or threads"))
    slurm: dict = field(default_factory=dict, metadata=_help(f"SLURM settings: {sorted(SLURM_OPTIONS)}"))


@dataclass
class Extract:
    images: Path_ = field(default="", metadata=_help("stimulus directory, BOLD5000 root or image file"))
    store: Path_ = field(default="", metadata=_help("an existing features store to use instead of extracting"))
    weights: Path_ = field(default="", metadata=_help("directory holding the encoder checkpoints"))
    batch_size: int = field(default=0, metadata=_help("images per forward pass (default: by device)"))
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda' or 'cuda:N'"))
    on_error: Literal[tuple(ON_ERROR)] = field(default="raise", metadata=_help("undecodable images"))
    normalize_outputs: bool = field(default=True, metadata=_help("visualpriors' output GroupNorm"))
    fast: bool = field(default=False, metadata=_help("folded batch norms, channels-last (~1e-4 off)"))
    image_chunk: int = field(default=256, metadata=_help("images per task"))
    overwrite: bool = field(default=False, metadata=_help("replace a store written with other options"))


@dataclass
class Ingest:
    root: Path_ = field(default="", metadata=_help("BOLD5000 folder (release 2 files, ROIs/, or BIDS)"))
    store: str = field(default="", metadata=_help("existing responses stores instead of ingesting; '{subject}' is replaced"))
    release: Literal[1, 2, "1", "2", "bids"] = field(default=2, metadata=_help("1, 2 (GLMsingle) or 'bids'"))
    mask: str = field(default="", metadata=_help("brain mask file, or 'finite' (voxels finite in every session)"))
    normalize: Literal[tuple(NORMALIZATIONS)] = field(default="session", metadata=_help("z-score within"))
    betas: Literal[tuple(BETAS)] = field(default="TYPED", metadata=_help("GLMsingle beta type"))
    tr: Union[int, list[int]] = field(default_factory=lambda: [3, 4], metadata=_help("TRs after onset (release 1, bids)"))
    resample_mask: bool = field(default=False, metadata=_help("resample a mask on another grid"))
    trials_per_run: int = field(default=37, metadata=_help("trials per run"))
    session_trials: list[int] = field(default_factory=list, metadata=_help("trials per session, when not the real ones"))
    preprocessed: bool = field(default=True, metadata=_help("BIDS: fmriprep's T1w runs (true, when present) or the raw runs"))
    voxel_chunk: int = field(default=4096, metadata=_help("voxels per stored chunk"))
    overwrite: bool = field(default=False, metadata=_help("replace a store written with other options"))


@dataclass
class Rsa:
    subsets: dict = field(default_factory=lambda: {"all": {}, "scenes": {"source": "scene"}}, metadata=_help(
        "named image subsets, e.g. {all = {}, scenes = {source = 'scene'}} (the default; scenes only when the "
        "features hold at least 3 scene images)"))
    rdm_method: Literal[tuple(RDM_METHODS)] = field(default="correlation", metadata=_help("RDM dissimilarity"))
    compare: Literal[tuple(COMPARE_METHODS)] = field(default="spearman", metadata=_help("RDM comparison"))
    backend: Literal[tuple(BACKENDS)] = field(default="numpy", metadata=_help("array backend ('auto': torch on a GPU)"))
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda' or 'cuda:N' (torch backend)"))
    device_batch: int = field(default=0, metadata=_help("cap on image pairs per device step (torch backend)"))


@dataclass
class Encode:
    models: list[Union[str, list[str]]] = field(
        default_factory=list, metadata=_help("models (default: the top-level ones); a list of names is a joint model"))
    test_sessions: Union[int, list[int]] = field(default_factory=list, metadata=_help("held-out sessions (default: the last)"))
    test_fraction: float = field(default=0.0, metadata=_help("held-out fraction of images, instead of sessions"))
    seed: int = field(default=0, metadata=_help("seed of the test_fraction draw"))
    alphas: list[float] = field(default_factory=list, metadata=_help("ridge alpha grid (default logspace(-2, 7, 19))"))
    cv: Union[int, Literal["gcv"]] = field(default=5, metadata=_help("folds (grouped by session) or 'gcv'"))
    repeats: Literal[tuple(REPEATS)] = field(default="drop-test", metadata=_help(
        "images shown in training and test: drop their test trials, their training trials, or keep all"))
    standardize: bool = field(default=False, metadata=_help("scale features to unit variance"))
    predictions: bool = field(default=True, metadata=_help("keep the test predictions (the permutation null uses them)"))
    scoring: list[Literal[tuple(SCORINGS)]] = field(default_factory=lambda: list(SCORINGS), metadata=_help("test scores"))
    voxel_chunk: int = field(default=0, metadata=_help("voxels per task"))
    factor_memory: int = field(default=2 << 30, metadata=_help("bytes of ridge factors held at once"))
    backend: Literal[tuple(BACKENDS)] = field(default="numpy", metadata=_help("array backend ('auto': torch on a GPU)"))
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda' or 'cuda:N' (torch backend)"))
    allow_tf32: bool = field(default=False, metadata=_help("TF32 GEMMs on CUDA (faster, ~1e-3 relative; recorded)"))
    device_batch: int = field(default=0, metadata=_help("cap on voxel columns per device step (torch backend)"))


@dataclass
class Permute:
    n_permutations: int = field(default=1000, metadata=_help("permutations of the test rows"))
    seed: int = field(default=0, metadata=_help("seed of the permutations"))
    method: Literal[tuple(PERMUTATION_METHODS)] = field(default="shuffle-test", metadata=_help("null"))
    statistic: Literal[tuple(STATISTICS)] = field(default="r", metadata=_help("test statistic"))
    q: float = field(default=0.05, metadata=_help("FDR level (Benjamini-Hochberg)"))
    fwer: bool = field(default=False, metadata=_help("also the max-statistic FWER threshold"))
    voxel_chunk: int = field(default=0, metadata=_help("voxels per task"))
    permutation_block: int = field(default=0, metadata=_help("permutations per task"))
    backend: Literal[tuple(BACKENDS)] = field(default="numpy", metadata=_help("array backend ('auto': torch on a GPU)"))
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda' or 'cuda:N' (torch backend)"))


@dataclass
class Partition:
    pairs: Union[list[Pair], Literal["all"]] = field(default_factory=list, metadata=_help("model pairs [[a, b], ...] or 'all'"))
    banded: bool = field(default=False, metadata=_help("a separate alpha per feature space"))
    standardize: bool = field(default=True, metadata=_help("standardize each space of the joint fit"))
    backend: Literal[tuple(BACKENDS)] = field(default="numpy", metadata=_help("array backend ('auto': torch on a GPU)"))
    device: str = field(default="auto", metadata=_help("'auto', 'cpu', 'cuda' or 'cuda:N' (torch backend)"))


@dataclass
class Report:
    path: Path_ = field(default="", metadata=_help("HTML file (default: <out>/report.html)"))


#: Config sections (the top level is "") and their typed schema.
SECTIONS: dict[str, type] = {
    "": Top, "cluster": Cluster, "extract": Extract, "ingest": Ingest, "rsa": Rsa, "encode": Encode,
    "permute": Permute, "partition": Partition, "report": Report,
}

#: Keys whose values are paths, relative to the config file when read from TOML.
PATHS = (("", "out"), ("extract", "images"), ("extract", "store"), ("extract", "weights"),
         ("ingest", "root"), ("ingest", "store"), ("ingest", "mask"), ("report", "path"))


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
    for section, key in PATHS:
        table = data if section == "" else data.get(section, {})
        value = table.get(key) if isinstance(table, dict) else None
        if isinstance(value, str) and value != "finite" and not Path(value).is_absolute():
            table[key] = str(path.parent / value)  # relative paths are relative to the config file
    return data


def key_name(section: str, key: str) -> str:
    """``section.key`` (or ``key`` at the top level), as error messages name a key."""
    return f"{section}.{key}" if section else key


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is Union:
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return " or ".join(_plural(a) for a in args)
    if origin is list:
        return f"lists of {_plural(args[0])}"
    if origin is Literal:
        return "values among " + ", ".join(repr(a) for a in args)
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings", dict: "tables"}.get(hint, str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)  # "false" (a string) is not a boolean
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_types(cfg: Mapping[str, Any], errors: list[str]) -> None:
    """Unknown sections and keys, and values of the wrong type, each reported with its key."""
    for section, value in cfg.items():
        if isinstance(value, dict) and section not in SECTIONS:
            errors.append(f"unknown section [{section}]; expected one of {sorted(s for s in SECTIONS if s)}")
    for section, schema in SECTIONS.items():
        table = cfg if section == "" else cfg.get(section, {})
        if not isinstance(table, dict):
            errors.append(f"{section} must be a table ([{section}]); got {table!r}")
            continue
        hints = typing.get_type_hints(schema)
        fields = {f.name for f in dataclasses.fields(schema)}
        for key, value in table.items():
            if section == "" and (isinstance(value, dict) or key in SECTIONS):
                continue
            if key in RESERVED.get(section, {}):
                errors.append(f"{key_name(section, key)}: set by the pipeline ({RESERVED[section][key]}); remove it")
            elif key not in fields:
                errors.append(f"unknown key {key_name(section, key)}; expected one of {sorted(fields)}")
            elif not _matches(value, hints[key]):
                errors.append(f"{key_name(section, key)}: expected {_describe(hints[key])}; got {value!r}")


def _model_name(item: Any, key: str, known: Sequence[str], errors: list[str]) -> str | None:
    """A model of ``known`` (a given features store's models) as it is, else a Taskonomy task (aliases resolved)."""
    if str(item) in known:
        return str(item)
    try:
        return resolve_task(str(item))
    except ValueError:
        expected = f"the features store's models {list(known)} or Taskonomy tasks" if known else "Taskonomy tasks such as"
        errors.append(f"{key}: unknown model {item!r}; expected {expected} {sorted(TASKS)}")
        return None


def resolve_models(value: Any, key: str, errors: list[str], known: Sequence[str] = ()) -> list[Any]:
    """Model names after alias resolution (joint models as lists); unknown and repeated ones reported.

    ``known``: the models of a features store the config brings (``extract.store``): ``'all'``
    means those, and their names are taken as they are, Taskonomy tasks or not.
    """
    if value == "all":
        return list(known or TASKS)
    if not isinstance(value, list) or not value:
        errors.append(f"{key}: expected 'all' or a non-empty list of model names; got {value!r}")
        return []
    out: list[Any] = []
    seen: dict[str, Any] = {}
    for item in value:
        if isinstance(item, list):
            out.append(resolve_models(item, key, errors, known) if item else [])
            continue
        name = _model_name(item, key, known, errors)
        if name is None:
            continue
        if name in seen:
            same = "is listed twice" if seen[name] == item else f"and {seen[name]!r} are the same task ({name})"
            errors.append(f"{key}: {item!r} {same}; list each model once")
            continue
        seen[name] = item
        out.append(name)
    return out


def reference() -> str:
    """The config reference as Markdown: every section's keys, types and help (for docs and --help)."""
    lines = []
    for section, schema in SECTIONS.items():
        lines.append(f"[{section}]" if section else "top level")
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            lines.append(f"  {f.name} ({_describe(hints[f.name])}): {f.metadata['help']}")
    return "\n".join(lines)
