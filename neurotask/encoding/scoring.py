"""Per-voxel scores of encoding predictions, and summaries of encoding results."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["SCORINGS", "r2_score", "pearson_r", "summary"]


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: ``1 − SS_res / SS_tot``, SS_tot about y_true's mean.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples, n_targets)

    Returns
    -------
    ndarray of shape (n_targets,), float64
        NaN where ``y_true`` is constant.
    """
    y_true = np.asarray(y_true)
    residual = (y_true - y_pred).astype(np.float64)
    centered = y_true.astype(np.float64) - y_true.mean(axis=0, dtype=np.float64)
    ss_tot = np.einsum("ij,ij->j", centered, centered)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - np.einsum("ij,ij->j", residual, residual) / ss_tot, np.nan)


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per column, shape (n_targets,), float64; NaN where either is constant."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, np.einsum("ij,ij->j", a, b) / denominator, np.nan)


#: Test-set scores an encoding fit can report, by name.
SCORINGS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"r2": r2_score, "r": pearson_r}


def _mask(results: xr.Dataset, significant: xr.DataArray | str | None) -> xr.DataArray | None:
    if significant is None:
        return results["significant"].astype(bool) if "significant" in results else None
    if isinstance(significant, str):
        if significant not in results:
            raise ValueError(
                f"significant={significant!r} is not a variable of results (it has "
                f"{sorted(map(str, results.data_vars))}); pass a boolean (model, voxel) DataArray instead."
            )
        significant = results[significant]
    if not isinstance(significant, xr.DataArray) or "voxel" not in significant.dims:
        raise TypeError("significant must be a boolean DataArray with a 'voxel' dim, a variable name, or None.")
    return significant.astype(bool)


def summary(
    results: xr.Dataset,
    by: str | Sequence[str] = "model",
    significant: xr.DataArray | str | None = None,
    roi: str | Sequence[str] | None = None,
    scores: Sequence[str] = ("r2", "r"),
) -> pd.DataFrame:
    """Mean encoding scores over voxels, per model (and per ROI).

    Parameters
    ----------
    results : xarray.Dataset
        From :func:`neurotask.encoding.fit`: ``r2 (model, voxel)``, ``r (model, voxel)``.
    by : str or sequence of str
        ``"model"`` or ``("model", "roi")`` (the latter needs a ``roi`` coordinate on voxel).
    significant : xarray.DataArray of bool (model, voxel), str, or None
        Voxels counted in the ``*_significant`` columns. A variable name of ``results`` is
        accepted; by default ``results.significant`` when present (e.g. merged from
        :func:`neurotask.stats.permutation_test`), else those columns are left out.
    roi : str or sequence of str, optional
        Keep only voxels whose ``roi`` coordinate is one of these.
    scores : sequence of str
        Which score variables to average.

    Returns
    -------
    pandas.DataFrame
        Index ``by``; columns ``<score>`` (mean over voxels), ``n_voxels`` and, with a
        significance mask, ``<score>_significant`` and ``n_significant``.

    Examples
    --------
    >>> ds = xr.Dataset({"r2": (("model", "voxel"), [[0.1, 0.3], [0.0, 0.2]]),
    ...                  "r": (("model", "voxel"), [[0.3, 0.5], [0.1, 0.4]])},
    ...                 coords={"model": ["a", "b"]})
    >>> summary(ds)["r2"].round(2).tolist()
    [0.2, 0.1]
    """
    by = [by] if isinstance(by, str) else list(by)
    unknown = [b for b in by if b not in ("model", "roi")]
    if unknown or "model" not in by:
        raise ValueError(f"by must be 'model' or ('model', 'roi'); got {by}.")
    missing = [s for s in scores if s not in results]
    if missing:
        raise ValueError(
            f"results lacks the score variables {missing}; it has {sorted(map(str, results.data_vars))}."
        )
    if ("roi" in by or roi is not None) and "roi" not in results.coords:
        raise ValueError(
            "results has no 'roi' coordinate on voxel; fit responses that carry one, or drop roi/by='roi'."
        )
    mask = _mask(results, significant)
    if roi is not None:
        keep = np.isin(results["roi"].values, [roi] if isinstance(roi, str) else list(roi))
        results = results.isel(voxel=keep)
        mask = None if mask is None else mask.isel(voxel=keep)
    groups = [("all", results, mask)] if "roi" not in by else [
        (name, results.isel(voxel=results["roi"].values == name),
         None if mask is None else mask.isel(voxel=results["roi"].values == name))
        for name in np.unique(results["roi"].values)
    ]
    rows = []
    for group, part, part_mask in groups:
        for model in part["model"].values:
            row: dict[str, object] = {"model": str(model)}
            if "roi" in by:
                row["roi"] = str(group)
            values = {s: part[s].sel(model=model).values.astype(np.float64) for s in scores}
            for s in scores:
                row[s] = float(np.nanmean(values[s])) if values[s].size else np.nan
            row["n_voxels"] = int(part.sizes["voxel"])
            if part_mask is not None:
                chosen = np.asarray(part_mask.sel(model=model).values, dtype=bool)
                for s in scores:
                    row[f"{s}_significant"] = float(np.nanmean(values[s][chosen])) if chosen.any() else np.nan
                row["n_significant"] = int(chosen.sum())
            rows.append(row)
    return pd.DataFrame(rows).set_index(by)
