"""The pipeline's steps: each calls its library function directly and writes one store.

The step functions (``extract`` … ``task_similarity``) are what both :func:`neurotask.pipeline.run`
and the command line call: one writer convention, every step takes ``store=`` and returns what
it wrote, opened lazily. :data:`STEP_TABLE` says, per step, which config sections its results
depend on and where it writes; :func:`plan` turns a config into units of work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
from rich.console import Console

from neurotask import stores
from neurotask.encoding import fit
from neurotask.features import extract_features
from neurotask.fmri import input_files, load_bold5000, noise_ceiling
from neurotask.report import write as write_report
from neurotask.rsa import model_similarity, select_images
from neurotask.stats import permutation_test, task_similarity as brain_task_similarity, variance_partition
from neurotask.stimuli import find_images
from neurotask.stores.layout import outputs

__all__ = ["METHOD_REVISIONS", "STEP_TABLE", "Context", "StepSpec", "default_subsets", "encode", "partition", "permute",
           "plan", "rsa", "similarity_of_tasks"]


def _write(store: str | Path, result: xr.Dataset | xr.DataArray, name: str, parameters: Mapping[str, Any]) -> xr.Dataset:
    dataset = result.to_dataset(name=result.name or name) if isinstance(result, xr.DataArray) else result
    region_dim = "voxel" if "voxel" in dataset.dims else None
    stores.write_dataset(store, dataset, parameters=dict(parameters), region_dim=region_dim,
                         chunks={"voxel": 4096} if region_dim else None)
    return stores.open_results(store)


# --------------------------------------------------------------------------------------------
# the step functions (the CLI calls them too)


def rsa(features: xr.DataArray, subsets: Mapping[str, Any], store: str | Path, *, client: Any = None,
        parameters: Mapping[str, Any] | None = None, **options: Any) -> xr.Dataset:
    """Model similarity on each named image subset, stacked along ``subset``, written to ``store``."""
    similarities, counts = [], []
    for name, where in subsets.items():
        similarity = model_similarity(features, subset=where or None, client=client, **options)
        keep = [c for c in similarity.coords if c in ("model", "model_")]
        similarity = similarity.reset_coords(drop=True).assign_coords({c: similarity[c].values for c in keep})
        similarities.append(similarity.expand_dims(subset=[name]).compute())
        counts.append(len(select_images(features, where or None)[0]["image"]))
    dataset = xr.concat(similarities, "subset").to_dataset(name="similarity")
    dataset["n_images"] = ("subset", counts)
    dataset.attrs.update({k: v for k, v in similarities[-1].attrs.items() if k != "subset"})
    return _write(store, dataset, "similarity", parameters or {})


def encode(features: xr.DataArray, responses: xr.DataArray, store: str | Path, *, client: Any = None,
           **options: Any) -> xr.Dataset:
    """Voxelwise ridge (:func:`neurotask.encoding.fit`), written to ``store``."""
    return fit(features, responses, store=store, client=client, progress=True, **options)


def permute(results: xr.Dataset, responses: xr.DataArray, store: str | Path, *, features: xr.DataArray | None = None,
            client: Any = None, parameters: Mapping[str, Any] | None = None, **options: Any) -> xr.Dataset:
    """Permutation p-values and FDR (:func:`neurotask.stats.permutation_test`), written to ``store``."""
    result = permutation_test(results, responses, features, client=client, progress=True, **options)
    return _write(store, result, "p", {**result.attrs, **(parameters or {})})


def partition(features: xr.DataArray, responses: xr.DataArray, store: str | Path, *, pairs: Any,
              client: Any = None, parameters: Mapping[str, Any] | None = None, **options: Any) -> xr.Dataset:
    """Variance partitioning (:func:`neurotask.stats.variance_partition`), written to ``store``."""
    result = variance_partition(features, responses, pairs, client=client, **options)
    return _write(store, result, "unique_a", parameters or {})


def similarity_of_tasks(fits: Mapping[str, tuple[xr.Dataset, xr.Dataset]], store: str | Path, *,
                        parameters: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Brain-derived task similarity per subject and its mean over subjects, written to ``store``."""
    per_subject = [brain_task_similarity(*pair).compute().reset_coords(drop=True).expand_dims(subject=[s])
                   for s, pair in fits.items()]
    similarity = xr.concat(per_subject, "subject")
    if len(fits) > 1:
        mean = brain_task_similarity(list(fits.values())).compute().reset_coords(drop=True)
    else:
        mean = similarity.isel(subject=0, drop=True)
    dataset = xr.Dataset({"similarity": similarity, "mean": mean})
    dataset["mean"].attrs["long_name"] = "brain-derived task similarity, mean over subjects"
    return _write(store, dataset, "similarity", parameters or {})


