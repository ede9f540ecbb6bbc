"""Report sections: run status, RSA, brain-derived task similarity, variance partitioning, provenance, config."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from neurotask.plotting import compare_trees, plot_dendrogram, plot_similarity, plot_variance_partition
from neurotask.report._html import Page, table

__all__ = ["STEP_ORDER", "status", "reason", "subjects", "rsa", "task_similarity", "partition", "provenance", "config"]

#: The pipeline's steps in the order they run; the status table follows it.
STEP_ORDER = ("extract", "ingest", "noise_ceiling", "rsa", "encode", "permute", "task_similarity", "partition", "report")


def subjects(data: Mapping[str, Any], name: str) -> dict[str, xr.Dataset]:
    """Per subject, its ``name`` result (e.g. ``"encoding"``), for the subjects that have one."""
    return {s: entry[name] for s, entry in (data.get("subjects") or {}).items() if entry.get(name) is not None}


def _step_rank(key: str) -> tuple[int, str]:
    step, _, subject = key.partition("/")
    return (STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER), subject)


def status(page: Page, data: Mapping[str, Any]) -> None:
    """One row per step of the run, in pipeline order."""
    ledger = data.get("ledger") or {}
    if not ledger:
        page.missing("status", "no pipeline.json (the report was written from objects, not a pipeline run)")
        return
    rows = [{"step": key, "status": record.get("note") or record.get("status", ""), "seconds": float(record.get("seconds", np.nan))}
            for key, record in sorted(ledger.items(), key=lambda item: _step_rank(item[0])) if key != "report"]
    page.add("status", table(rows, digits=3))


def reason(data: Mapping[str, Any], *steps: str) -> str:
    """Why a section has no data: the first of ``steps`` the ledger records as skipped."""
    ledger = data.get("ledger") or {}
    for step in steps:
        for name, record in ledger.items():
            if name.split("/")[0] == step and str(record.get("note", "")).startswith("skipped"):
                return f"{name} was {record['note']}"
    return "not computed in this run"


def rsa(page: Page, data: Mapping[str, Any]) -> None:
    """Model × model RSA and its dendrogram, per image subset."""
    result = data.get("rsa")
    if result is None:
        page.missing("rsa", reason(data, "rsa", "extract"))
        return
    attrs = json.loads(result.attrs.get("parameters", "{}") or "{}").get("rsa", {})
    page.note("rsa", f"RDM: {attrs.get('rdm_method', 'correlation')}; RDM comparison: {attrs.get('compare', 'spearman')}; "
              "dendrogram: average linkage on 1 − similarity.")
    for subset in map(str, result["subset"].values):
        sim = result["similarity"].sel(subset=subset).load()
        n = int(result["n_images"].sel(subset=subset)) if "n_images" in result else None
        label = f"{subset} ({n} images)" if n else subset
        page.add("rsa", f"<h3>{html.escape(label)}</h3><div class=row>")
        page.figure("rsa", f"model × model RSA, {label}", lambda s=sim, t=label: plot_similarity(s, title=f"RSA: {t}"))
        if sim.sizes["model"] > 1:
            page.figure("rsa", f"dendrogram, {label}", lambda s=sim, t=label: plot_dendrogram(s, title=f"RSA tree: {t}"))
        page.add("rsa", "</div>")
        if sim.sizes["model"] < 2:
            page.note("rsa", "One model: no tree to draw.")


def consistency(per_subject: xr.DataArray) -> xr.DataArray:
    """Pearson r between subjects' task-similarity matrices (upper triangles, diagonal excluded).

    Parameters
    ----------
    per_subject : xarray.DataArray, dims (subject, model, model_)

    Returns
    -------
    xarray.DataArray, dims (subject, subject_)
    """
    n = per_subject.sizes["model"]
    upper = np.triu_indices(n, k=1)
    vectors = np.stack([np.asarray(m, dtype=float)[upper] for m in per_subject.transpose("subject", "model", "model_").values])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(vectors) if vectors.shape[1] > 1 else np.full((len(vectors),) * 2, np.nan)
    names = [str(s) for s in per_subject["subject"].values]
    return xr.DataArray(np.atleast_2d(r), dims=("subject", "subject_"), coords={"subject": names, "subject_": names},
                        attrs={"long_name": "Pearson r between subjects' task-similarity matrices (off-diagonal)"})


def task_similarity(page: Page, data: Mapping[str, Any]) -> None:
    """The group (mean) brain-derived task similarity, the subjects' consistency, and both trees."""
    result = data.get("task_similarity")
    if result is None:
        page.missing("task-similarity", reason(data, "task_similarity", "permute", "encode"))
        return
    mean = (result["mean"] if "mean" in result else next(iter(result.data_vars.values()))).load()
    page.note("task-similarity", "Per model, the vector of test Pearson r over voxels (non-significant voxels set to 0); "
              "similarity = cosine between models' vectors; group = mean over subjects.")
    page.add("task-similarity", "<div class=row>")
    page.figure("task-similarity", "brain-derived task similarity (mean over subjects)",
                lambda: plot_similarity(mean, title="brain-derived task similarity"))
    rsa_all = _rsa_on_all_images(data, mean)
    if rsa_all is not None:
        page.figure("task-similarity", "RSA tree (left) vs brain-derived tree (right)",
                    lambda: compare_trees(rsa_all, mean, titles=("model RSA", "brain")))
    elif mean.sizes["model"] > 1:
        page.figure("task-similarity", "brain-derived dendrogram", lambda: plot_dendrogram(mean))
    page.add("task-similarity", "</div>")
    if mean.sizes["model"] < 2:
        page.note("task-similarity", "One model: no tree to draw.")
    shown = set(map(str, mean["model"].values))
    flagged = [str(m) for m in mean.attrs.get("models_without_significant", []) if str(m) in shown]
    if flagged:
        page.note("task-similarity", f"Models without any significant voxel (in at least one subject): {', '.join(flagged)}; "
                  "their similarity there is 0 to the other models and 1 to themselves.")
    if "similarity" in result and "subject" in result["similarity"].dims and result.sizes["subject"] > 1:
        r = consistency(result["similarity"].load())
        names = [str(s) for s in r["subject"].values]
        off = r.values[~np.eye(len(names), dtype=bool)]
        page.note("task-similarity", f"Consistency across {len(names)} subjects: mean Pearson r between subjects' matrices "
                  f"{np.nanmean(off):.3f} (off-diagonal entries).")
        page.add("task-similarity", table([{"subject": a, **{b: float(r.sel(subject=a, subject_=b)) for b in names}} for a in names], digits=3))
    else:
        page.note("task-similarity", "One subject: no across-subject consistency to show.")


