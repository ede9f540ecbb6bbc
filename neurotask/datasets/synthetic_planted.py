"""Planted voxel responses for synthetic BOLD5000 trees: trial structure, brain, regions, truth.

Shared by every release layout (GLMsingle betas, release-1 ROI files, BIDS runs). The model:

- **Trials** follow a subject's real BOLD5000 trial order (:func:`bold5000_trials`), truncated to
  the first sessions or trials. Runs hold 37 trials; sessions hold the real 9 or 10 runs (333 or
  370 trials) of OpenNeuro ds001499 (:data:`neurotask.fmri.SESSION_RUNS`).
- **Brain**: an ellipsoid inside the volume grid (2 mm voxels). Outside it the betas are NaN.
- **Signal regions**: each driver model owns ``regions_per_model`` spatially contiguous blobs
  (a ball around a random in-brain center, cut by the Voronoi cells of the other centers). The
  other in-brain voxels are pure noise.
- **Signal**: for driver model ``m`` with features ``X_m`` (images × features, centered over the
  written trials), a random weight basis ``B_m = X_mᵀ G_m`` (``G_m`` standard normal, images ×
  ``rank``) and per-voxel coefficients ``c_v``: ``s_v = X_m B_m c_v``, i.e. features times random
  weights ``w_v = B_m c_v`` lying where the features vary most, scaled to unit variance over the
  written trials. Repeated images get the same signal; noise differs per presentation.
- **Response** of voxel ``v`` on trial ``t``: ``baseline_v + gain_v · (s_v(t) + σ_v ε_vt)``
  with ``σ_v² = 1 / snr_v``, so ``true_r2_v = snr_v / (1 + snr_v)`` is the fraction of the
  response variance (over the written trials) that the driver's features explain: the
  expected test R² of a perfect linear model of the driver's features. ``snr_v`` falls off
  log-linearly from the top of the ``snr`` range at a region's center to its bottom at its edge.
- **Defects** inside the brain: a few voxels NaN in every session, a few NaN in one session, a
  few constant in one session — what a loader must drop and count.

Random streams (all ``numpy.random.default_rng``): ``[seed, 1]`` draws geometry, regions, SNRs,
weights and defects; ``[seed, 2, session]`` draws the noise of a session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr

from neurotask.datasets.synthetic import bold5000_trial_order
from neurotask.fmri.bold5000 import SESSION_RUNS
from neurotask.stimuli import image_id, image_source

__all__ = [
    "ROI_NAMES",
    "TRIALS_PER_RUN",
    "N_SESSIONS",
    "VOLUME_SHAPES",
    "SMALL_VOLUME_SHAPE",
    "VOXEL_SIZE_MM",
    "bold5000_session_runs",
    "bold5000_trials",
    "groundtruth_path",
    "open_groundtruth",
]

TRIALS_PER_RUN = 37
#: Functional sessions per subject.
N_SESSIONS = {"CSI1": 15, "CSI2": 15, "CSI3": 15, "CSI4": 9}
#: The real functional volume grids (2 mm isotropic voxels).
VOLUME_SHAPES = {"CSI1": (71, 89, 72), "CSI2": (72, 92, 70), "CSI3": (72, 88, 67), "CSI4": (70, 89, 70)}
#: Default grid of synthetic trees: small enough to write in seconds.
SMALL_VOLUME_SHAPE = (20, 24, 20)
VOXEL_SIZE_MM = 2.0
#: The ten canonical BOLD5000 ROIs.
ROI_NAMES = (
    "LHEarlyVis", "RHEarlyVis", "LHLOC", "RHLOC", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC", "RHRSC",
)
_RANK = 8  # dimension of each driver model's weight basis


def bold5000_session_runs(subject: str = "CSI1") -> list[int]:
    """Runs per functional session of a subject, as in the real dataset (9 or 10 runs of 37 trials).

    Examples
    --------
    >>> bold5000_session_runs("CSI4")
    [10, 9, 9, 10, 9, 9, 9, 9, 10]
    """
    if subject not in SESSION_RUNS:
        raise ValueError(f"unknown subject {subject!r}; expected one of {list(SESSION_RUNS)}")
    return list(SESSION_RUNS[subject])


def bold5000_trials(subject: str = "CSI1", n_sessions: int | None = None, n_trials: int | None = None) -> pd.DataFrame:
    """A subject's real trial order with session, run and repeat labels.

    Parameters
    ----------
    subject : {"CSI1", "CSI2", "CSI3", "CSI4"}
    n_sessions : int, optional
        Keep the first ``n_sessions`` sessions (all when None).
    n_trials : int, optional
        Then keep the first ``n_trials`` trials (the last run may be partial).

    Returns
    -------
    pandas.DataFrame
        One row per trial in presentation (beta) order, columns ``name`` (stimulus file name),
        ``image`` (id), ``source``, ``session`` and ``run`` (1-based; run within session),
        ``trial_in_run`` (1-based) and ``presentation`` (1 for an image's first showing, 2, 3, …
        for repeats).

    Examples
    --------
    >>> trials = bold5000_trials("CSI1", n_sessions=1)
    >>> len(trials), int(trials.run.max())
    (370, 10)
    """
    names = bold5000_trial_order(subject)
    runs = bold5000_session_runs(subject)
    if n_sessions is not None:
        if not 1 <= n_sessions <= len(runs):
            raise ValueError(f"n_sessions must be in 1..{len(runs)} for {subject}, or None for all; got {n_sessions}")
        runs = runs[:n_sessions]
    session = np.repeat(np.arange(1, len(runs) + 1), np.array(runs) * TRIALS_PER_RUN)
    run = np.concatenate([np.repeat(np.arange(1, r + 1), TRIALS_PER_RUN) for r in runs])
    n = session.size
    if n_trials is not None:
        if not 1 <= n_trials <= n:
            raise ValueError(f"n_trials must be in 1..{n} for {subject} with n_sessions={n_sessions}; got {n_trials}")
        n = n_trials
    names = names[:n]
    ids = [image_id(x) for x in names]
    return pd.DataFrame(
        {
            "name": names,
            "image": ids,
            "source": [image_source(i) for i in ids],
            "session": session[:n],
            "run": run[:n],
            "trial_in_run": np.arange(n) % TRIALS_PER_RUN + 1,
            "presentation": pd.Series(ids).groupby(ids).cumcount().to_numpy() + 1,
        }
    )


def _affine(shape: Sequence[int]) -> np.ndarray:
    """2 mm RAS affine with the world origin at the grid center."""
    affine = np.diag([VOXEL_SIZE_MM] * 3 + [1.0])
    affine[:3, 3] = -VOXEL_SIZE_MM * (np.asarray(shape) - 1) / 2
    return affine


def _ellipsoid(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Boolean brain mask: an ellipsoid filling most of the grid, center slightly jittered."""
    grid = np.indices(shape, dtype=np.float32)
    center = (np.asarray(shape) - 1) / 2 + rng.uniform(-0.03, 0.03, 3) * np.asarray(shape)
    radii = rng.uniform(0.40, 0.46, 3) * np.asarray(shape)
    dist = sum(((grid[d] - center[d]) / radii[d]) ** 2 for d in range(3))
    return dist <= 1.0


