"""Synthetic BOLD5000 trees with planted ground truth, in the real release layouts.

Release 2 (GLMsingle, the default) writes what users download from figshare, flat in ``root``,
plus OpenNeuro's ROI masks::

    <SUBJ>_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-XX.nii.gz   4-D (x, y, z, trials of session XX),
                                                               float32 percent signal change, NaN
                                                               outside the brain; 333 or 370 trials
    <SUBJ>_imgnames.txt                                        one stimulus file name per trial
    <SUBJ>_brainmask.nii.gz                                    3-D float32, 0 outside / >0 inside
    <SUBJ>_groundtruth.nc                                      planted truth (NetCDF-3)
    derivatives/spm/sub-<SUBJ>/sub-<SUBJ>_mask-<ROI>.nii.gz    10 ROI masks, BOLD5000's spellings
                                                               (CSI2/CSI3: LHLO, RHLO; CSI2: RHRRSC),
                                                               on the betas' grid or a finer one

Release 1 (ROI ``.mat`` files) and BIDS runs are written by :mod:`.synthetic_layouts` from the same
planted responses. The response model is documented in :mod:`.synthetic_planted`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from neurotask.datasets.synthetic import make_synthetic_features
from neurotask.datasets.synthetic_planted import (
    N_SESSIONS,
    VOLUME_SHAPES,
    PlantedBrain,
    bold5000_trials,
    groundtruth_path,
    plant,
    save_nifti,
    write_groundtruth,
)
from neurotask.datasets.synthetic_layouts import ROI_FILE_NAMES, ROI_GRIDS, write_bids, write_release1, write_roi_masks
from neurotask.datasets.synthetic_stimuli import progress_bar, write_synthetic_stimuli

__all__ = ["RELEASES", "ROI_FILE_NAMES", "write_synthetic_bold5000", "write_synthetic_dataset"]

#: The layouts write_synthetic_bold5000 can write.
RELEASES = (2, 1, "bids")
_BETAS_DESCRIPTION = "GLMsingle TYPED betas, percent signal change (synthetic)"
_TRIAL_CHUNK = 64  # trials generated at once: bounds the noise buffer to (brain voxels × 64)


def _write_release2(brain: PlantedBrain, root: Path, nonbinary_mask: bool, roi_grid: str, progress: bool) -> list[Path]:
    """GLMsingle TYPED betas flat in ``root``, one 4-D file per session, streamed session by session."""
    subject = brain.subject
    root.mkdir(parents=True, exist_ok=True)
    written = []
    names = root / f"{subject}_imgnames.txt"
    names.write_text("\n".join(brain.trials.name) + "\n")
    written.append(names)
    mask_path = root / f"{subject}_brainmask.nii.gz"
    save_nifti(brain.mask_volume(nonbinary_mask), brain.affine, mask_path)
    written.append(mask_path)
    written += write_roi_masks(brain, root, roi_grid=roi_grid)

    sessions = brain.trials.session.to_numpy()
    noise_sd = brain.noise_sd.astype(np.float32)[:, None]
    gain = brain.gain.astype(np.float32)[:, None]
    baseline = brain.baseline.astype(np.float32)[:, None]
    with progress_bar(progress, int(sessions.max()), f"{subject} sessions") as advance:
        for session in range(1, int(sessions.max()) + 1):
            trials = np.flatnonzero(sessions == session)
            rng = np.random.default_rng([brain.seed, 2, session])
            volume = np.full(brain.shape + (trials.size,), np.nan, dtype=np.float32, order="F")
            flat = volume.reshape(-1, trials.size, order="F")  # a view: (grid voxel, trial)
            for start in range(0, trials.size, _TRIAL_CHUNK):
                chunk = trials[start : start + _TRIAL_CHUNK]
                values = brain.signal(chunk)
                values += noise_sd * rng.standard_normal(values.shape, dtype=np.float32)
                values *= gain
                values += baseline
                flat[brain.flat_index, start : start + chunk.size] = values
            _apply_defects(brain, flat, session)
            path = root / f"{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{session:02d}.nii.gz"
            save_nifti(volume, brain.affine, path, description=_BETAS_DESCRIPTION)
            written.append(path)
            del volume, flat
            advance()
    return written


def _apply_defects(brain: PlantedBrain, flat: np.ndarray, session: int) -> None:
    """NaN voxels (all sessions or this one) and voxels constant within this session."""
    nan = (brain.defect == "nan") | ((brain.defect == "nan_session") & (brain.defect_session == session))
    flat[brain.flat_index[nan]] = np.nan
    constant = (brain.defect == "constant_session") & (brain.defect_session == session)
    flat[brain.flat_index[constant]] = brain.baseline[constant, None].astype(np.float32)


def write_synthetic_bold5000(
    root: str | os.PathLike[str],
    features: xr.DataArray,
    subject: str = "CSI1",
    *,
    n_sessions: int | None = 3,
    volume_shape: Sequence[int] | None = None,
    snr: float | tuple[float, float] = (1 / 9, 1.5),
    seed: int = 0,
    release: int | str = 2,
    n_trials: int | None = None,
    models: Sequence[str] | None = None,
    signal_fraction: float = 0.35,
    regions_per_model: int = 2,
    nonbinary_mask: bool = False,
    roi_grid: str = "same",
    progress: bool = False,
) -> xr.Dataset:
    """Write a synthetic BOLD5000 subject whose voxel responses are planted from ``features``.

    Trials follow the subject's real trial order (:func:`bold5000_trials`). Signal voxels sit in
    spatially contiguous regions, each driven by one model: response = that model's features
    times random weights, plus noise, so that a known fraction ``true_r2`` of each voxel's
    variance is explained by its driver's features. Other in-brain voxels are pure noise;
    voxels outside the ellipsoid brain are NaN, and a few in-brain voxels are NaN (in every
    session or in one) or constant in one session. Release 2 holds one session's volume in
    memory at a time. See :mod:`neurotask.datasets.synthetic_planted` for the exact model.

    Parameters
    ----------
    root : path
        Dataset root; the layout is that of ``release`` (module docs): release 2 writes the
        downloaded files flat in ``root``.
    features : xarray.DataArray, dims (model, image, feature)
        Covers every image of the written trials (e.g. ``make_synthetic_features`` over
        ``bold5000_trials(...).image.unique()``, or a features store); may be lazy: one model's
        features are read at a time.
    subject : {"CSI1", "CSI2", "CSI3", "CSI4"}
    n_sessions : int or None
        Write the first ``n_sessions`` sessions (default 3) with their real 9 or 10 runs; None
        writes all (15, 9 for CSI4).
    volume_shape : 3 ints, optional
        Voxel grid; default ``SMALL_VOLUME_SHAPE`` (20, 24, 20). ``VOLUME_SHAPES[subject]`` is the real one.
    snr : float or (low, high)
        Signal-to-noise variance ratio of signal voxels: highest at region centers, lowest at
        their edges. ``true_r2 = snr / (1 + snr)``: the default (1/9, 1.5) gives R² in [0.1, 0.6].
    seed : int
        Seed; equal seeds write identical arrays.
    release : {2, 1, "bids"}
        The layout: GLMsingle betas (2, flat as downloaded), release-1 ROI ``.mat`` files (1) or
        OpenNeuro BIDS runs with fmriprep derivatives ("bids").
    n_trials : int, optional
        Keep only the first ``n_trials`` trials of those sessions (cutting the last written one).
    models : sequence of str, optional
        Driver models (default: every model in ``features``).
    signal_fraction : float
        Target fraction of brain voxels inside driver regions.
    regions_per_model : int
        Contiguous regions per driver model.
    nonbinary_mask : bool
        Write brain-mask values in (0.5, 1] instead of 1 inside the brain (loaders binarize > 0).
    roi_grid : {"same", "fine"}
        Releases 2 and "bids": write OpenNeuro's ROI masks on the data's grid, or on a finer,
        T1w-like grid whose nearest-neighbour resampling onto the data's grid gives back the
        planted ROI voxels (:func:`neurotask.datasets.synthetic_layouts.write_roi_masks`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset, dims (voxel,)
        The planted ground truth (also written to ``*_groundtruth.nc``; see
        :func:`open_groundtruth`): per in-brain voxel ``i, j, k``, ``driver`` ('' for noise),
        ``true_r2``, ``snr``, ``region``, ``roi``, ``defect``; attrs list the written files
        and ``roi_grid`` (releases 2 and "bids").

    Examples
    --------
    >>> import tempfile
    >>> from neurotask.datasets import bold5000_trials, make_synthetic_features
    >>> images = bold5000_trials("CSI1", n_sessions=1).image.unique().tolist()
    >>> feats = make_synthetic_features(["normal", "class_object"], images, n_features=32)
    >>> truth = write_synthetic_bold5000(tempfile.mkdtemp(), feats, n_sessions=1)
    >>> sorted(set(truth.driver.values.tolist()))
    ['', 'class_object', 'normal']
    """
    release = str(release)
    if release not in map(str, RELEASES):
        raise ValueError(f"unknown release {release!r}; expected one of {list(RELEASES)}")
    if roi_grid not in ROI_GRIDS:
        raise ValueError(f"unknown roi_grid {roi_grid!r}; expected one of {list(ROI_GRIDS)}")
    if release == "1" and roi_grid != "same":
        raise ValueError(f"roi_grid={roi_grid!r} places ROI masks, which release 1 does not have; write release 2 or 'bids'")
    brain = plant(
        features, subject, n_sessions=n_sessions, n_trials=n_trials, volume_shape=volume_shape, snr=snr,
        models=models, signal_fraction=signal_fraction, regions_per_model=regions_per_model, seed=seed,
    )  # fmt: skip
    root = Path(root)
    if release == "2":
        files = _write_release2(brain, root, nonbinary_mask, roi_grid, progress)
    else:
        # Only GLMsingle betas carry NaN/constant voxels; ROI files and raw runs are complete.
        brain = replace(brain, defect=np.full_like(brain.defect, ""), defect_session=np.zeros_like(brain.defect_session))
        if release == "1":
            files = write_release1(brain, root, progress=progress)
        else:
            files = write_bids(brain, root, roi_grid=roi_grid, progress=progress)
    truth = brain.groundtruth(release, [p.relative_to(root).as_posix() for p in files])
    if release != "1":
        truth.attrs["roi_grid"] = roi_grid
    write_groundtruth(truth, groundtruth_path(root, subject, release))
    return truth


def write_synthetic_dataset(
    root: str | os.PathLike[str],
    subject: str = "CSI1",
    *,
    n_sessions: int | None = None,
    full: bool = False,
    release: int | str = 2,
    n_images: int | None = None,
    seed: int = 0,
    models: Sequence[str] | None = None,
    n_features: int = 256,
    features: xr.DataArray | None = None,
    stimuli: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    """Write a whole synthetic BOLD5000 subject: stimuli, features-planted responses, ground truth.

    What ``neurotask synth`` runs. Without ``features``, planted responses come from
    :func:`make_synthetic_features` over the written trials' images with ``n_features`` features
    per model (default 256, not 2048: plenty to plant and recover signal, and 8× smaller).

    Parameters
    ----------
    root : path
    subject : {"CSI1", "CSI2", "CSI3", "CSI4"}
    n_sessions : int, optional
        Sessions to write; default 3, or all of the subject's sessions when ``full``.
    full : bool
        Full size: the subject's real volume grid (e.g. 71×89×72 for CSI1) and all sessions.
    release : {2, 1, "bids"}
    n_images : int, optional
        Stimuli to draw (first-presentation order); default: every image of the written trials.
    seed : int
    models : sequence of str, optional
        Models of the synthetic features and drivers of the planted responses (default: the 25 tasks;
        with ``features``, the models of ``features``).
    n_features : int
        Features per model of the synthetic features.
    features : xarray.DataArray, dims (model, image, feature), optional
        Real or stored features to plant responses from instead (e.g. ``open_features(path)``).
    stimuli : bool
        Also write the stimulus images.
    progress : bool

    Returns
    -------
    xarray.Dataset
        The ground truth (see :func:`write_synthetic_bold5000`), with attrs ``n_stimuli`` and
        ``features`` (``"synthetic"`` or ``"given"``).
    """
    if n_sessions is None:
        n_sessions = N_SESSIONS[subject] if full else 3
    trials = bold5000_trials(subject, n_sessions=n_sessions)
    names = list(dict.fromkeys(trials.name))
    n_stimuli = 0
    if stimuli:
        if n_images is None:
            n_stimuli = len(write_synthetic_stimuli(root, names=names, seed=seed, progress=progress))
        else:
            n_stimuli = len(write_synthetic_stimuli(root, n_images, seed=seed, subject=subject, progress=progress))
    given = features is not None
    if features is None:
        features = make_synthetic_features(models, trials.image.unique().tolist(), n_features=n_features, seed=seed)
    truth = write_synthetic_bold5000(
        root, features, subject, n_sessions=n_sessions, volume_shape=VOLUME_SHAPES[subject] if full else None,
        seed=seed, release=release, models=models, progress=progress,
    )  # fmt: skip
    truth.attrs.update(n_stimuli=n_stimuli, features="given" if given else "synthetic")
    return truth
