"""Release-1 ROI files and OpenNeuro BIDS runs for synthetic BOLD5000 subjects.

Both layouts carry the planted responses of :mod:`.synthetic_planted` through a TR-resolved
response: trial ``t`` of voxel ``v`` contributes ``h[k] · s_v(t)`` to the ``k``-th TR after its
onset (1-based, TR = 2 s), with ``h = HRF_BY_TR = (0, 0.35, 1, 1, 0.45)``, plus independent noise
per TR of standard deviation ``√2 σ_v``. The mean of TR 3 and TR 4 is then ``s_v(t)`` plus noise of
standard deviation ``σ_v``: its R² from the driver's features is the recorded ``true_r2``, as for
the release-2 betas.

Release 1, under ``root``::

    ROIs/<SUBJ>/mat/<SUBJ>_ROIs_TR{1,2,3,4,5,34}.mat   scipy.io v5; keys: the 10 canonical ROIs,
                                                       each (trials, voxels) float32; TR34 = mean(TR3, TR4)
    ROIs/stim_lists/CSI0N_stim_lists.txt               one file name per trial, repeats prefixed ``rep_``
    ROIs/<SUBJ>/<SUBJ>_groundtruth.nc                  truth; ``roi``/``roi_index`` give each column's voxel

ROI columns are the ROI's voxels in NIfTI (Fortran) grid order.

BIDS (OpenNeuro ds001499), under ``root``::

    dataset_description.json
    sub-<SUBJ>/ses-XX/func/sub-<SUBJ>_ses-XX_task-5000scenes_run-YY_bold.nii.gz    (x, y, z, 194), TR 2 s
    sub-<SUBJ>/ses-XX/func/sub-<SUBJ>_ses-XX_task-5000scenes_run-YY_events.tsv     OpenNeuro's columns, CRLF
    sub-<SUBJ>/ses-01/func/sub-<SUBJ>_ses-01_task-localizer_run-01_bold.nii.gz      (+ events; loaders skip it)
    derivatives/fmriprep/sub-<SUBJ>/ses-XX/func/
        sub-<SUBJ>_ses-XX_task-5000scenes_run-YY_bold_space-T1w_preproc.nii.gz     preprocessed runs
        sub-<SUBJ>_ses-XX_task-5000scenes_run-YY_bold_space-T1w_brainmask.nii.gz   their brain masks
    derivatives/spm/sub-<SUBJ>/sub-<SUBJ>_mask-<ROI>.nii.gz                      10 ROI masks, BOLD5000's spellings
    derivatives/synthetic/sub-<SUBJ>_groundtruth.nc                             planted truth

Trial ``j`` (0-based) of a run has its onset a few milliseconds off ``6 + 10 j`` s (as in the real
events: 6.0268, 16.0020, …), i.e. nearest to volume ``3 + 5 j``; the ``k``-th TR after it is
volume ``round(onset / 2) + k − 1``. Repeats are marked in ``ImgType`` (``rep_coco``…), never in
``ImgName``. BOLD values are a scanner-like baseline (800–1200 in the brain, ~20 outside) with
responses in percent signal change of that baseline. The preprocessed runs lie on the planted grid
(the truth's ``i, j, k``); the raw runs are the same series with head motion: every other run
is shifted by one voxel along ``i`` — what fmriprep's realignment undoes.

ROI masks (:func:`write_roi_masks`, also for release 2) hold the truth's ``roi`` voxels, file names
spelled per subject as OpenNeuro's (:data:`ROI_FILE_NAMES`: CSI2/CSI3 ``LHLO``/``RHLO``, CSI2
``RHRRSC``). ``roi_grid="same"`` writes them on the runs' grid; ``"fine"`` on a T1w-like grid
(:func:`fine_roi_affine`): 1 mm voxels, each run voxel a 2×2×2 block, a margin of
:data:`FINE_MARGIN` voxels, and an offset of 1/8 run voxel that makes nearest-neighbour resampling
onto the runs' grid unambiguous, so it gives back exactly the planted ROI voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from neurotask.datasets.synthetic_planted import ROI_NAMES, PlantedBrain, save_nifti
from neurotask.datasets.synthetic_stimuli import progress_bar

__all__ = ["HRF_BY_TR", "BIDS_TR", "BIDS_RUN_TRS", "FINE_MARGIN", "ROI_FILE_NAMES", "ROI_GRIDS", "fine_roi_affine",
           "write_release1", "write_bids", "write_roi_masks"]

#: Response amplitude in TR 1..5 after an onset.
HRF_BY_TR = (0.0, 0.35, 1.0, 1.0, 0.45)
#: BOLD5000 repetition time (s) and volumes per 5000scenes run.
BIDS_TR = 2.0
BIDS_RUN_TRS = 194
_FIRST_ONSET_S, _TRIAL_SPACING_S = 6.0, 10.0
_ONSET_JITTER_S = (-0.02, 0.03)  # the real onsets lie milliseconds off whole TRs, either side
_BIDS_SOURCES = {"coco": "coco", "imagenet": "imagenet", "scene": "scenes"}
_FMRIPREP_BOLD, _FMRIPREP_MASK = "_bold_space-T1w_preproc", "_bold_space-T1w_brainmask"

#: The ROI names in each subject's OpenNeuro mask file names (``sub-CSIX_mask-<name>.nii.gz``).
ROI_FILE_NAMES = {
    "CSI1": {r: r for r in ROI_NAMES},
    "CSI2": {**{r: r for r in ROI_NAMES}, "LHLOC": "LHLO", "RHLOC": "RHLO", "RHRSC": "RHRRSC"},
    "CSI3": {**{r: r for r in ROI_NAMES}, "LHLOC": "LHLO", "RHLOC": "RHLO"},
    "CSI4": {r: r for r in ROI_NAMES},
}
#: The grids ROI masks can be written on: the data's, or a finer T1w-like one (module notes).
ROI_GRIDS = ("same", "fine")
#: Fine-grid voxels beyond the data's field of view on every side.
FINE_MARGIN = 3
_FINE_OFFSET = -1 / 8  # data voxels: a data voxel's centre lies 1/8 data voxel from one fine centre, 3/8 from the next


def fine_roi_affine(affine: np.ndarray) -> np.ndarray:
    """The affine of the fine ROI grid of a data grid with ``affine`` (module notes).

    Fine voxel ``f`` lies at data-voxel coordinate ``(f - FINE_MARGIN) / 2 + _FINE_OFFSET``.
    """
    to_data = np.diag([0.5, 0.5, 0.5, 1.0])
    to_data[:3, 3] = -FINE_MARGIN / 2 + _FINE_OFFSET
    return np.asarray(affine, dtype=np.float64) @ to_data


def write_roi_masks(brain: PlantedBrain, root: Path, *, roi_grid: str = "same") -> list[Path]:
    """The ten ROI masks under ``root/derivatives/spm/sub-<SUBJ>/``, spelled as OpenNeuro's; returns the paths.

    Parameters
    ----------
    brain : PlantedBrain
    root : Path
        The dataset folder.
    roi_grid : {"same", "fine"}
        The data's grid, or the fine T1w-like grid of :func:`fine_roi_affine`.

    Returns
    -------
    list of Path
    """
    if roi_grid not in ROI_GRIDS:
        raise ValueError(f"unknown roi_grid {roi_grid!r}; expected one of {list(ROI_GRIDS)}")
    folder = root / "derivatives" / "spm" / f"sub-{brain.subject}"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for roi in ROI_NAMES:
        volume, affine = brain.roi_volume(roi), brain.affine
        if roi_grid == "fine":
            for axis in range(3):
                volume = np.repeat(volume, 2, axis=axis)
            volume, affine = np.pad(volume, FINE_MARGIN), fine_roi_affine(brain.affine)
        path = folder / f"sub-{brain.subject}_mask-{ROI_FILE_NAMES[brain.subject][roi]}.nii.gz"
        save_nifti(volume, affine, path)
        written.append(path)
    return written


def _subject_code(subject: str) -> str:
    """``CSI1`` → ``CSI01`` (release-1 stimulus-list naming)."""
    return f"CSI{int(subject[3:]):02d}"


def write_release1(brain: PlantedBrain, root: Path, *, progress: bool = False) -> list[Path]:
    """Release-1 ROI ``.mat`` files (one per TR choice) and the stimulus list; returns the paths."""
    subject = brain.subject
    mat_dir = root / "ROIs" / subject / "mat"
    list_dir = root / "ROIs" / "stim_lists"
    mat_dir.mkdir(parents=True, exist_ok=True)
    list_dir.mkdir(parents=True, exist_ok=True)
    trials = np.arange(len(brain.trials))
    columns = {roi: np.flatnonzero(brain.roi == roi) for roi in ROI_NAMES}
    in_roi = np.concatenate(list(columns.values()))
    rng = np.random.default_rng([brain.seed, 4])
    signal = brain.signal(trials)[in_roi].T.astype(np.float64)  # (trial, ROI voxel)
    noise_sd = np.sqrt(2.0) * brain.noise_sd[in_roi]
    gain, baseline = brain.gain[in_roi], brain.baseline[in_roi]
    by_tr = {}
    for k, h in enumerate(HRF_BY_TR, start=1):
        by_tr[str(k)] = baseline + gain * (h * signal + noise_sd * rng.standard_normal(signal.shape))
    by_tr["34"] = (by_tr["3"] + by_tr["4"]) / 2
    written = []
    bounds = np.cumsum([0] + [c.size for c in columns.values()])
    with progress_bar(progress, len(by_tr), f"{subject} release-1 ROI files") as advance:
        for tr, values in by_tr.items():
            path = mat_dir / f"{subject}_ROIs_TR{tr}.mat"
            arrays = {roi: values[:, a:b].astype(np.float32) for roi, a, b in zip(ROI_NAMES, bounds[:-1], bounds[1:])}
            scipy.io.savemat(path, arrays, format="5", do_compression=True)
            written.append(path)
            advance()
    names = [("rep_" if p > 1 else "") + n for n, p in zip(brain.trials.name, brain.trials.presentation)]
    stim_list = list_dir / f"{_subject_code(subject)}_stim_lists.txt"
    stim_list.write_text("\n".join(names) + "\n")
    written.append(stim_list)
    return written


def _events(run_trials: pd.DataFrame, subject: str, rng: np.random.Generator) -> pd.DataFrame:
    n = len(run_trials)
    kinds = [_BIDS_SOURCES[s] for s in run_trials.source]
    onset = _FIRST_ONSET_S + _TRIAL_SPACING_S * np.arange(n) + rng.uniform(*_ONSET_JITTER_S, n)
    return pd.DataFrame(
        {
            "onset": onset.round(4),
            "duration": np.ones(n),
            "Subj": int(subject[3:]),
            "Sess": run_trials.session.to_numpy(),
            "Run": run_trials.run.to_numpy(),
            "Trial": run_trials.trial_in_run.to_numpy(),
            "ImgName": run_trials.name.to_numpy(),
            "ImgType": [("rep_" if p > 1 else "") + k for k, p in zip(kinds, run_trials.presentation)],
            "StimOn(s)": onset.round(4),
            "StimOff(s)": (onset + 1).round(4),
            "Response": np.zeros(n, dtype=int),
            "RT": np.zeros(n),
            "stim_file": run_trials.name.to_numpy(),
        }
    )


def write_bids(brain: PlantedBrain, root: Path, *, roi_grid: str = "same", progress: bool = False) -> list[Path]:
    """OpenNeuro-layout BOLD runs with events, fmriprep's preprocessed runs, one localizer run, ROI masks.

    Parameters
    ----------
    brain : PlantedBrain
    root : Path
        The dataset folder.
    roi_grid : {"same", "fine"}
        The grid of the ROI masks (:func:`write_roi_masks`).
    progress : bool

    Returns
    -------
    list of Path
        The files written.
    """
    subject = brain.subject
    description = root / "dataset_description.json"
    root.mkdir(parents=True, exist_ok=True)
    description.write_text(json.dumps({"Name": "synthetic BOLD5000 (neurotask)", "BIDSVersion": "1.0.2"}, indent=2))
    written = [description]
    rng = np.random.default_rng([brain.seed, 5])
    onset_rng = np.random.default_rng([brain.seed, 6])
    intensity = rng.uniform(800.0, 1200.0, brain.flat_index.size)
    amplitude = (0.01 * intensity * brain.gain)[:, None]  # percent signal change of the baseline
    noise_sd = (np.sqrt(2.0) * brain.noise_sd)[:, None]
    hrf = np.asarray(HRF_BY_TR)
    runs = brain.trials.groupby(["session", "run"], sort=True)
    with progress_bar(progress, runs.ngroups, f"{subject} BIDS runs") as advance:
        for (session, run), run_trials in runs:
            stem = f"sub-{subject}_ses-{session:02d}_task-5000scenes_run-{run:02d}"
            func = root / f"sub-{subject}" / f"ses-{session:02d}" / "func"
            prep = root / "derivatives" / "fmriprep" / f"sub-{subject}" / f"ses-{session:02d}" / "func"
            events = _events(run_trials, subject, onset_rng)
            response = np.zeros((brain.flat_index.size, BIDS_RUN_TRS))
            signal = brain.signal(run_trials.index.to_numpy())
            for j, onset in enumerate(np.floor(events.onset.to_numpy() / BIDS_TR + 0.5).astype(int)):
                response[:, onset : onset + hrf.size] += signal[:, j : j + 1] * hrf
            response += noise_sd * rng.standard_normal(response.shape)
            series = intensity[:, None] + amplitude * response
            volume = _run_volume(brain, series, rng)
            written += _save(volume, brain, prep / f"{stem}{_FMRIPREP_BOLD}.nii.gz")
            written += _save(brain.mask_volume(), brain, prep / f"{stem}{_FMRIPREP_MASK}.nii.gz")
            written += _save(np.roll(volume, (session + run) % 2, axis=0), brain, func / f"{stem}_bold.nii.gz")
            events_path = func / f"{stem}_events.tsv"
            events.to_csv(events_path, sep="\t", index=False, lineterminator="\r\n")
            written.append(events_path)
            advance()
    func = root / f"sub-{subject}" / "ses-01" / "func"
    stem = f"sub-{subject}_ses-01_task-localizer_run-01"
    localizer_trs = 12
    series = intensity[:, None] + rng.standard_normal((brain.flat_index.size, localizer_trs))
    written += _save(_run_volume(brain, series, rng), brain, func / f"{stem}_bold.nii.gz")
    blocks = pd.DataFrame({"onset": [0.0, 12.0], "duration": [12.0, 12.0], "trial_type": ["scenes", "objects"]})
    blocks.to_csv(func / f"{stem}_events.tsv", sep="\t", index=False)
    written.append(func / f"{stem}_events.tsv")
    return written + write_roi_masks(brain, root, roi_grid=roi_grid)


def _run_volume(brain: PlantedBrain, series: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 4-D run: ``series`` (brain voxel, TR) inside the brain, dim scanner noise outside."""
    n_trs = series.shape[1]
    volume = np.empty(brain.shape + (n_trs,), dtype=np.float32, order="F")
    flat = volume.reshape(-1, n_trs, order="F")
    flat[:] = 20.0 + 5.0 * rng.standard_normal(flat.shape, dtype=np.float32)
    flat[brain.flat_index] = series
    return volume


def _save(volume: np.ndarray, brain: PlantedBrain, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(volume, brain.affine, path, tr=BIDS_TR if volume.ndim == 4 else None)
    return [path]