@dataclass
class PlantedBrain:
    """Everything needed to write a synthetic subject: geometry, truth, and signal generators.

    Voxel arrays are over in-brain voxels in Fortran (NIfTI storage) order of the grid.
    """

    subject: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    trials: pd.DataFrame
    models: list[str]
    flat_index: np.ndarray  # (voxel,) Fortran-order index into the grid
    ijk: np.ndarray  # (voxel, 3)
    driver: np.ndarray  # (voxel,) index into models, -1 for noise voxels
    region: np.ndarray  # (voxel,) blob index, -1 outside regions
    snr: np.ndarray  # (voxel,) signal-to-noise variance ratio, 0 for noise voxels
    gain: np.ndarray  # (voxel,)
    baseline: np.ndarray  # (voxel,)
    roi: np.ndarray  # (voxel,) ROI name or ''
    defect: np.ndarray  # (voxel,) '', 'nan', 'nan_session' or 'constant_session'
    defect_session: np.ndarray  # (voxel,) session of a one-session defect, else 0
    trial_image: np.ndarray  # (trial,) index into the unique images
    profiles: list[np.ndarray]  # per model: (image, rank) float64 signal basis per unique image
    coefficients: list[np.ndarray]  # per model: (rank, its voxels) float64, unit signal variance
    seed: int
    snr_range: tuple[float, float]

    @property
    def true_r2(self) -> np.ndarray:
        return self.snr / (1.0 + self.snr)

    @property
    def noise_sd(self) -> np.ndarray:
        """Noise standard deviation in signal units (1 for noise voxels)."""
        return np.where(self.snr > 0, 1.0 / np.sqrt(np.where(self.snr > 0, self.snr, 1.0)), 1.0)

    def signal(self, trials: np.ndarray) -> np.ndarray:
        """Noise-free signal, (voxel, trial) float32, unit variance over all written trials.

        Computed in float64 so that every presentation of an image gets the same float32 signal,
        whichever trials it is computed with.
        """
        out = np.zeros((self.flat_index.size, trials.size), dtype=np.float32)
        images = self.trial_image[trials]
        for m, (profile, coef) in enumerate(zip(self.profiles, self.coefficients)):
            out[self.driver == m] = (profile[images] @ coef).T
        return out

    def mask_volume(self, nonbinary: bool = False) -> np.ndarray:
        """The brain mask as a float32 volume: 1 inside (or values in (0.5, 1] when ``nonbinary``), 0 outside."""
        volume = np.zeros(self.shape, dtype=np.float32, order="F")
        values = np.ones(self.flat_index.size, dtype=np.float32)
        if nonbinary:
            values = np.random.default_rng([self.seed, 3]).uniform(0.5, 1.0, values.size).astype(np.float32)
        volume.reshape(-1, order="F")[self.flat_index] = values
        return volume

    def roi_volume(self, roi: str) -> np.ndarray:
        volume = np.zeros(self.shape, dtype=np.float32, order="F")
        volume.reshape(-1, order="F")[self.flat_index[self.roi == roi]] = 1.0
        return volume

    def groundtruth(self, release: str, files: Sequence[str] = ()) -> xr.Dataset:
        """The planted truth per in-brain voxel, as written to ``*_groundtruth.nc``."""
        driver = np.array([""] + self.models, dtype=object)[self.driver + 1]
        roi_index = np.full(self.roi.size, -1, dtype=np.int32)
        for name in ROI_NAMES:
            inside = self.roi == name
            roi_index[inside] = np.arange(inside.sum())
        return xr.Dataset(
            {
                "i": ("voxel", self.ijk[:, 0].astype(np.int32)),
                "j": ("voxel", self.ijk[:, 1].astype(np.int32)),
                "k": ("voxel", self.ijk[:, 2].astype(np.int32)),
                "driver": ("voxel", driver.astype(str), {"long_name": "driver model ('' for noise voxels)"}),
                "true_r2": (
                    "voxel",
                    self.true_r2.astype(np.float32),
                    {"long_name": "fraction of response variance explained by the driver's features"},
                ),
                "snr": ("voxel", self.snr.astype(np.float32), {"long_name": "signal-to-noise variance ratio"}),
                "region": ("voxel", self.region.astype(np.int32), {"long_name": "planted region (-1: none)"}),
                "roi": ("voxel", self.roi.astype(str)),
                "roi_index": ("voxel", roi_index, {"long_name": "column in the release-1 ROI array (-1: none)"}),
                "defect": ("voxel", self.defect.astype(str)),
                "defect_session": ("voxel", self.defect_session.astype(np.int32)),
            },
            attrs={
                "subject": self.subject,
                "release": release,
                "seed": self.seed,
                "weights_rng": f"numpy.random.default_rng([{self.seed}, 1])",
                "snr_range": json.dumps(list(self.snr_range)),
                "models": json.dumps(self.models),
                "volume_shape": json.dumps(list(self.shape)),
                "affine": json.dumps(self.affine.tolist()),
                "n_trials": len(self.trials),
                "n_sessions": int(self.trials.session.max()),
                "files": json.dumps(list(files)),
                "definition": (
                    "response = baseline + gain * (signal + noise); signal = driver features @ random weights, "
                    "unit variance over the written trials; true_r2 = snr / (1 + snr)"
                ),
            },
        )