# --------------------------------------------------------------------------------------------
# the pipeline's context and plan


@dataclass
class Context:
    """What every step sees: the validated config, the output dir, the Dask client."""

    cfg: dict[str, Any]
    out: Path
    client: Any
    console: Console
    fingerprints: dict[str, str] = field(default_factory=dict)

    def fingerprint(self, name: str, files: Callable[[], Sequence[Path]]) -> str:
        """The fingerprint of input files, computed once per run (the inputs of several units)."""
        if name not in self.fingerprints:
            self.fingerprints[name] = stores.fingerprint(files())
        return self.fingerprints[name]

    def path(self, name: str, subject: str | None = None) -> Path:
        """Where ``name`` (a store of :func:`neurotask.stores.layout.outputs`) is read or written."""
        extract, ingest = self.cfg["extract"], self.cfg["ingest"]
        if name == "features" and "images" not in extract and "store" in extract:
            return Path(extract["store"])
        if name == "responses" and subject and "root" not in ingest and "store" in ingest:
            return Path(str(ingest["store"]).replace("{subject}", subject))
        return outputs(self.out, subject)[name]

    def singles(self) -> list[str]:
        """The configured single models (not joint ones)."""
        return [m for m in self.cfg["models"] if isinstance(m, str)]

    def features(self) -> xr.DataArray:
        return stores.open_features(self.path("features"))

    def responses(self, subject: str) -> xr.DataArray:
        return stores.open_responses(self.path("responses", subject))


def _run_extract(ctx: Context, subject: None) -> str:
    section = dict(ctx.cfg["extract"])
    if "images" not in section:
        return "complete"  # an existing features store was given
    images = section.pop("images")
    section.pop("store", None)
    extract_features(images, ctx.singles(), str(ctx.path("features")), client=ctx.client, **section)
    return "complete"


def _run_ingest(ctx: Context, subject: str) -> str:
    section = dict(ctx.cfg["ingest"])
    if "root" not in section:
        return "complete"  # existing responses stores were given
    root = section.pop("root")
    section.pop("store", None)
    load_bold5000(root, subject=subject, store=str(ctx.path("responses", subject)), **section)
    return "complete"


def _run_noise_ceiling(ctx: Context, subject: str) -> str:
    try:
        ceiling = noise_ceiling(ctx.responses(subject))
    except ValueError as error:  # e.g. no repeated images: the rest of the analysis goes on
        return f"skipped: {error}"
    _write(ctx.path("noise_ceiling", subject), ceiling, "noise_ceiling", {})
    return "complete"


def default_subsets(features: xr.DataArray) -> dict[str, dict[str, str]]:
    """The rsa step's subsets when the config names none: all images, and scenes where there are enough.

    Features whose image ids are not BOLD5000's have ``source == "unknown"`` and no scene subset.
    """
    subsets: dict[str, dict[str, str]] = {"all": {}}
    sources = select_images(features)[0]["source"].values
    if (sources == "scene").sum() >= 3:
        subsets["scenes"] = {"source": "scene"}
    return subsets


def _run_rsa(ctx: Context, subject: None) -> str:
    section = dict(ctx.cfg["rsa"])
    features = ctx.features().sel(model=ctx.singles())
    subsets = section.pop("subsets", None) or default_subsets(features)
    rsa(features, subsets, ctx.path("rsa"), client=ctx.client, **section)
    return "complete"


def _models(ctx: Context) -> list[Any]:
    models = ctx.cfg["encode"].get("models") or ctx.singles()
    return [tuple(m) if isinstance(m, list) else m for m in models]