def _rsa_on_all_images(data: Mapping[str, Any], brain: xr.DataArray) -> xr.DataArray | None:
    """The RSA similarity on all images when it holds the brain similarity's models (at least 2), else None."""
    result = data.get("rsa")
    if result is None or "all" not in set(map(str, result["subset"].values)) or brain.sizes["model"] < 2:
        return None
    rsa_all = result["similarity"].sel(subset="all").load()
    return rsa_all if sorted(map(str, rsa_all["model"].values)) == sorted(map(str, brain["model"].values)) else None


def _summary(vp: xr.Dataset, pair: str, name: str) -> float | str:
    """A pair's summary of ``name``: the library's ``<name>_mean``; in words when no voxel qualifies."""
    if f"{name}_mean" not in vp:
        return float(vp[name].sel(pair=pair).mean()) if name in vp else float("nan")
    value = float(vp[f"{name}_mean"].sel(pair=pair))
    if np.isfinite(value):
        return value
    return "no qualifying voxel"


def _counts(vp: xr.Dataset, pair: str) -> dict[str, int]:
    """The qualifying-voxel counts the partition records per pair (``n_voxels_*`` variables on pair)."""
    prefix = "n_voxels_"
    return {f"voxels ({name[len(prefix):].replace('_', ' ')})": int(vp[name].sel(pair=pair))
            for name in vp.data_vars if name.startswith(prefix) and vp[name].dims == ("pair",)}


