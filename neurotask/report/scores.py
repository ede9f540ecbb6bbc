"""Report sections on scores: encoding R² (headline, distributions, ROIs), significance, noise ceiling, brain maps."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from neurotask.plotting import (
    plot_brain_map,
    plot_model_scores,
    plot_noise_ceiling,
    plot_r2_distribution,
    plot_significant_counts,
    plot_winning_model,
)
from neurotask.report._html import Page, table
from neurotask.report.sections import reason, subjects
from neurotask.report.truth import single_models

__all__ = ["encoding", "significance", "noise_ceiling", "brain_maps", "single_trial_ceiling"]

#: Best-R² maps hide voxels below this R² (noise voxels scatter just above 0).
MAP_THRESHOLD = 0.05
NOISE_R2 = ("Why R² is ≤ 0 on voxels without signal: R² is scored on held-out trials against their own mean, so a "
            "voxel the features cannot predict has expected R² ≤ 0 — any variance in its prediction (fitted to "
            "training noise) only adds error; only a constant prediction equal to the test mean scores 0.")


def single_trial_ceiling(ceiling: xr.DataArray) -> xr.DataArray:
    """The noise ceiling of single-trial test R²: ``c / (2 − c)`` from the Spearman–Brown ceiling ``c``.

    The ceiling ``c`` is the reliability of the mean of two presentations; test R² is scored on
    single trials, whose reliability (the R² of a perfect model) is Spearman–Brown stepped down
    from two presentations to one. On planted data it matches the planted R² (tested).
    """
    return (ceiling / (2 - ceiling)).where(ceiling > 0)


def _significant(data: Mapping[str, Any], subject: str, models: list[str]) -> xr.DataArray | None:
    perm = (data.get("subjects") or {}).get(subject, {}).get("permutation")
    if perm is None:
        return None
    # a model the test did not cover (e.g. a joint model fitted for partitioning only) has no significant voxel
    return perm["significant"].load().astype(bool).reindex(model=models, fill_value=False).transpose("model", "voxel")


def _ceiling(data: Mapping[str, Any], subject: str) -> xr.DataArray | None:
    ceiling = (data.get("subjects") or {}).get(subject, {}).get("noise_ceiling")
    if ceiling is None:
        return None
    return (ceiling["noise_ceiling"] if "noise_ceiling" in ceiling else next(iter(ceiling.data_vars.values()))).load()


def _headline(fit: xr.Dataset, significant: xr.DataArray | None, ceiling: xr.DataArray | None, models: list[str]) -> list[dict[str, Any]]:
    rows = []
    r2 = fit["r2"].sel(model=models).load()
    one = single_trial_ceiling(ceiling) if ceiling is not None and ceiling.sizes["voxel"] == r2.sizes["voxel"] else None
    for model in models:
        values = np.asarray(r2.sel(model=model).values, dtype=float)
        row: dict[str, Any] = {"model": model}
        if significant is not None:
            mask = np.asarray(significant.sel(model=model).values)
            row["significant voxels"] = int(mask.sum())
            row["mean R² (significant voxels)"] = float(np.nanmean(values[mask])) if mask.any() else "no significant voxel"
            if one is not None:
                ratio = values[mask] / np.asarray(one.values, dtype=float)[mask]
                row["median R² / ceiling (significant)"] = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else float("nan")
        row["mean R² (all voxels)"] = float(np.nanmean(values))
        row["mean r (all voxels)"] = float(fit["r"].sel(model=model).mean()) if "r" in fit else float("nan")
        rows.append(row)
    return rows


def _roi_rows(fit: xr.Dataset, significant: xr.DataArray | None, models: list[str]) -> list[dict[str, Any]]:
    """Per model and ROI: mean R² over the ROI's significant voxels (or all its voxels without a test)."""
    rois = np.asarray(fit["roi"].values).astype(str)
    names = [r for r in dict.fromkeys(sorted(rois)) if r]
    rows = []
    for model in models:
        values = np.asarray(fit["r2"].sel(model=model).values, dtype=float)
        mask = np.ones_like(values, dtype=bool) if significant is None else np.asarray(significant.sel(model=model).values)
        row: dict[str, Any] = {"model": model}
        for roi in names:
            chosen = mask & (rois == roi)
            row[roi] = f"{np.nanmean(values[chosen]):.3f} ({chosen.sum()})" if chosen.any() else f"– (0 of {(rois == roi).sum()})"
        rows.append(row)
    return rows