def _run_encode(ctx: Context, subject: str) -> str:
    section = {k: v for k, v in ctx.cfg["encode"].items() if k != "models"}
    encode(ctx.features(), ctx.responses(subject), ctx.path("encoding", subject), models=_models(ctx),
           client=ctx.client, **section)
    return "complete"


def _run_permute(ctx: Context, subject: str) -> str:
    results = stores.open_results(ctx.path("encoding", subject))
    permute(results, ctx.responses(subject), ctx.path("permutation", subject), features=ctx.features(),
            client=ctx.client, **ctx.cfg["permute"])
    return "complete"


def _run_task_similarity(ctx: Context, subject: None) -> str:
    fits = {}
    for s in ctx.cfg["subjects"]:
        results = stores.open_results(ctx.path("encoding", s))
        singles = [m for m in map(str, results["model"].values) if m in ctx.singles()]
        permutation = stores.open_results(ctx.path("permutation", s))
        fits[s] = (results.sel(model=singles), permutation.sel(model=singles))
    similarity_of_tasks(fits, ctx.path("task_similarity"))
    return "complete"


#: Keys of [encode] that also define the partition step's split (the same held-out data).
_SHARED_SPLIT = ("test_sessions", "test_fraction", "alphas", "cv", "seed")


def _run_partition(ctx: Context, subject: str) -> str:
    section = dict(ctx.cfg["partition"])
    pairs = section.pop("pairs", None)
    if not pairs:
        return "skipped: no partition.pairs configured"
    pairs = pairs if pairs == "all" else [tuple(p) for p in pairs]
    for key in _SHARED_SPLIT:
        if key in ctx.cfg["encode"]:
            section.setdefault(key, ctx.cfg["encode"][key])
    # reuse the single-model fits; with a noise ceiling, also scores as fractions of it. The permute
    # step's significance is not used: a partition then does not depend on the null's settings
    for key, name in (("results", "encoding"), ("ceiling", "noise_ceiling")):
        path = ctx.path(name, subject)
        if stores.is_complete(path):
            found = stores.open_results(path)
            section[key] = found["noise_ceiling"] if key == "ceiling" else found
    partition(ctx.features(), ctx.responses(subject), ctx.path("partition", subject), pairs=pairs,
              client=ctx.client, **section)
    return "complete"


def _run_report(ctx: Context, subject: None) -> str:
    path = Path(ctx.cfg["report"].get("path") or ctx.path("report"))
    write_report(ctx.out, path, config=ctx.cfg)
    ctx.console.print(f"report: {path}")
    return "complete"


@dataclass(frozen=True)
class StepSpec:
    """One unit of the pipeline: what it runs, per subject or once, on which settings it depends."""

    key: str
    step: str
    run: Callable[[Context, Any], str]
    sections: tuple[str, ...]
    output: str | None
    per_subject: bool


#: The pipeline's units of work, in the order they run.
STEP_TABLE: tuple[StepSpec, ...] = (
    StepSpec("extract", "extract", _run_extract, ("extract",), "features", False),
    StepSpec("ingest", "ingest", _run_ingest, ("ingest",), "responses", True),
    StepSpec("noise_ceiling", "ingest", _run_noise_ceiling, ("ingest",), "noise_ceiling", True),
    StepSpec("rsa", "rsa", _run_rsa, ("extract", "rsa"), "rsa", False),
    StepSpec("encode", "encode", _run_encode, ("extract", "ingest", "encode"), "encoding", True),
    StepSpec("permute", "permute", _run_permute, ("extract", "ingest", "encode", "permute"), "permutation", True),
    StepSpec("task_similarity", "permute", _run_task_similarity, ("extract", "ingest", "encode", "permute"),
             "task_similarity", False),
    StepSpec("partition", "partition", _run_partition, ("extract", "ingest", "encode", "partition"), "partition", True),
    StepSpec("report", "report", _run_report, (), None, False),
)