def partition(page: Page, data: Mapping[str, Any]) -> None:
    """Unique, shared and transfer per pair, summarized over the voxels where each is meaningful."""
    parts = subjects(data, "partition")
    if not parts:
        page.missing("partition", reason(data, "partition", "encode"))
        return
    page.note("partition", "unique(A) = R²(A∪B) − R²(B); shared = R²(A) + R²(B) − R²(A∪B); transfer(A→B) = shared / R²(B).")
    names = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared", "transfer_a_to_b", "transfer_b_to_a")
    for subject, vp in parts.items():
        vp = vp.drop_vars([v for v in vp.data_vars if "voxel" in vp[v].dims]).load() if "voxel" in vp.dims else vp.load()
        rule = vp.attrs.get("summary_rule")
        page.add("partition", f"<h3>{html.escape(subject)}</h3>")
        page.note("partition", f"Summaries: {rule}" if rule else "Summaries: means over all voxels (no summary rule recorded).")
        rows = [{"pair": str(p), **{n: _summary(vp, str(p), n) for n in names}, **_counts(vp, str(p))} for p in vp["pair"].values]
        if all(f"{n}_mean" in vp for n in ("unique_a", "shared", "unique_b", "r2_ab", "transfer_a_to_b", "transfer_b_to_a")):
            page.figure("partition", f"{subject}: unique and shared variance, transfer", lambda v=vp: plot_variance_partition(v))
        page.add("partition", table(rows, digits=3))


def provenance(page: Page, data: Mapping[str, Any]) -> None:
    """Per store: version, creation time, sizes, parameters and inputs; the features' and responses' attrs."""
    found = [("features", data.get("features")), ("rsa", data.get("rsa")), ("task_similarity", data.get("task_similarity"))]
    for subject, entry in (data.get("subjects") or {}).items():
        found += [(f"{name}-{subject}", value) for name, value in entry.items() if isinstance(value, (xr.Dataset, xr.DataArray))]
    rows = [{"store": name, "neurotask": str(store.attrs.get("neurotask_version", "")), "created": str(store.attrs.get("created", "")),
             "sizes": ", ".join(f"{d}={n}" for d, n in store.sizes.items()),
             "parameters": str(store.attrs.get("parameters", ""))[:300], "inputs": str(store.attrs.get("inputs", ""))[:300]}
            for name, store in found if store is not None]
    if not rows:
        page.missing("provenance", "no stores were found")
        return
    page.add("provenance", table(rows))
    skip = ("parameters", "inputs", "pipeline_config")
    features = data.get("features")
    if features is not None:
        extra = {k: v for k, v in features.attrs.items() if k not in (*skip, "created", "neurotask_version")}
        page.add("provenance", "<h3>features store attributes</h3><pre>" + html.escape(json.dumps(extra, indent=1, default=str)[:6000]) + "</pre>")
    for subject, entry in (data.get("subjects") or {}).items():
        if entry.get("responses") is not None:
            keep = {k: v for k, v in entry["responses"].attrs.items() if k not in skip}
            page.add("provenance", f"<h3>responses {html.escape(subject)}</h3><pre>"
                     + html.escape(json.dumps(keep, indent=1, default=str)[:6000]) + "</pre>")


def config(page: Page, settings: Mapping[str, Any] | None) -> None:
    """The configuration in full, as TOML."""
    import tomli_w

    if not settings:
        page.missing("config", "no configuration was given")
        return
    try:
        text = tomli_w.dumps(_toml_ready(settings))
    except (TypeError, ValueError):
        text = json.dumps(settings, indent=1, default=str)
    page.add("config", "<pre>" + html.escape(text) + "</pre>")


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return value
