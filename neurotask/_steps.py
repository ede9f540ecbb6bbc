"""The pipeline's steps: each calls one library function with its config section as arguments.

A step whose library function is not importable (yet) reports ``"skipped: <step> not available
yet"`` instead of failing, so the pipeline and the demo run whatever exists. Each planned unit
of work is ``(key, digest, output paths, action)``; the digest covers the settings of the step
and of every step it depends on, so changing an upstream setting recomputes what follows.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr
from rich.console import Console

from neurotask import stores

__all__ = ["STEP_FUNCTIONS", "Context", "find_function", "plan"]

#: The library function behind each config section (module, attribute).
STEP_FUNCTIONS: dict[str, tuple[str, str]] = {
    "extract": ("neurotask.features", "extract_features"),
    "ingest": ("neurotask.fmri", "load_bold5000"),
    "rsa": ("neurotask.rsa", "model_similarity"),
    "encode": ("neurotask.encoding", "fit"),
    "permute": ("neurotask.stats", "permutation_test"),
    "partition": ("neurotask.stats", "variance_partition"),
}
_NOISE_CEILING = ("neurotask.fmri", "noise_ceiling")
_TASK_SIMILARITY = ("neurotask.stats", "task_similarity")


def find_function(module: str, name: str) -> Callable[..., Any] | None:
    """The library function ``module.name``, or None while that module does not provide it."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


@dataclass
class Context:
    """What every step sees: the validated config, the output dir, the Dask client."""

    cfg: dict[str, Any]
    out: Path
    client: Any
    console: Console

    def path(self, name: str, subject: str | None = None) -> Path:
        from neurotask.pipeline import outputs

        if name == "features" and "images" not in self.cfg["extract"] and "store" in self.cfg["extract"]:
            return Path(self.cfg["extract"]["store"])
        if name == "responses" and subject and "root" not in self.cfg["ingest"] and "store" in self.cfg["ingest"]:
            return Path(str(self.cfg["ingest"]["store"]).replace("{subject}", subject))
        return outputs(self.out, subject)[name]

    def singles(self) -> list[str]:
        return [m for m in self.cfg["models"] if isinstance(m, str)]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a library function, giving it the client only if it takes one, with progress shown."""
    parameters = inspect.signature(function).parameters
    if "client" in kwargs and "client" not in parameters:
        kwargs.pop("client")
    if "progress" in parameters:
        kwargs.setdefault("progress", True)
    return function(*args, **kwargs)


def _unavailable(step: str) -> str:
    return f"skipped: {step} not available yet"


def _missing(what: str) -> str:
    return f"skipped: no {what} (an earlier step was skipped)"


def _write(path: Path, result: xr.Dataset | xr.DataArray, name: str, parameters: dict[str, Any]) -> None:
    dataset = result.to_dataset(name=result.name or name) if isinstance(result, xr.DataArray) else result
    region_dim = "voxel" if "voxel" in dataset.dims else None
    stores.write_dataset(path, dataset, parameters=parameters, region_dim=region_dim)


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _fingerprint(path: str | Path, images: bool) -> str:
    """A cheap digest of the files under ``path`` (names and sizes): the images, or all but them."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    entries = [
        (p.relative_to(path).as_posix() if p != path else p.name, p.stat().st_size)
        for p in files
        if (p.suffix.lower() in _IMAGE_SUFFIXES) == images
    ]
    return _digest(entries)


