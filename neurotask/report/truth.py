"""The planted-truth section: estimates of a synthetic run against the generator's ground truth.

On a synthetic BOLD5000 tree (:func:`neurotask.datasets.write_synthetic_bold5000`) every voxel
has a planted driver model (or none) and a planted R². :func:`compare_with_truth` lines the
fitted voxels up with the truth by their ``i, j, k`` and measures, per model:

- the **recovered driver**: the significant single model with the largest test R² (``"none"``
  when no model is significant), against the planted one (a confusion matrix);
- the **false-positive rate**: the fraction of planted-null (pure-noise) voxels declared
  significant, to set against the FDR level q (BH controls the expected false *discovery*
  proportion at q; on null voxels the false-positive rate is then at most about q);
- the **power**: the fraction of the model's own signal voxels declared significant;
- planted against estimated R² on signal voxels, for the driver model.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from neurotask.encoding.design import model_spaces
from neurotask.plotting import plot_driver_confusion, plot_error_rates, plot_true_vs_estimated
from neurotask.report._html import Page, table

__all__ = ["compare_with_truth", "section"]

NONE = "none"


def single_models(fit: xr.Dataset) -> list[str]:
    """The models of ``fit`` that use one feature space."""
    return [name for name, spaces in model_spaces(fit).items() if len(spaces) == 1]


def _truth_index(truth: xr.Dataset, fit: xr.Dataset) -> np.ndarray:
    """For each fitted voxel, its row in ``truth`` (matched on i, j, k)."""
    missing = [c for c in "ijk" if c not in fit.coords]
    if missing:
        raise ValueError(f"the fitted voxels carry no {', '.join(missing)} coordinates: they cannot be matched to the ground truth")
    shape = [int(max(truth[c].max(), fit[c].max())) + 1 for c in "ijk"]
    flat_truth = np.ravel_multi_index([truth[c].values.astype(int) for c in "ijk"], shape)
    flat_fit = np.ravel_multi_index([fit[c].values.astype(int) for c in "ijk"], shape)
    order = np.argsort(flat_truth)
    position = np.searchsorted(flat_truth[order], flat_fit)
    position = np.clip(position, 0, flat_truth.size - 1)
    found = flat_truth[order][position] == flat_fit
    if not found.all():
        raise ValueError(f"{int((~found).sum())} fitted voxels are not in the ground truth: were the responses ingested from this tree?")
    return order[position]


def compare_with_truth(truth: xr.Dataset, fit: xr.Dataset, permutation: xr.Dataset) -> xr.Dataset:
    """Compare encoding and significance results with the planted truth, voxel by voxel.

    Parameters
    ----------
    truth : xarray.Dataset, dims (voxel)
        From :func:`neurotask.datasets.open_groundtruth`: ``i, j, k``, ``driver`` ('' for noise
        voxels), ``true_r2``; attrs ``models``.
    fit : xarray.Dataset, dims (model, voxel)
        Encoding results (``r2``) with ``i, j, k`` on voxel.
    permutation : xarray.Dataset, dims (model, voxel)
        :func:`neurotask.stats.permutation_test` results (``significant``; attrs ``q``).

    Returns
    -------
    xarray.Dataset
        ``planted_driver``, ``recovered_driver``, ``true_r2``, ``driver_r2`` (voxel); ``confusion``
        (planted, recovered) voxel counts; ``false_positive_rate``, ``power``,
        ``false_discovery_proportion``, ``n_significant`` (model); attrs ``q``,
        ``recovery`` (fraction of planted signal voxels whose driver is recovered),
        ``n_signal``, ``n_null``.
    """
    models = single_models(fit)
    rows = _truth_index(truth, fit)
    planted = np.asarray(truth["driver"].values).astype(str)[rows]
    planted = np.where(planted == "", NONE, planted)
    r2 = np.asarray(fit["r2"].sel(model=models).transpose("model", "voxel").values, dtype=float)
    significant = np.asarray(permutation["significant"].sel(model=models).transpose("model", "voxel").values, dtype=bool)
    scored = np.where(significant & np.isfinite(r2), r2, -np.inf)
    recovered = np.where(significant.any(axis=0), np.asarray(models, dtype=object)[scored.argmax(axis=0)], NONE).astype(str)
    index = {m: n for n, m in enumerate(models)}
    driver_r2 = np.array([r2[index[p], v] if p in index else np.nan for v, p in enumerate(planted)])
    labels = [m for m in dict.fromkeys([*models, *sorted(set(planted) - {NONE})])] + [NONE]
    confusion = np.array([[np.sum((planted == a) & (recovered == b)) for b in labels] for a in labels])
    null, signal = planted == NONE, planted != NONE
    fpr = [float(significant[m][null].mean()) if null.any() else np.nan for m in range(len(models))]
    power = [float(significant[m][planted == model].mean()) if (planted == model).any() else np.nan for m, model in enumerate(models)]
    n_sig = significant.sum(axis=1)
    fdp = [float((significant[m] & null).sum() / n_sig[m]) if n_sig[m] else 0.0 for m in range(len(models))]
    return xr.Dataset(
        {
            "planted_driver": ("voxel", planted), "recovered_driver": ("voxel", recovered),
            "true_r2": ("voxel", np.asarray(truth["true_r2"].values, dtype=float)[rows]),
            "driver_r2": ("voxel", driver_r2),
            "confusion": (("planted", "recovered"), confusion),
            "false_positive_rate": ("model", fpr), "power": ("model", power),
            "false_discovery_proportion": ("model", fdp), "n_significant": ("model", n_sig),
        },
        coords={"model": models, "planted": labels, "recovered": labels},
        attrs={"q": float(permutation.attrs.get("q", 0.05)), "recovery": float((planted == recovered)[signal].mean()) if signal.any() else np.nan,
               "n_signal": int(signal.sum()), "n_null": int(null.sum())},
    )


def _shared_groups(features: xr.Dataset | xr.DataArray | None) -> list[list[str]]:
    """Groups of models whose synthetic features share latent factors (from the store's parameters)."""
    if features is None:
        return []
    parameters = json.loads(features.attrs.get("parameters", "{}") or "{}")
    return [list(v) for v in (parameters.get("shared_latent_groups") or {}).values()]


def _partition_rows(comparison: xr.Dataset, vp: xr.Dataset, groups: list[list[str]]) -> list[dict[str, Any]]:
    """Per pair and voxel class (driven by A, by B, noise): planted R² against the estimated partition."""
    rows = []
    for pair in map(str, vp["pair"].values):
        a, b = str(vp["model_a"].sel(pair=pair).values), str(vp["model_b"].sel(pair=pair).values)
        shared = any(a in g and b in g for g in groups)
        planted_shared = "> 0 (shared latent factors)" if shared else "0 (independent features)"
        part = vp.sel(pair=pair)
        for label, mask in ((f"driven by {a}", comparison["planted_driver"] == a), (f"driven by {b}", comparison["planted_driver"] == b),
                            ("noise voxels", comparison["planted_driver"] == NONE)):
            mask = np.asarray(mask.values)
            if not mask.any():
                continue
            mean = {name: float(np.nanmean(np.asarray(part[name].values, dtype=float)[mask])) for name in ("r2_ab", "unique_a", "unique_b", "shared")}
            rows.append({"pair": pair, "voxels": label, "n": int(mask.sum()),
                         "planted R²(A∪B)": float(comparison["true_r2"].values[mask].mean()),
                         "estimated R²(A∪B)": mean["r2_ab"], "unique A": mean["unique_a"], "unique B": mean["unique_b"],
                         "planted shared": planted_shared if label != "noise voxels" else "0", "estimated shared": mean["shared"]})
    return rows


def section(page: Page, data: Mapping[str, Any]) -> list[xr.Dataset]:
    """Write the planted-truth section; returns the per-subject comparisons (empty on real data)."""
    subjects = data.get("subjects") or {}
    truths = {s: e["groundtruth"] for s, e in subjects.items() if e.get("groundtruth") is not None}
    if not truths:
        looked = data.get("groundtruth_searched") or "no ground truth in the results"
        page.missing("planted-truth", f"these are not synthetic data with a planted ground truth ({looked}); the estimates "
                     "below cannot be checked against a known truth.")
        return []
    page.note("planted-truth", "The data are synthetic: every voxel has a planted driver model (or none) and a planted R² "
              "(truth written by the generator). Recovered driver = the significant model with the largest test R².")
    comparisons = []
    for subject, truth in truths.items():
        entry = subjects[subject]
        if "encoding" not in entry or "permutation" not in entry:
            page.missing("planted-truth", f"{subject}: no encoding or permutation results to compare with the truth")
            continue
        comparison = compare_with_truth(truth, entry["encoding"], entry["permutation"])
        comparisons.append(comparison)
        _subject(page, subject, comparison, entry.get("partition"), _shared_groups(data.get("features")))
    return comparisons


def _subject(page: Page, subject: str, comparison: xr.Dataset, vp: xr.Dataset | None, groups: list[list[str]]) -> None:
    attrs = comparison.attrs
    page.add("planted-truth", f"<h3>{html.escape(subject)}</h3>")
    page.note("planted-truth", f"Driver recovered on {attrs['recovery']:.1%} of the {attrs['n_signal']} planted signal voxels; "
              f"{attrs['n_null']} planted-null voxels; FDR q = {attrs['q']:g}.")
    page.add("planted-truth", "<div class=row>")
    page.figure("planted-truth", f"{subject}: planted vs recovered driver", lambda: plot_driver_confusion(comparison["confusion"]))
    signal = comparison["planted_driver"] != NONE
    page.figure("planted-truth", f"{subject}: planted vs estimated R² on signal voxels",
                lambda: plot_true_vs_estimated(comparison["true_r2"][signal], comparison["driver_r2"][signal],
                                               comparison["planted_driver"][signal]))
    page.figure("planted-truth", f"{subject}: false-positive rate on planted-null voxels vs q, and power",
                lambda: plot_error_rates(comparison[["false_positive_rate", "power"]].assign_attrs(q=attrs["q"])))
    page.add("planted-truth", "</div>")
    rows = [{"model": str(m), "significant voxels": int(comparison["n_significant"].sel(model=m)),
             "false-positive rate (null voxels)": float(comparison["false_positive_rate"].sel(model=m)),
             "≤ q": bool(comparison["false_positive_rate"].sel(model=m) <= attrs["q"]),
             "false discovery proportion": float(comparison["false_discovery_proportion"].sel(model=m)),
             "power (own signal voxels)": float(comparison["power"].sel(model=m))} for m in comparison["model"].values]
    page.add("planted-truth", table(rows, digits=3))
    if vp is not None and "pair" in vp.dims:
        page.add("planted-truth", "<h4>Variance partitioning against the truth</h4>")
        page.note("planted-truth", "A voxel driven by A has planted R²(A∪B) = its planted R²; its shared part is 0 when "
                  "A's and B's features are independent, and > 0 when they share latent factors.")
        page.add("planted-truth", table(_partition_rows(comparison, vp, groups), digits=3))