def _regions(
    ijk: np.ndarray, n_regions: int, signal_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blob index per voxel (-1 outside blobs) and relative distance to the blob center (0..1)."""
    centers = ijk[rng.choice(ijk.shape[0], size=n_regions, replace=False)].astype(np.float64)
    radius = max((3 * signal_fraction * ijk.shape[0] / (4 * np.pi * n_regions)) ** (1 / 3), 1.0)
    region = np.full(ijk.shape[0], -1, dtype=np.int64)
    best = np.full(ijk.shape[0], np.inf)
    for r, center in enumerate(centers):
        dist = np.sqrt(((ijk - center) ** 2).sum(axis=1))
        closer = dist < best
        region[closer & (dist <= radius)] = r
        best = np.minimum(best, dist)
    region[best > radius] = -1
    return region, np.clip(best / radius, 0.0, 1.0)


def _rois(ijk: np.ndarray, shape: Sequence[int], region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ROI name per voxel: a small ball per ROI in the matching hemisphere (LH: low i).

    Balls are centered on signal voxels where the hemisphere has any, so ROIs hold signal.
    """
    roi = np.full(ijk.shape[0], "", dtype=object)
    radius = max(0.08 * min(shape), 1.5)
    mid = (shape[0] - 1) / 2
    for name in ROI_NAMES:
        side = ijk[:, 0] < mid if name.startswith("LH") else ijk[:, 0] > mid
        free = side & (roi == "")
        candidates = np.flatnonzero(free & (region >= 0)) if (free & (region >= 0)).any() else np.flatnonzero(free)
        center = ijk[rng.choice(candidates)]
        inside = (np.sqrt(((ijk - center) ** 2).sum(axis=1)) <= radius) & side & (roi == "")
        roi[inside] = name
    return roi


def _driver_profiles(
    features: xr.DataArray, model: str, images: list[str], counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-image signal basis ``X_c X_cᵀ G`` of one model, centered over the written trials."""
    x = np.asarray(features.sel(model=model).sel(image=images).transpose("image", "feature").values, dtype=np.float64)
    x -= (counts @ x) / counts.sum()
    basis = x.T @ rng.standard_normal((len(images), _RANK))
    return x @ basis


def _plant_arguments(
    features: xr.DataArray, models: Sequence[str] | None, snr: float | tuple[float, float], signal_fraction: float,
    volume_shape: Sequence[int] | None,
) -> tuple[list[str], tuple[float, float], tuple[int, ...]]:
    """Checked driver models, SNR range and volume shape of :func:`plant`."""
    models = list(features.model.values if models is None else models)
    unknown = [m for m in models if m not in set(features.model.values.tolist())]
    if unknown:
        raise ValueError(f"models {unknown} are not in features; expected some of {features.model.values.tolist()}")
    lo, hi = (float(snr), float(snr)) if np.isscalar(snr) else (float(snr[0]), float(snr[1]))
    if not 0 < lo <= hi:
        raise ValueError(f"snr must be a positive float or a (low, high) range with 0 < low <= high; got {snr!r}")
    if not 0 < signal_fraction < 1:
        raise ValueError(f"signal_fraction must be in (0, 1); got {signal_fraction}")
    shape = tuple(int(s) for s in (volume_shape or SMALL_VOLUME_SHAPE))
    if len(shape) != 3 or min(shape) < 6:
        raise ValueError(f"volume_shape must be 3 sizes >= 6, e.g. {SMALL_VOLUME_SHAPE}; got {volume_shape!r}")
    return models, (lo, hi), shape


def plant(
    features: xr.DataArray,
    subject: str = "CSI1",
    *,
    n_sessions: int | None = 3,
    n_trials: int | None = None,
    volume_shape: Sequence[int] | None = None,
    snr: float | tuple[float, float] = (1 / 9, 1.5),
    models: Sequence[str] | None = None,
    signal_fraction: float = 0.35,
    regions_per_model: int = 2,
    seed: int = 0,
) -> PlantedBrain:
    """Draw a synthetic subject: trials, brain, driver regions, SNRs, weights and defects.

    Parameters are those of :func:`neurotask.datasets.write_synthetic_bold5000`.
    """
    trials = bold5000_trials(subject, n_sessions=n_sessions, n_trials=n_trials)
    _check_features(features, trials, subject)
    models, (lo, hi), shape = _plant_arguments(features, models, snr, signal_fraction, volume_shape)
    rng = np.random.default_rng([seed, 1])

    # 1. Geometry: brain ellipsoid, voxels in NIfTI (Fortran) order.
    brain = _ellipsoid(shape, rng)
    flat_index = np.flatnonzero(brain.reshape(-1, order="F"))
    ijk = np.stack(np.unravel_index(flat_index, shape, order="F"), axis=1)
    n_vox = flat_index.size

    # 2. Driver regions and per-voxel SNR falling off from region centers.
    n_regions = len(models) * regions_per_model
    if n_regions > n_vox // 4:
        raise ValueError(f"{n_regions} regions do not fit {n_vox} brain voxels; use fewer models or a larger volume_shape")
    region, rel_dist = _regions(ijk, n_regions, signal_fraction, rng)
    driver = np.where(region >= 0, region % max(len(models), 1), -1)
    jitter = rng.uniform(-0.15, 0.15, n_vox)
    t = np.clip(rel_dist + jitter, 0.0, 1.0)
    voxel_snr = np.where(driver >= 0, np.exp((1 - t) * np.log(hi) + t * np.log(lo)), 0.0)

    # 3. Weights: a basis per model, coefficients per voxel scaled to unit signal variance over trials.
    images = list(dict.fromkeys(trials.image))
    image_index = {img: n for n, img in enumerate(images)}
    trial_image = np.array([image_index[i] for i in trials.image], dtype=np.int64)
    counts = np.bincount(trial_image, minlength=len(images)).astype(np.float64)
    profiles, coefficients = [], []
    for m, model in enumerate(models):
        profile = _driver_profiles(features, model, images, counts, rng)
        coef = rng.standard_normal((_RANK, int((driver == m).sum())))
        cov = (profile.T * counts) @ profile / counts.sum()
        variance = np.einsum("rv,rs,sv->v", coef, cov, coef)
        profiles.append(profile)
        coefficients.append(coef / np.sqrt(np.maximum(variance, 1e-30)))

    # 4. Scale, baseline, ROIs and defects.
    gain = rng.uniform(0.5, 2.0, n_vox)
    baseline = rng.normal(0.0, 0.5, n_vox)
    roi = _rois(ijk, shape, region, rng)
    defect = np.full(n_vox, "", dtype=object)
    defect_session = np.zeros(n_vox, dtype=np.int64)
    n_each = max(2, n_vox // 400)
    picked = rng.choice(n_vox, size=3 * n_each, replace=False)
    n_sess = int(trials.session.max())
    for kind, chosen in zip(("nan", "nan_session", "constant_session"), np.split(picked, 3)):
        defect[chosen] = kind
        if kind != "nan":
            defect_session[chosen] = rng.integers(1, n_sess + 1, chosen.size)

    return PlantedBrain(
        subject=subject, shape=shape, affine=_affine(shape), trials=trials, models=models,
        flat_index=flat_index, ijk=ijk, driver=driver, region=region, snr=voxel_snr, gain=gain,
        baseline=baseline, roi=roi, defect=defect, defect_session=defect_session, trial_image=trial_image,
        profiles=profiles, coefficients=coefficients, seed=seed, snr_range=(lo, hi),
    )  # fmt: skip


def _check_features(features: xr.DataArray, trials: pd.DataFrame, subject: str) -> None:
    if not isinstance(features, xr.DataArray) or not {"model", "image", "feature"} <= set(features.dims):
        raise TypeError(
            "features must be an xarray.DataArray with dims (model, image, feature), e.g. from "
            f"make_synthetic_features or open_features; got {type(features).__name__}"
        )
    have = set(features.image.values.tolist())
    missing = [i for i in dict.fromkeys(trials.image) if i not in have]
    if missing:
        raise ValueError(
            f"features lack {len(missing)} of the {trials.image.nunique()} images of the {len(trials)} trials "
            f"written for {subject} (e.g. {missing[:3]}); build features over those images, e.g. "
            f"make_synthetic_features(images=bold5000_trials({subject!r}, n_sessions=...).image.unique().tolist())"
        )


def groundtruth_path(root: str | os.PathLike[str], subject: str = "CSI1", release: int | str = 2) -> Path:
    """Where a synthetic tree keeps its ground truth for ``release`` (2, 1 or ``"bids"``).

    Release 2: ``<root>/<SUBJ>_groundtruth.nc`` beside the flat betas; a tree written by earlier
    versions (``derivatives/GLMsingle/<SUBJ>/``) is found there.
    """
    root = Path(root)
    paths = {
        "2": root / f"{subject}_groundtruth.nc",
        "1": root / "ROIs" / subject / f"{subject}_groundtruth.nc",
        "bids": root / "derivatives" / "synthetic" / f"sub-{subject}_groundtruth.nc",
    }
    if str(release) not in paths:
        raise ValueError(f"unknown release {release!r}; expected one of 2, 1, 'bids'")
    earlier = root / "derivatives" / "GLMsingle" / subject / f"{subject}_groundtruth.nc"
    if str(release) == "2" and not paths["2"].exists() and earlier.exists():
        return earlier
    return paths[str(release)]


def save_nifti(
    volume: np.ndarray, affine: np.ndarray, path: Path, tr: float | None = None, description: str = ""
) -> None:
    """Save a float32 volume as (gzipped) NIfTI-1 with mm units, the TR for 4-D time series, a description."""
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = description.encode()[:79]
    if tr is not None:
        image.header.set_zooms(image.header.get_zooms()[:3] + (tr,))
    nib.save(image, path)


def write_groundtruth(truth: xr.Dataset, path: Path) -> Path:
    """Write the truth as NetCDF-3 (scipy engine: readable by xarray, scipy and netCDF tools)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    truth.to_netcdf(path, engine="scipy")
    return path


def open_groundtruth(root: str | os.PathLike[str], subject: str = "CSI1", release: int | str = 2) -> xr.Dataset:
    """Open the planted ground truth of a synthetic tree.

    Parameters
    ----------
    root : path
        The tree's root, as given to ``write_synthetic_bold5000``.
    subject : str
    release : {2, 1, "bids"}

    Returns
    -------
    xarray.Dataset, dims (voxel,)
        Per in-brain voxel: ``i, j, k``, ``driver`` (model name, '' for noise voxels),
        ``true_r2``, ``snr``, ``region``, ``roi``, ``defect``, ``defect_session``; attrs with the
        seed, models, affine and trial counts. The file is NetCDF-3
        (``xarray.open_dataset(path, engine="scipy")`` reads it too).
    """
    path = groundtruth_path(root, subject, release)
    if not path.exists():
        raise FileNotFoundError(f"no ground truth at {path}; write the tree with write_synthetic_bold5000 first")
    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()