def encoding(page: Page, data: Mapping[str, Any]) -> None:
    """Headline R² over significant voxels (and per ROI, and as a fraction of the ceiling), and R² distributions."""
    fits = subjects(data, "encoding")
    if not fits:
        page.missing("encoding", reason(data, "encode", "ingest", "extract"))
        return
    page.note("encoding", NOISE_R2)
    headline = []
    for subject, fit in fits.items():
        singles = single_models(fit)
        models = singles + [m for m in map(str, fit["model"].values) if m not in singles]  # joint models last
        significant = _significant(data, subject, models)
        ceiling = _ceiling(data, subject)
        page.add("encoding", f"<h3>{html.escape(subject)}</h3>")
        if fit.attrs.get("split"):
            page.add("encoding", f'<p class="note">split: <code>{html.escape(str(fit.attrs["split"]))}</code></p>')
        rows = _headline(fit, significant, ceiling, models)
        key = "mean R² (significant voxels)" if significant is not None else "mean R² (all voxels)"
        headline.append(xr.DataArray([r[key] if isinstance(r[key], float) else np.nan for r in rows], dims="model",
                                     coords={"model": models}).expand_dims(subject=[subject]))
        if ceiling is not None:
            page.note("encoding", "R² / ceiling uses the single-trial ceiling c / (2 − c) (test R² is scored on single trials; "
                      "c is the split-half ceiling of two presentations).")
        page.add("encoding", table(rows, digits=3))
        page.figure("encoding", f"{subject}: test R² per voxel, significant voxels and the others apart",
                    lambda f=fit, s=significant, m=models: plot_r2_distribution(f["r2"].sel(model=m), s, title="test R² per voxel"))
        if "roi" in fit.coords:
            which = "significant voxels" if significant is not None else "all voxels (no significance test)"
            page.add("encoding", f"<h4>Per ROI: mean R² over {which} (count)</h4>", table(_roi_rows(fit, significant, models)))
    values = xr.concat(headline, "subject", join="outer")
    label = "mean R², significant voxels" if subjects(data, "permutation") else "mean R²"
    page.figure("encoding", f"headline: {label}, per model", lambda: plot_model_scores(values, ylabel=label))


def significance(page: Page, data: Mapping[str, Any]) -> None:
    """Significant-voxel counts per model and the test's settings."""
    perms = subjects(data, "permutation")
    if not perms:
        page.missing("significance", reason(data, "permute", "encode"))
        return
    rows = []
    for subject, perm in perms.items():
        count = perm["significant"].sum("voxel").load()
        rows += [{"subject": subject, "model": str(m), "significant voxels": int(count.sel(model=m)), "of voxels": int(perm.sizes["voxel"])}
                 for m in perm["model"].values]
        details = {k: perm.attrs[k] for k in ("n_permutations", "q", "method", "statistic", "seed", "fdr") if k in perm.attrs}
        if details:
            page.note("significance", f"{subject}: " + json.dumps(details, default=str))
        page.figure("significance", f"{subject}: significant voxels per model (permutation test, BH-FDR)",
                    lambda p=perm: plot_significant_counts(p.load()))
    page.add("significance", table(rows))


def noise_ceiling(page: Page, data: Mapping[str, Any]) -> None:
    """The per-voxel split-half ceiling: histogram and summary."""
    ceilings = {s: _ceiling(data, s) for s in subjects(data, "noise_ceiling")}
    if not ceilings:
        page.missing("noise-ceiling", reason(data, "noise_ceiling", "ingest"))
        return
    page.add("noise-ceiling", "<div class=row>")
    rows = []
    for subject, values in ceilings.items():
        page.figure("noise-ceiling", f"{subject}: split-half noise ceiling (Spearman–Brown)", lambda v=values: plot_noise_ceiling(v))
        one = single_trial_ceiling(values)
        rows.append({"subject": subject, "voxels": int(values.size), "repeated images": int(values.attrs.get("n_images", 0)),
                     "mean ceiling": float(values.mean()), "voxels with ceiling > 0": int((values > 0).sum()),
                     "mean single-trial ceiling (ceiling > 0)": float(one.mean())})
    page.add("noise-ceiling", "</div>", table(rows, digits=3))


def brain_maps(page: Page, data: Mapping[str, Any]) -> None:
    """Best R² per voxel and the winning model, on the subject's grid (when voxels have i, j, k)."""
    fits = subjects(data, "encoding")
    if not fits:
        page.missing("brain-maps", reason(data, "encode", "ingest"))
        return
    for subject, fit in fits.items():
        grid = (data.get("subjects") or {}).get(subject, {}).get("responses")
        reference = grid if grid is not None and all(c in grid.coords for c in "ijk") else fit
        page.add("brain-maps", f"<h3>{html.escape(subject)}</h3>")
        if not all(c in reference.coords for c in "ijk"):
            page.missing("brain-maps", f"{subject}: the voxels carry no i, j, k coordinates (e.g. release-1 ROI data), so there "
                         "is no brain map; every other section uses the voxels as they are.")
            continue
        singles = single_models(fit)
        best = fit["r2"].sel(model=singles).max("model").load().clip(0, 1)
        best.attrs["long_name"] = "best test R² over models (clipped to [0, 1])"
        page.figure("brain-maps", f"{subject}: best test R² over models per voxel (scale 0 to 1; below {MAP_THRESHOLD} not shown)",
                    lambda b=best, r=reference: plot_brain_map(b, r, cmap="inferno", vmax=1.0, symmetric_cbar=False,
                                                               threshold=MAP_THRESHOLD, title=f"{subject}: best R²"))
        significant = _significant(data, subject, singles)
        page.figure("brain-maps", f"{subject}: winning model per voxel (largest R² among significant models)",
                    lambda f=fit.sel(model=singles), s=significant, r=reference: plot_winning_model(f, significant=s, grid=r))