#: Revisions of each section's methods, from 1. A step whose sections' methods were revised
#: after its outputs were written is recomputed (and so is what follows it). Raise a section's
#: revision with any change that alters its results. Revision 1 leaves the digest as it was
#: before revisions existed, so earlier runs of unrevised steps are still reused.
#: rsa 2: ties within 2**-42 merged, euclidean recomputed where the Gram identity cancels.
#: encode 2: CV residuals summed in float64; each image's training presentations in its majority
#: fold; GCV residuals as sums of positive terms (features >= trials).
#: encode 3: only the eigen-directions a fit on n centered rows can use (a fold's null space no
#: longer amplifies float32 rounding by 1/alpha); the refit projects with X V rotated in float64.
#: permute 2: R² p-values from float64 sums (they equal a brute-force loop).
METHOD_REVISIONS: dict[str, int] = {"extract": 1, "ingest": 1, "rsa": 2, "encode": 3, "permute": 2, "partition": 1}


def _revisions(sections: Sequence[str]) -> dict[str, int]:
    return {s: METHOD_REVISIONS[s] for s in sections if METHOD_REVISIONS[s] > 1}


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _inputs(ctx: Context, sections: Sequence[str], subject: str | None) -> dict[str, Any]:
    """Fingerprints of the step's input files, so that an input edited in place invalidates it."""
    found: dict[str, Any] = {}
    extract, ingest = ctx.cfg["extract"], ctx.cfg["ingest"]
    if "extract" in sections:
        if "images" in extract:
            found["images"] = ctx.fingerprint("images", lambda: find_images(extract["images"]))
        elif stores.is_complete(ctx.path("features")):
            found["features_created"] = _store_identity(ctx, "features", ctx.path("features"))
    if "ingest" in sections and subject is not None:
        if "root" in ingest:
            found["bold"] = ctx.fingerprint(f"bold/{subject}", lambda: _bold_files(ingest, subject))
        elif stores.is_complete(ctx.path("responses", subject)):
            found["responses_created"] = _store_identity(ctx, f"responses/{subject}", ctx.path("responses", subject))
    return found


def _store_identity(ctx: Context, name: str, path: Path) -> str:
    """A given store's identity: its creation stamp, or for a store written outside neurotask
    (no stamp, e.g. ``Dataset.to_zarr``), the fingerprint of its files, so an edit in place counts."""
    created = stores.open_store(path).attrs.get("created")
    if created is not None:
        return str(created)
    return ctx.fingerprint(name, lambda: sorted(p for p in path.rglob("*") if p.is_file()))


def _bold_files(ingest: Mapping[str, Any], subject: str) -> list[Path]:
    """What an ingest of ``subject`` reads: the tree's files and a mask file given in the config."""
    options = {key: ingest[key] for key in ("betas", "preprocessed", "tr") if key in ingest}
    files = input_files(ingest["root"], subject, ingest.get("release", 2), **options)
    mask = ingest.get("mask")
    return files + [Path(mask)] if isinstance(mask, str) and Path(mask).is_file() else files


Plan = Iterator[tuple[str, "str | None", list[Path], Callable[[], str]]]


def plan(steps: Sequence[str], ctx: Context) -> Plan:
    """The units of work of ``steps``: ``(key, settings digest, output paths, action)``.

    The digest covers the settings of the unit's own section and of every section it depends on,
    the models, the subjects (for the cross-subject similarity), its inputs' fingerprints and the
    revisions of those sections' methods (:data:`METHOD_REVISIONS`), so changing an upstream
    setting, an input file or a method recomputes what follows.
    """
    for spec in STEP_TABLE:
        if spec.step not in steps:
            continue
        for subject in (ctx.cfg["subjects"] if spec.per_subject else [None]):
            key = f"{spec.key}/{subject}" if subject else spec.key
            if spec.output is None:  # the report: always written anew
                yield key, None, [], (lambda s=spec: s.run(ctx, None))
                continue
            settings = {s: ctx.cfg[s] for s in spec.sections}
            settings.update(models=ctx.cfg["models"], subject=subject, unit=spec.key,
                            inputs=_inputs(ctx, spec.sections, subject))
            if not spec.per_subject and "encode" in spec.sections:
                settings["subjects"] = ctx.cfg["subjects"]
            if revisions := _revisions(spec.sections):
                settings["methods"] = revisions
            owned = (spec.key != "extract" or "images" in ctx.cfg["extract"]) and \
                (spec.key != "ingest" or "root" in ctx.cfg["ingest"])
            paths = [ctx.path(spec.output, subject)] if owned else []
            yield key, _digest(settings), paths, (lambda s=spec, subj=subject: s.run(ctx, subj))
