"""One self-contained HTML report of a neurotask analysis (figures embedded, no network assets).

Sections: RSA (all images and each subset, matrix + dendrogram), brain-derived task similarity
beside the RSA tree, R² and r per model, significant-voxel counts, brain maps, variance
partitioning and transfer, noise ceiling, data provenance, and the config. A section whose data
is missing says so (and why, when the pipeline recorded a reason).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from neurotask.report import _figures

__all__ = ["write", "SECTIONS"]

#: Report sections, in order: anchor id → heading.
SECTIONS: dict[str, str] = {
    "status": "Run status",
    "rsa": "RSA across models",
    "task-similarity": "Brain-derived task similarity",
    "encoding": "Encoding: R² and r per model",
    "significance": "Significant voxels",
    "brain-maps": "Brain maps",
    "partition": "Variance partitioning and transfer",
    "noise-ceiling": "Noise ceiling",
    "provenance": "Data provenance",
    "config": "Configuration",
}


# --------------------------------------------------------------------------------------------
# html pieces


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)  # figures from neurotask.plotting may be pyplot-managed


class _Page:
    """Collects sections and the notes about what fell back or failed."""

    def __init__(self) -> None:
        self.sections: dict[str, list[str]] = {key: [] for key in SECTIONS}
        self.notes: list[str] = []

    def add(self, section: str, *parts: str) -> None:
        self.sections[section].extend(parts)

    def figure(self, section: str, caption: str, draw: Callable[[], Figure], fallback: Callable[[], Figure] | None = None) -> None:
        try:
            fig = draw()
        except Exception as error:  # a figure's failure must not lose the rest of the report
            if fallback is None:
                self.add(section, _missing(f"figure '{caption}' failed: {type(error).__name__}: {error}"))
                return
            self.notes.append(f"{caption}: neurotask.plotting failed ({type(error).__name__}: {error}); a plain figure is shown")
            fig = fallback()
        self.add(section, f"<figure>{_png(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def missing(self, section: str, why: str) -> None:
        self.add(section, _missing(why))


def _missing(why: str) -> str:
    return f'<p class="missing">Not available: {html.escape(why)}</p>'


def _table(rows: list[dict[str, Any]], *, digits: int = 4) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f'<th class="{"text" if isinstance(rows[0][c], str) else ""}">{html.escape(str(c))}</th>' for c in columns)

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return f"<td>{value:.{digits}g}</td>" if np.isfinite(value) else "<td>–</td>"
        if isinstance(value, str):
            return f'<td class="text">{html.escape(value)}</td>'
        return f"<td>{html.escape(str(value))}</td>"

    body = "".join("<tr>" + "".join(cell(r[c]) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plotting(name: str) -> Callable[..., Figure] | None:
    try:
        import neurotask.plotting as plotting
    except ImportError:
        return None
    return getattr(plotting, name, None)


def _draw(name: str, fallback: Callable[[], Figure], *args: Any, **kwargs: Any) -> tuple[Callable[[], Figure], Callable[[], Figure] | None]:
    """The plotting function ``name`` applied to the arguments, else the fallback figure."""
    function = _plotting(name)
    if function is None:
        return fallback, None
    return (lambda: function(*args, **kwargs)), fallback


# --------------------------------------------------------------------------------------------
# sections


def _status(page: _Page, data: Mapping[str, Any]) -> None:
    ledger = data.get("ledger") or {}
    if not ledger:
        page.missing("status", "no pipeline.json (the report was written from objects, not a pipeline run)")
        return
    rows = []
    for key, record in ledger.items():
        if key == "report":  # being written now
            continue
        note = record.get("note") or record.get("status", "")
        rows.append({"step": key, "status": note, "seconds": float(record.get("seconds", float("nan")))})
    page.add("status", _table(rows, digits=3))


def _reason(data: Mapping[str, Any], *keys: str) -> str:
    ledger = data.get("ledger") or {}
    for key in keys:
        for name, record in ledger.items():
            if name.split("/")[0] == key and str(record.get("note", "")).startswith("skipped"):
                return f"{name} was {record['note']}"
    return "not computed in this run"


def _rsa(page: _Page, data: Mapping[str, Any]) -> None:
    rsa = data.get("rsa")
    if rsa is None:
        page.missing("rsa", _reason(data, "rsa", "extract"))
        return
    attrs = json.loads(rsa.attrs.get("parameters", "{}")).get("rsa", {})
    page.add("rsa", f'<p class="note">RDM: {html.escape(str(attrs.get("rdm_method", "correlation")))}; '
             f'RDM comparison: {html.escape(str(attrs.get("compare", "spearman")))}; dendrogram: average linkage on 1 − similarity.</p>')
    for subset in map(str, rsa["subset"].values):
        sim = rsa["similarity"].sel(subset=subset).load()
        n = int(rsa["n_images"].sel(subset=subset)) if "n_images" in rsa else None
        label = f"{subset} ({n} images)" if n else subset
        page.add("rsa", f"<h3>{html.escape(label)}</h3><div class=row>")
        page.figure("rsa", f"model × model RSA, {label}", *_draw("plot_similarity", lambda: _figures.heatmap(sim, f"RSA: {label}"), sim, title=f"RSA: {label}"))
        page.figure("rsa", f"dendrogram, {label}", *_draw("plot_dendrogram", lambda: _figures.dendrogram(sim, f"RSA dendrogram: {label}"), sim))
        page.add("rsa", "</div>")


def _task_similarity(page: _Page, data: Mapping[str, Any]) -> None:
    ts = data.get("task_similarity")
    if ts is None:
        page.missing("task-similarity", _reason(data, "task_similarity", "permute", "encode"))
        return
    mean = ts["mean"].load()
    subjects = [str(s) for s in ts["subject"].values] if "subject" in ts.dims else []
    undefined = [str(m) for m in mean["model"].values if bool(mean.sel(model=m).isnull().all())]
    if undefined:  # a model without significant voxels has no direction: its similarities are NaN
        page.add("task-similarity", _missing(f"models without significant voxels (similarity undefined): {', '.join(undefined)}"))
        kept = [str(m) for m in mean["model"].values if str(m) not in undefined]
        if len(kept) < 3:
            page.add("task-similarity", _missing("fewer than 3 models have significant voxels: no matrix or tree to show"))
            return
        mean = mean.sel(model=kept, model_=kept)
    page.add("task-similarity", f'<p class="note">Cosine similarity of the models\' voxelwise test r (non-significant '
             f'voxels set to 0), mean over subjects {", ".join(subjects)}; average linkage.</p><div class=row>')
    page.figure("task-similarity", "brain-derived task similarity", *_draw("plot_similarity", lambda: _figures.heatmap(mean, "brain-derived task similarity"), mean, title="brain-derived task similarity"))
    rsa = data.get("rsa")
    if rsa is not None and "all" in rsa["subset"].values:
        rsa_all = rsa["similarity"].sel(subset="all").load()
        common = [m for m in map(str, mean["model"].values) if m in set(map(str, rsa_all["model"].values))]
        rsa_all, brain = rsa_all.sel(model=common, model_=common), mean.sel(model=common, model_=common)
        function = _plotting("compare_trees")
        if function is not None:
            page.figure("task-similarity", "RSA tree (left) beside the brain-derived tree (right)", lambda: function(rsa_all, brain),
                        lambda: _figures.dendrogram(brain, "brain-derived dendrogram"))
        else:
            page.figure("task-similarity", "RSA dendrogram (all images)", lambda: _figures.dendrogram(rsa_all, "RSA dendrogram (all images)"))
            page.figure("task-similarity", "brain-derived dendrogram", lambda: _figures.dendrogram(brain, "brain-derived dendrogram"))
    else:
        page.figure("task-similarity", "brain-derived dendrogram", lambda: _figures.dendrogram(mean, "brain-derived dendrogram"))
    page.add("task-similarity", "</div>")


def _subjects(data: Mapping[str, Any], name: str) -> dict[str, xr.Dataset]:
    return {s: entry[name] for s, entry in (data.get("subjects") or {}).items() if name in entry}


def _encoding(page: _Page, data: Mapping[str, Any]) -> None:
    fits = _subjects(data, "encoding")
    if not fits:
        page.missing("encoding", _reason(data, "encode", "ingest", "extract"))
        return
    perms = _subjects(data, "permutation")
    rows, r2_means, r_means = [], [], []
    for subject, fit in fits.items():
        r2 = fit["r2"].mean("voxel").load()
        r = fit["r"].mean("voxel").load()
        r2_means.append(r2.expand_dims(subject=[subject]))
        r_means.append(r.expand_dims(subject=[subject]))
        significant = perms[subject]["significant"].load() if subject in perms else None
        for model in map(str, fit["model"].values):
            row = {"subject": subject, "model": model, "mean R²": float(r2.sel(model=model)), "mean r": float(r.sel(model=model))}
            if significant is not None and model in significant["model"].values:
                mask = significant.sel(model=model)
                row["mean R² (significant voxels)"] = float(fit["r2"].sel(model=model).where(mask).mean()) if bool(mask.any()) else float("nan")
            rows.append(row)
        split = fit.attrs.get("split")
        if split:
            page.add("encoding", f'<p class="note">{html.escape(subject)} split: <code>{html.escape(str(split))}</code></p>')
    page.add("encoding", "<div class=row>")
    r2_all = xr.concat(r2_means, "subject", join="outer")
    r_all = xr.concat(r_means, "subject", join="outer")
    page.figure("encoding", "mean test R² over voxels, per model", lambda: _figures.bars(r2_all, "mean test R² per model", "R²"))
    page.figure("encoding", "mean test Pearson r over voxels, per model", lambda: _figures.bars(r_all, "mean test r per model", "r"))
    page.add("encoding", "</div>", _table(rows))


def _significance(page: _Page, data: Mapping[str, Any]) -> None:
    perms = _subjects(data, "permutation")
    if not perms:
        page.missing("significance", _reason(data, "permute", "encode"))
        return
    rows, counts = [], []
    for subject, perm in perms.items():
        count = perm["significant"].sum("voxel").load()
        counts.append(count.expand_dims(subject=[subject]))
        n_voxels = perm.sizes["voxel"]
        for model in map(str, perm["model"].values):
            rows.append({"subject": subject, "model": model, "significant voxels": int(count.sel(model=model)),
                         "of voxels": int(n_voxels)})
        details = {k: perm.attrs[k] for k in ("n_permutations", "q", "method", "statistic", "seed") if k in perm.attrs}
        if details:
            page.add("significance", f'<p class="note">{html.escape(subject)}: {html.escape(json.dumps(details, default=str))}</p>')
    all_counts = xr.concat(counts, "subject", join="outer").fillna(0)
    first = next(iter(perms.values()))
    page.figure("significance", "significant voxels per model (permutation test, BH-FDR)",
                *_draw("plot_significant_counts", lambda: _figures.bars(all_counts, "significant voxels per model", "voxels"), first))
    page.add("significance", _table(rows))


def _brain_maps(page: _Page, data: Mapping[str, Any]) -> None:
    fits = _subjects(data, "encoding")
    if not fits:
        page.missing("brain-maps", _reason(data, "encode", "ingest"))
        return
    responses = _subjects(data, "responses")
    for subject, fit in fits.items():
        singles = [m for m in map(str, fit["model"].values) if "+" not in m]
        r2 = fit["r2"].sel(model=singles).load()
        best = r2.max("model")
        winner = r2.fillna(-np.inf).argmax("model")
        shape = None
        resp = responses.get(subject)
        if resp is not None and "volume_shape" in resp.attrs:
            shape = _json_list(resp.attrs["volume_shape"])
        reference = resp if resp is not None else fit
        page.add("brain-maps", f"<h3>{html.escape(subject)}</h3><div class=row>")
        page.figure("brain-maps", f"{subject}: best test R² over models per voxel",
                    *_draw("plot_brain_map", lambda b=best, s=shape: _figures.projections(b, "best R² per voxel", shape=s),
                           best, reference, title=f"{subject}: best R²"))
        page.figure("brain-maps", f"{subject}: winning model per voxel (largest R²)",
                    *_draw("plot_winning_model", lambda w=winner, b=best, s=shape: _figures.projections(w, "winning model", shape=s, categories=singles, rank=b),
                           fit.sel(model=singles)))
        page.add("brain-maps", "</div>")


def _json_list(value: Any) -> list[int]:
    return [int(v) for v in (json.loads(value) if isinstance(value, str) else value)]


def _partition(page: _Page, data: Mapping[str, Any]) -> None:
    parts = _subjects(data, "partition")
    if not parts:
        page.missing("partition", _reason(data, "partition", "encode"))
        return
    page.add("partition", '<p class="note">unique(A) = R²(A∪B) − R²(B); shared = R²(A) + R²(B) − R²(A∪B); '
             "transfer(A→B) = shared / R²(B). Means over voxels.</p>")
    for subject, vp in parts.items():
        table = _partition_means(vp)
        rows = [{"pair": str(p), **{v: float(table[v].sel(pair=p)) for v in table.data_vars}} for p in table["pair"].values]
        page.add("partition", f"<h3>{html.escape(subject)}</h3>")
        page.figure("partition", f"{subject}: unique and shared variance, transfer",
                    *_draw("plot_variance_partition", lambda t=table, s=subject: _figures.stacked_partition(t, s), vp))
        page.add("partition", _table(rows))


def _partition_means(vp: xr.Dataset) -> xr.Dataset:
    """Per pair: the library's ``*_mean`` summaries, else means over voxels with ratios of means.

    Ratios (relative unique, transfer) are taken between mean R²s: a mean of per-voxel ratios
    is dominated by voxels whose denominator is near zero.
    """
    additive = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared")
    out = {}
    for name in additive:
        if f"{name}_mean" in vp:
            out[name] = vp[f"{name}_mean"]
        elif name in vp:
            out[name] = vp[name].mean("voxel") if "voxel" in vp[name].dims else vp[name]
    ratios = {"relative_unique_a": ("unique_a", "r2_ab"), "relative_unique_b": ("unique_b", "r2_ab"),
              "transfer_a_to_b": ("shared", "r2_b"), "transfer_b_to_a": ("shared", "r2_a")}
    for name, (numerator, denominator) in ratios.items():
        if f"{name}_mean" in vp:
            out[name] = vp[f"{name}_mean"]
        elif numerator in out and denominator in out:
            out[name] = out[numerator] / out[denominator]
    table = xr.Dataset(out).reset_coords(drop=True).load()
    if "pair" not in table.dims:
        table = table.expand_dims(pair=["A+B"])
    return table


def _noise_ceiling(page: _Page, data: Mapping[str, Any]) -> None:
    ceilings = _subjects(data, "noise_ceiling")
    if not ceilings:
        page.missing("noise-ceiling", _reason(data, "noise_ceiling", "ingest"))
        return
    fits = _subjects(data, "encoding")
    page.add("noise-ceiling", "<div class=row>")
    rows = []
    for subject, ceiling in ceilings.items():
        values = next(iter(ceiling.data_vars.values())).load()
        page.figure("noise-ceiling", f"{subject}: split-half noise ceiling (Spearman–Brown)",
                    lambda v=values, s=subject: _figures.histogram(np.asarray(v.values, float), f"{s}: noise ceiling", "ceiling"))
        row = {"subject": subject, "voxels": int(values.size), "mean ceiling": float(values.mean())}
        if subject in fits:
            best = fits[subject]["r2"].max("model").load()
            if best.sizes["voxel"] == values.sizes["voxel"]:
                ratio = (best / values.where(values > 0)).values
                row["median best R² / ceiling"] = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else float("nan")
        rows.append(row)
    page.add("noise-ceiling", "</div>", _table(rows))


def _provenance(page: _Page, data: Mapping[str, Any]) -> None:
    rows = []
    stores = [("features", data.get("features")), ("rsa", data.get("rsa")), ("task_similarity", data.get("task_similarity"))]
    for subject, entry in (data.get("subjects") or {}).items():
        stores += [(f"{name}-{subject}", value) for name, value in entry.items()]
    for name, store in stores:
        if store is None:
            continue
        attrs = store.attrs
        rows.append({"store": name, "neurotask": str(attrs.get("neurotask_version", "")), "created": str(attrs.get("created", "")),
                     "sizes": ", ".join(f"{d}={n}" for d, n in store.sizes.items()),
                     "parameters": str(attrs.get("parameters", ""))[:300], "inputs": str(attrs.get("inputs", ""))[:300]})
    if not rows:
        page.missing("provenance", "no stores were found")
        return
    page.add("provenance", _table(rows))
    features = data.get("features")
    if features is not None:
        extra = {k: v for k, v in features.attrs.items() if k not in ("parameters", "inputs", "created", "neurotask_version", "pipeline_config")}
        page.add("provenance", "<h3>features store attributes</h3><pre>" + html.escape(json.dumps(extra, indent=1, default=str)[:6000]) + "</pre>")
    for subject, entry in (data.get("subjects") or {}).items():
        resp = entry.get("responses")
        if resp is not None:
            keep = {k: v for k, v in resp.attrs.items() if k not in ("parameters", "inputs", "pipeline_config")}
            page.add("provenance", f"<h3>responses {html.escape(subject)}</h3><pre>" + html.escape(json.dumps(keep, indent=1, default=str)[:6000]) + "</pre>")


def _config(page: _Page, config: Mapping[str, Any] | None) -> None:
    if not config:
        page.missing("config", "no configuration was given")
        return
    try:
        import tomli_w

        text = tomli_w.dumps(_toml_ready(config))
    except (ImportError, TypeError, ValueError):
        text = json.dumps(config, indent=1, default=str)
    page.add("config", "<pre>" + html.escape(text) + "</pre>")


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# entry point


def _collect(results: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(results, Mapping):
        from neurotask.pipeline import open_outputs

        return open_outputs(results)
    data = dict(results)
    rsa = data.get("rsa")
    if isinstance(rsa, Mapping) and not isinstance(rsa, xr.Dataset):  # {subset name: similarity}
        rsa = xr.concat([s.reset_coords(drop=True).expand_dims(subset=[n]) for n, s in rsa.items()], "subset")
    if isinstance(rsa, xr.DataArray):
        rsa = (rsa if "subset" in rsa.dims else rsa.reset_coords(drop=True).expand_dims(subset=["all"])).to_dataset(name="similarity")
    if rsa is not None:
        data["rsa"] = rsa
    if isinstance(data.get("task_similarity"), xr.DataArray):
        data["task_similarity"] = xr.Dataset({"mean": data["task_similarity"].reset_coords(drop=True)})
    return data


def write(
    results: str | os.PathLike[str] | Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    title: str | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Write the analysis report as one self-contained HTML file.

    Parameters
    ----------
    results : path or mapping
        A pipeline output directory (read with :func:`neurotask.pipeline.open_outputs`), or a
        mapping of the same shape: ``rsa`` (a ``(model, model_)`` similarity, a dict of them by
        image subset, or a Dataset with ``similarity (subset, model, model_)``),
        ``task_similarity`` (``(model, model_)``), ``features``, ``subjects`` mapping each
        subject to ``encoding``, ``permutation``, ``partition``, ``noise_ceiling``, ``responses``;
        optional ``ledger`` (step statuses) and ``config``.
    path : path
        The HTML file to write.
    config : mapping, optional
        The analysis configuration, shown in full (default: the one found in ``results``).
    title : str, optional
        Page title (default: the config's ``title``).
    labels : list of str, optional
        Notices shown at the top, e.g. ``["random-weight encoders"]`` (default: the config's).

    Returns
    -------
    pathlib.Path
        The written file: no external assets, figures as base64 PNG.

    Examples
    --------
    >>> nt.report.write("results/", "results/report.html")  # doctest: +SKIP
    """
    from neurotask import __version__

    data = _collect(results)
    config = dict(config or data.get("config") or {})
    page = _Page()
    _status(page, data)
    for build in (_rsa, _task_similarity, _encoding, _significance, _brain_maps, _partition, _noise_ceiling, _provenance):
        try:
            build(page, data)
        except Exception as error:  # one broken section must not lose the report
            section = build.__name__.strip("_").replace("_", "-")
            section = section if section in page.sections else "status"
            page.missing(section, f"this section failed: {type(error).__name__}: {error}")
    _config(page, config)
    labels = list(labels if labels is not None else config.get("labels", []))
    banner = "".join(f'<div class="banner"><strong>Note:</strong> {html.escape(label)}</div>' for label in labels)
    if page.notes:
        banner += '<div class="banner">' + "<br>".join(html.escape(n) for n in page.notes) + "</div>"
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(heading)}</h2>{"".join(page.sections[key])}</section>'
        for key, heading in SECTIONS.items()
    )
    nav = "".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading in SECTIONS.items())
    template = Template(resources.files("neurotask.report").joinpath("template.html").read_text(encoding="utf-8"))
    text = template.substitute(
        title=html.escape(title or config.get("title") or "neurotask report"),
        version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        out=html.escape(str(results) if not isinstance(results, Mapping) else "(objects)"),
        nav=nav,
        banner=banner,
        body=body,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