def _settings(ctx: Context, *sections: str, subject: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {s: ctx.cfg[s] for s in sections}
    settings["models"] = ctx.cfg["models"]
    if subject is not None:
        settings["subject"] = subject
    if "extract" in sections and isinstance(ctx.cfg["extract"].get("images"), str):
        settings["images_files"] = _fingerprint(ctx.cfg["extract"]["images"], images=True)
    if "ingest" in sections and "root" in ctx.cfg["ingest"]:
        settings["bold_files"] = _fingerprint(ctx.cfg["ingest"]["root"], images=False)
    features = ctx.path("features")
    if "extract" in sections and "images" not in ctx.cfg["extract"] and stores.is_complete(features):
        settings["features_created"] = stores.open_store(features).attrs.get("created")
    return settings


# --------------------------------------------------------------------------------------------
# the steps


def _extract(ctx: Context) -> str:
    section = dict(ctx.cfg["extract"])
    if "images" not in section:
        return "complete"  # an existing features store was given
    function = find_function(*STEP_FUNCTIONS["extract"])
    if function is None:
        return _unavailable("extract")
    images = section.pop("images")
    section.pop("store", None)
    section.setdefault("models", ctx.singles())
    _call(function, images, store=str(ctx.path("features")), client=ctx.client, **section)
    return "complete"


def _ingest(ctx: Context, subject: str) -> str:
    section = dict(ctx.cfg["ingest"])
    if "root" not in section:
        return "complete"  # existing responses stores were given
    function = find_function(*STEP_FUNCTIONS["ingest"])
    if function is None:
        return _unavailable("ingest")
    root = section.pop("root")
    section.pop("store", None)
    _call(function, root, subject=subject, store=str(ctx.path("responses", subject)), client=ctx.client, **section)
    return "complete"


def _noise_ceiling(ctx: Context, subject: str, parameters: dict[str, Any]) -> str:
    function = find_function(*_NOISE_CEILING)
    if function is None:
        return _unavailable("noise ceiling")
    if not stores.is_complete(ctx.path("responses", subject)):
        return _missing("responses")
    try:
        ceiling = _call(function, stores.open_responses(ctx.path("responses", subject)))
    except ValueError as error:  # e.g. too few repeated images: the rest of the analysis goes on
        return f"skipped: {error}"
    _write(ctx.path("noise_ceiling", subject), ceiling, "noise_ceiling", parameters)
    return "complete"


def _subset_images(features: xr.DataArray, where: dict[str, Any]) -> list[str]:
    mask = None
    for coord, value in where.items():
        values = value if isinstance(value, list) else [value]
        hit = features[coord].isin(values).values
        mask = hit if mask is None else mask & hit
    return [str(i) for i in features["image"].values[mask]]


def _rsa(ctx: Context, parameters: dict[str, Any]) -> str:
    function = find_function(*STEP_FUNCTIONS["rsa"])
    if function is None:
        return _unavailable("rsa")
    if not stores.is_complete(ctx.path("features")):
        return _missing("features")
    section = dict(ctx.cfg["rsa"])
    subsets = section.pop("subsets")
    features = stores.open_features(ctx.path("features")).sel(model=ctx.singles())
    similarities = []
    for name, where in subsets.items():
        similarity = _call(function, features, subset=dict(where) or None, client=ctx.client, **section)
        keep = [c for c in similarity.coords if c in ("model", "model_")]
        similarity = similarity.reset_coords(drop=True).assign_coords({c: similarity[c].values for c in keep})
        similarities.append(similarity.expand_dims(subset=[name]).compute())
    dataset = xr.concat(similarities, "subset").to_dataset(name="similarity")
    dataset["n_images"] = ("subset", [len(_subset_images(features, w)) if w else features.sizes["image"] for w in subsets.values()])
    _write(ctx.path("rsa"), dataset, "similarity", parameters)
    return "complete"


def _encode(ctx: Context, subject: str, parameters: dict[str, Any]) -> str:
    function = find_function(*STEP_FUNCTIONS["encode"])
    if function is None:
        return _unavailable("encode")
    if not (stores.is_complete(ctx.path("features")) and stores.is_complete(ctx.path("responses", subject))):
        return _missing("features or responses")
    section = dict(ctx.cfg["encode"])
    models = [tuple(m) if isinstance(m, list) else m for m in section.pop("models", ctx.singles())]
    path = ctx.path("encoding", subject)
    fit = _call(
        function, stores.open_features(ctx.path("features")), stores.open_responses(ctx.path("responses", subject)),
        models=models, store=str(path), client=ctx.client, **section,
    )
    if not stores.is_complete(path):
        _write(path, fit, "r2", parameters)
    return "complete"


def _permute(ctx: Context, subject: str, parameters: dict[str, Any]) -> str:
    function = find_function(*STEP_FUNCTIONS["permute"])
    if function is None:
        return _unavailable("permute")
    if not stores.is_complete(ctx.path("encoding", subject)):
        return _missing("encoding results")
    fit = stores.open_results(ctx.path("encoding", subject))
    responses = stores.open_responses(ctx.path("responses", subject))
    features = stores.open_features(ctx.path("features"))  # predictions are recomputed from them
    result = _call(function, fit, responses, features, client=ctx.client, **ctx.cfg["permute"])
    _write(ctx.path("permutation", subject), result, "p", parameters)
    return "complete"


def _task_similarity(ctx: Context, parameters: dict[str, Any]) -> str:
    function = find_function(*_TASK_SIMILARITY)
    if function is None:
        return _unavailable("task similarity")
    pairs, per_subject = [], []
    for subject in ctx.cfg["subjects"]:
        if not stores.is_complete(ctx.path("permutation", subject)):
            return _missing(f"permutation results for {subject}")
        fit = stores.open_results(ctx.path("encoding", subject))
        perm = stores.open_results(ctx.path("permutation", subject))
        singles = [m for m in map(str, fit["model"].values) if "+" not in m]
        pairs.append((fit.sel(model=singles), perm.sel(model=singles)))
        similarity = _call(function, *pairs[-1]).compute()
        per_subject.append(similarity.reset_coords(drop=True).expand_dims(subject=[subject]))
    similarity = xr.concat(per_subject, "subject")
    # the library's mean over subjects is NaN-aware (a model without significant voxels in one subject)
    mean = _call(function, pairs).compute().reset_coords(drop=True) if len(pairs) > 1 else similarity.isel(subject=0, drop=True)
    dataset = xr.Dataset({"similarity": similarity, "mean": mean})
    dataset["mean"].attrs["long_name"] = "brain-derived task similarity, mean over subjects"
    _write(ctx.path("task_similarity"), dataset, "similarity", parameters)
    return "complete"


def _partition(ctx: Context, subject: str, parameters: dict[str, Any]) -> str:
    function = find_function(*STEP_FUNCTIONS["partition"])
    if function is None:
        return _unavailable("partition")
    if not (stores.is_complete(ctx.path("features")) and stores.is_complete(ctx.path("responses", subject))):
        return _missing("features or responses")
    section = dict(ctx.cfg["partition"])
    pairs = section.pop("pairs", None)
    if not pairs:
        return "skipped: no partition.pairs configured"
    if pairs != "all":
        pairs = [tuple(p) for p in pairs]
    accepted = inspect.signature(function).parameters
    for key in ("test_sessions", "test_fraction", "alphas", "cv"):  # the same split as the encoding
        if key in ctx.cfg["encode"] and key in accepted:
            section.setdefault(key, ctx.cfg["encode"][key])
    if "results" in accepted and stores.is_complete(ctx.path("encoding", subject)):
        section.setdefault("results", stores.open_results(ctx.path("encoding", subject)))
    result = _call(
        function, stores.open_features(ctx.path("features")), stores.open_responses(ctx.path("responses", subject)),
        pairs=pairs, client=ctx.client, **section,
    )
    _write(ctx.path("partition", subject), result, "unique_a", parameters)
    return "complete"


def _report(ctx: Context) -> str:
    from neurotask.report import write

    path = Path(ctx.cfg["report"].get("path") or ctx.path("report"))
    write(ctx.out, path, config=ctx.cfg)
    ctx.console.print(f"report: {path}")
    return "complete"


Plan = Iterator[tuple[str, str | None, list[Path], Callable[[], str]]]


def plan(step: str, ctx: Context) -> Plan:
    """The units of work of one step: ``(key, settings digest, output paths, action)``."""
    subjects = ctx.cfg["subjects"]
    if step == "extract":
        paths = [ctx.path("features")] if "images" in ctx.cfg["extract"] else []
        yield "extract", _digest(_settings(ctx, "extract")), paths, lambda: _extract(ctx)
    elif step == "ingest":
        for s in subjects:
            settings = _settings(ctx, "ingest", subject=s)
            paths = [ctx.path("responses", s)] if "root" in ctx.cfg["ingest"] else []
            yield f"ingest/{s}", _digest(settings), paths, lambda s=s: _ingest(ctx, s)
            yield (f"noise_ceiling/{s}", _digest(settings, "ceiling"), [ctx.path("noise_ceiling", s)],
                   lambda s=s, p=settings: _noise_ceiling(ctx, s, p))
    elif step == "rsa":
        settings = _settings(ctx, "extract", "rsa")
        yield "rsa", _digest(settings), [ctx.path("rsa")], lambda: _rsa(ctx, settings)
    elif step in ("encode", "permute", "partition"):
        upstream = {"encode": ("encode",), "permute": ("encode", "permute"), "partition": ("encode", "partition")}[step]
        action = {"encode": _encode, "permute": _permute, "partition": _partition}[step]
        output = {"encode": "encoding", "permute": "permutation", "partition": "partition"}[step]
        for s in subjects:
            settings = _settings(ctx, "extract", "ingest", *upstream, subject=s)
            yield (f"{step}/{s}", _digest(settings), [ctx.path(output, s)],
                   lambda s=s, p=settings: action(ctx, s, p))
        if step == "permute":
            settings = _settings(ctx, "extract", "ingest", "encode", "permute")
            settings["subjects"] = subjects
            yield ("task_similarity", _digest(settings), [ctx.path("task_similarity")],
                   lambda: _task_similarity(ctx, settings))
    elif step == "report":
        yield "report", None, [], lambda: _report(ctx)
    else:
        raise ValueError(f"unknown step {step!r}")
