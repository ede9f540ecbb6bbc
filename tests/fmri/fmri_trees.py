"""Tiny BOLD5000 trees written directly (nibabel, scipy.io), with every value known to the test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.io

TPR = 37
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@dataclass
class Tree:
    root: Path
    subject: str
    names: list[str]            # stimulus file names per trial (plain, repeats included)
    betas: list[np.ndarray]     # per session (x, y, z, trials) float32, NaN outside the brain
    brain: np.ndarray           # (x, y, z) bool
    nonfinite: np.ndarray       # (x, y, z) bool: in brain, NaN in some session
    constant: np.ndarray        # (x, y, z) bool: in brain, finite, constant in some session
    run_constant: np.ndarray    # (x, y, z) bool: in brain, constant in one run only


def trial_names(n_trials: int, n_repeated: int = 4, shows: int = 3) -> list[str]:
    """Names with ``n_repeated`` images shown ``shows`` times each, spread over the trials."""
    names = [f"n0000000{t % 10}_{t}.JPEG" if t % 3 else f"COCO_train2014_{t:012d}.jpg" for t in range(n_trials)]
    for r in range(n_repeated):
        for s in range(1, shows):
            position = (r * 7 + s * n_trials // shows) % n_trials
            names[position] = names[r * 7]
    return names


def write_release2(
    root: Path,
    subject: str = "CSI1",
    sessions: tuple[int, ...] = (2, 1),
    shape: tuple[int, int, int] = (5, 4, 3),
    seed: int = 0,
    names: list[str] | None = None,
    mask_scale: float = 0.7,
    rois: dict[str, np.ndarray] | None = None,
    mask: bool = True,
    scale: float = 1.0,
    folder: str = "",
    betas_name: str = "TYPED-FITHRF-GLMDENOISE-RR",
    names_folder: str | None = None,
    roi_folder: str = "derivatives/spm/sub-{subject}",
) -> Tree:
    """A release-2 tree with ``sessions`` runs per session (37 trials each) on a tiny grid.

    The files lie flat in ``root / folder`` (as downloaded: ``folder=""``); the trial order beside
    them, or in ``root / names_folder`` when given; ROI masks as OpenNeuro's
    ``derivatives/spm/sub-CSIX/sub-CSIX_mask-<ROI>.nii.gz``.
    """
    rng = np.random.default_rng(seed)
    n_trials = TPR * sum(sessions)
    names = names or trial_names(n_trials)
    brain = np.zeros(shape, dtype=bool)
    brain[1:-1, :, :] = True
    brain[1, 0, 0] = False
    inside = np.argwhere(brain)
    nonfinite = np.zeros(shape, dtype=bool)
    constant = np.zeros(shape, dtype=bool)
    nonfinite[tuple(inside[0])] = nonfinite[tuple(inside[1])] = True
    constant[tuple(inside[2])] = True
    run_constant = np.zeros(shape, dtype=bool)
    run_constant[tuple(inside[3])] = True
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    betas = []
    for s, n_runs in enumerate(sessions):
        values = (rng.standard_normal(shape + (n_runs * TPR,)) * 3 + 5).astype(np.float32) * np.float32(scale)
        values[~brain] = np.nan
        values[tuple(inside[0]) + (slice(0, 1),)] = np.nan  # NaN in one trial of every session
        if s == 0:
            values[tuple(inside[3]) + (slice(0, TPR),)] = 2.0  # constant in run 1 of session 1 only
        if s == len(sessions) - 1:
            values[tuple(inside[1])] = np.inf  # non-finite only in the last session
            values[tuple(inside[2])] = 4.0  # constant only in the last session
        betas.append(values)
        img = nib.Nifti1Image(values, AFFINE)
        nib.save(img, out / f"{subject}_GLMbetas-{betas_name}_ses-{s + 1:02d}.nii.gz")
    names_dir = out if names_folder is None else root / names_folder
    names_dir.mkdir(parents=True, exist_ok=True)
    (names_dir / f"{subject}_imgnames.txt").write_text("\n".join(names) + "\n")
    if mask:
        nib.save(nib.Nifti1Image(brain.astype(np.float32) * mask_scale, AFFINE), out / f"{subject}_brainmask.nii.gz")
    for name, roi in (rois or {}).items():
        roi_dir = root / roi_folder.format(subject=subject)
        roi_dir.mkdir(parents=True, exist_ok=True)
        prefix = f"sub-{subject}" if roi_dir.name.startswith("sub-") else subject
        nib.save(nib.Nifti1Image(roi.astype(np.uint8), AFFINE), roi_dir / f"{prefix}_mask-{name}.nii.gz")
    return Tree(root, subject, names, betas, brain, nonfinite, constant, run_constant)


def write_release1(root: Path, subject: str = "CSI2", n_trials: int = 74, seed: int = 1) -> dict:
    """Release-1 ROI files for TR1..5 and TR34, with ``rep_`` on repeated images in the stim list."""
    rng = np.random.default_rng(seed)
    names = trial_names(n_trials)
    counts = {n: names.count(n) for n in names}
    listed = [("rep_" + n) if counts[n] > 1 else n for n in names]
    sizes = {"LHEarlyVis": 3, "RHEarlyVis": 2, "LHLOC": 2, "RHLOC": 1, "LHOPA": 1, "RHOPA": 2,
             "LHPPA": 2, "RHPPA": 1, "LHRSC": 1, "RHRSC": 2}
    folder = root / "ROIs" / subject / "mat"
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for tr in ("TR1", "TR2", "TR3", "TR4", "TR5", "TR34"):
        data[tr] = {roi: rng.standard_normal((n_trials, n)) for roi, n in sizes.items()}
        scipy.io.savemat(folder / f"{subject}_ROIs_{tr}.mat", data[tr])
    stim = root / "ROIs" / "stim_lists"
    stim.mkdir(parents=True, exist_ok=True)
    (stim / f"CSI0{subject[-1]}_stim_lists.txt").write_text("\n".join(listed) + "\n")
    return {"names": names, "data": data, "sizes": sizes}


#: Onsets as in OpenNeuro's events: a few milliseconds off whole TRs (TR = 2 s), either side.
BIDS_ONSETS = (0.0268, 6.0020, 11.9850, 20.0310)
#: The volume nearest each onset (TR 1 of the trial).
BIDS_ONSET_VOLUMES = (0, 3, 6, 10)
FMRIPREP_NAMES = {
    "1.x": ("_bold_space-T1w_preproc", "_bold_space-T1w_brainmask"),
    "new": ("_space-T1w_desc-preproc_bold", "_space-T1w_desc-brain_mask"),
}


def write_bids(root: Path, subject: str = "CSI3", shape=(4, 3, 2), seed: int = 2, fmriprep: str | None = None) -> dict:
    """Two sessions × two 5000scenes runs (4 trials each) plus a localizer run, TR = 2 s.

    Events as OpenNeuro's: real columns, onsets off whole TRs, the repeat marked in ``ImgType``
    only, run 2 of every session written with CRLF line endings. ``fmriprep`` ("1.x" or "new"
    names) also writes preprocessed runs (other values) with run brain masks; session 1 run 1's
    mask leaves out voxel (0, 0, 0).
    """
    rng = np.random.default_rng(seed)
    runs, prep, names = {}, {}, []
    for ses in (1, 2):
        func = root / f"sub-{subject}" / f"ses-{ses:02d}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        for run in (1, 2):
            n_vols = 20
            values = rng.standard_normal(shape + (n_vols,)).astype(np.float32)
            img = nib.Nifti1Image(values, AFFINE)
            img.header.set_zooms((2.0, 2.0, 2.0, 2.0))
            stem = f"sub-{subject}_ses-{ses:02d}_task-5000scenes_run-{run:02d}"
            nib.save(img, func / f"{stem}_bold.nii.gz")
            trial_names_run = [f"img{ses}{run}{t}.jpg" for t in range(4)]
            kinds = ["scenes"] * 4
            if ses == 2 and run == 2:  # img110.jpg shown again: plain name, rep_ in ImgType
                trial_names_run[0], kinds[0] = "img110.jpg", "rep_scenes"
            names += trial_names_run
            rows = ["onset\tduration\tSubj\tSess\tRun\tTrial\tImgName\tImgType\tStimOn(s)\tStimOff(s)\tResponse\tRT"] + [
                f"{o}\t1\t{subject[-1]}\t{ses}\t{run}\t{t + 1}\t{n}\t{k}\t{o}\t{o + 1}\t1\t0.8"
                for t, (o, n, k) in enumerate(zip(BIDS_ONSETS, trial_names_run, kinds))
            ]
            newline = "\r\n" if run == 2 else "\n"
            (func / f"{stem}_events.tsv").write_bytes((newline.join(rows) + newline).encode())
            runs[(ses, run)] = (values, BIDS_ONSETS)
            if fmriprep:
                prep[(ses, run)] = _write_fmriprep(root, subject, ses, stem, shape, rng, fmriprep, first=(ses, run) == (1, 1))
        localizer = nib.Nifti1Image(np.zeros(shape + (5,), np.float32), AFFINE)
        nib.save(localizer, func / f"sub-{subject}_ses-{ses:02d}_task-localizer_run-01_bold.nii.gz")
    return {"runs": runs, "names": names, "fmriprep": prep}


def _write_fmriprep(root: Path, subject: str, ses: int, stem: str, shape, rng, names: str, first: bool) -> np.ndarray:
    folder = root / "derivatives" / "fmriprep" / f"sub-{subject}" / f"ses-{ses:02d}" / "func"
    folder.mkdir(parents=True, exist_ok=True)
    values = (100 + rng.standard_normal(shape + (20,))).astype(np.float32)
    img = nib.Nifti1Image(values, AFFINE)
    img.header.set_zooms((2.0, 2.0, 2.0, 2.0))
    bold, mask = FMRIPREP_NAMES[names]
    nib.save(img, folder / f"{stem}{bold}.nii.gz")
    brain = np.ones(shape, np.uint8)
    if first:
        brain[0, 0, 0] = 0
    nib.save(nib.Nifti1Image(brain, AFFINE), folder / f"{stem}{mask}.nii.gz")
    return values
