"""Brain maps on the subject's grid (nilearn): voxel values, winning model, significant counts."""

from __future__ import annotations

import json
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["plot_brain_map", "plot_winning_model", "plot_significant_counts", "volume_image"]


def _attr(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _grid(values: xr.DataArray, grid: xr.DataArray | xr.Dataset | None, affine, volume_shape):
    """i, j, k per voxel, the affine and the volume shape, from ``values`` or ``grid`` (attrs/coords)."""
    sources = [s for s in (values, grid) if s is not None]
    coords = next((s for s in sources if all(c in s.coords for c in "ijk")), None)
    if coords is None:
        raise ValueError(
            "no voxel coordinates i, j, k on the values or on grid=...; pass the responses (or results) "
            "the values come from as grid="
        )
    if affine is None:
        affine = next((_attr(s.attrs["affine"]) for s in sources if s.attrs.get("affine") is not None), None)
    if volume_shape is None:
        volume_shape = next((_attr(s.attrs["volume_shape"]) for s in sources if s.attrs.get("volume_shape")), None)
    ijk = [np.asarray(coords[c].values, dtype=int) for c in "ijk"]
    if volume_shape is None:
        volume_shape = [int(v.max()) + 1 for v in ijk]
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    return ijk, affine, tuple(int(n) for n in volume_shape)


def volume_image(values: xr.DataArray, grid: xr.DataArray | xr.Dataset | None = None, *, affine=None,
                 volume_shape=None, fill: float = 0.0):
    """A NIfTI image of per-voxel values on the subject's grid.

    Parameters
    ----------
    values : xarray.DataArray, dims (voxel)
        One value per voxel (NaN → ``fill``).
    grid : xarray.DataArray or Dataset, optional
        Carries ``i, j, k`` voxel coords and ``affine`` / ``volume_shape`` attrs (the responses).
    affine, volume_shape : optional
        Overrides; without any, the identity affine and the bounding box of i, j, k.
    fill : float
        Value outside the voxels (and for NaN).

    Returns
    -------
    nibabel.Nifti1Image
    """
    import nibabel as nib

    if values.dims != ("voxel",):
        raise ValueError(f"values must have dims ('voxel',); got {values.dims}. Select one model first (.sel(model=...)).")
    (i, j, k), affine, shape = _grid(values, grid, affine, volume_shape)
    volume = np.full(shape, fill, dtype=np.float32)
    volume[i, j, k] = np.nan_to_num(np.asarray(values.values, dtype=np.float32), nan=fill)
    return nib.Nifti1Image(volume, affine)


def plot_brain_map(
    values: xr.DataArray,
    grid: xr.DataArray | xr.Dataset | None = None,
    *,
    title: str | None = None,
    threshold: float | None = None,
    display_mode: str = "z",
    cut_coords: int | list[float] | None = 6,
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    symmetric_cbar: bool | str = "auto",
    affine=None,
    volume_shape=None,
) -> Figure:
    """Map per-voxel values (e.g. test R² or r of one model) on the subject's grid (nilearn ``plot_stat_map``).

    Parameters
    ----------
    values : xarray.DataArray, dims (voxel)
        E.g. ``fit.r2.sel(model="normal")`` or ``vp.unique_a.sel(pair=...)``.
    grid : xarray.DataArray or Dataset, optional
        The responses (i, j, k coords and affine/volume_shape attrs) when ``values`` lacks them.
    title : str, optional
        Default: the values' name and model/pair.
    threshold : float, optional
        Hide |values| below it.
    display_mode, cut_coords :
        nilearn slicing (default 6 axial slices).
    cmap : str
        Colormap.
    vmax : float, optional
        Top of the color scale (e.g. 1 for R²); default the largest |value|.
    symmetric_cbar : bool or "auto"
        A scale symmetric around 0 (signed quantities); False for a one-sided one (e.g. R² clipped at 0).
    affine, volume_shape : optional
        Overrides of the grid's attrs.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from nilearn import plotting

    image = volume_image(values, grid, affine=affine, volume_shape=volume_shape)
    if title is None:
        labels = [f"{c}={values[c].values}" for c in ("model", "pair") if c in values.coords and values[c].ndim == 0]
        title = " ".join([str(values.attrs.get("long_name", values.name or "value"))] + labels)
    figure = plt.figure(figsize=(12, 3))
    plotting.plot_stat_map(
        image, bg_img=None, display_mode=display_mode, cut_coords=cut_coords, figure=figure, title=title,
        threshold=threshold if threshold is not None else 1e-6, cmap=cmap, colorbar=True, draw_cross=False,
        resampling_interpolation="nearest", vmax=vmax, symmetric_cbar=symmetric_cbar,
    )
    return figure


def plot_winning_model(
    results: xr.Dataset,
    variable: str = "r2",
    *,
    significant: xr.DataArray | xr.Dataset | None = None,
    grid: xr.DataArray | xr.Dataset | None = None,
    display_mode: str = "z",
    cut_coords: int | list[float] | None = 6,
    title: str | None = None,
) -> Figure:
    """Map, per voxel, the model with the best score (nilearn ``plot_img``, one colour per model).

    Voxels where no model scores above 0 (or, with ``significant``, none is significant) are blank.

    Parameters
    ----------
    results : xarray.Dataset
        An encoding fit with ``variable (model, voxel)``.
    variable : str
        Score to compare (``"r2"`` or ``"r"``).
    significant : xarray.DataArray or Dataset, optional
        A :func:`neurotask.stats.permutation_test` result or mask; only significant scores compete.
    grid : xarray.DataArray or Dataset, optional
        The responses, when ``results`` lacks the affine/volume_shape attrs.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from nilearn import plotting

    scores = results[variable].transpose("model", "voxel")
    if significant is not None:
        mask = significant["significant"] if isinstance(significant, xr.Dataset) else significant
        scores = scores.where(mask.transpose("model", "voxel").astype(bool))
    values = np.asarray(scores.values, dtype=np.float64)
    valid = np.isfinite(values).any(axis=0)
    best = np.argmax(np.where(np.isfinite(values), values, -np.inf), axis=0)
    winner = np.where(valid & (np.nanmax(np.where(valid, values, 0), axis=0) > 0), best + 1, 0).astype(np.float32)
    models = [str(m) for m in scores["model"].values]
    winner_da = xr.DataArray(winner, dims="voxel", coords={c: scores[c] for c in scores.coords if scores[c].dims == ("voxel",)})
    image = volume_image(winner_da, grid if grid is not None else results)
    colours = plt.get_cmap("tab20" if len(models) > 10 else "tab10")(np.arange(len(models)) % 20)
    cmap = ListedColormap(np.vstack([[0, 0, 0, 0], colours]))
    figure = plt.figure(figsize=(12, 3.5))
    plotting.plot_img(
        image, display_mode=display_mode, cut_coords=cut_coords, figure=figure, cmap=cmap, vmin=-0.5,
        vmax=len(models) + 0.5, colorbar=False, resampling_interpolation="nearest", draw_cross=False,
        title=title or f"best model per voxel ({variable})", black_bg=False,
    )
    counts = np.bincount(winner.astype(int), minlength=len(models) + 1)[1:]
    handles = [Patch(color=colours[m], label=f"{name} ({counts[m]})") for m, name in enumerate(models)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(models), 6), fontsize="small", frameon=False)
    return figure


def plot_significant_counts(permutation: xr.Dataset, *, variable: str = "significant", title: str | None = None) -> Figure:
    """Bar chart of the number of significant voxels per model (sorted).

    Parameters
    ----------
    permutation : xarray.Dataset
        A :func:`neurotask.stats.permutation_test` result (``significant (model, voxel)``).
    variable : str
        ``"significant"`` (FDR) or ``"significant_fwer"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    counts = permutation[variable].sum("voxel").to_series().sort_values(ascending=False)
    figure, axes = plt.subplots(figsize=(max(4, 0.35 * len(counts) + 2), 3.5), layout="constrained")
    axes.bar(counts.index.astype(str), counts.values, color="tab:blue")
    axes.set_ylabel("significant voxels")
    axes.set_xlabel("model")
    axes.tick_params(axis="x", rotation=90)
    level = permutation.attrs.get("q", "")
    kind = "FWER" if variable.endswith("fwer") else "FDR q"
    axes.set_title(title or f"significant voxels per model ({kind}={level}, of {permutation.sizes['voxel']})")
    return figure
