"""Release 1 (ROI responses): ``ROIs/CSIX/mat/CSIX_ROIs_TR<k>.mat`` and the stimulus lists.

Each file holds one (trial, voxel) matrix per ROI (BOLD5000 spells some ROIs ``LHLO``/``RHLO``/
``RHRRSC``; they are mapped to :data:`ROIS`), readable by ``scipy.io.loadmat`` (MATLAB v5) or
h5py (MATLAB v7.3, whose matrices HDF5 stores transposed). The release also ships HDF5 copies,
``ROIs/CSIX/h5/CSIX_ROIs_TR<k>.h5``, with (trial, voxel) datasets as stored; they are read when
the ``.mat`` file is absent (as is a ``.h5`` file beside the ``.mat`` files). A matrix whose rows
do not match the stimulus list but whose columns do is transposed: a (voxel, trial) matrix is
never meant. ``ROIs/stim_lists/CSI0X_stim_lists.txt`` lists the trials, repeated images prefixed
``rep_``. The files do not say where sessions start: ``session_trials`` when given, else the trial
counts of release-2 betas in the same tree, else the real sessions of :data:`SESSION_RUNS` when
the list covers whole sessions, else one session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from neurotask.fmri.bold5000 import ROIS, Layout, Session, canonical_roi, read_lines, runs_of, real_session_trials
from neurotask.fmri.release2 import BETAS, find_release2

__all__ = ["Release1Files", "find_release1", "read_release1", "release1_sessions"]

_TR_CHOICES = (1, 2, 3, 4, 5, 34)


@dataclass(frozen=True)
class Release1Files:
    """One subject's release-1 files, found from their names."""

    matrices: tuple[Path, ...]
    stim_list: Path

    @property
    def files(self) -> list[Path]:
        return [*self.matrices, self.stim_list]


def _tr_files(tr: int | Sequence[int]) -> tuple[str, ...]:
    trs = (tr,) if isinstance(tr, int) else tuple(tr)
    if not trs or any(t not in _TR_CHOICES for t in trs):
        raise ValueError(f"tr must be one of {list(_TR_CHOICES)} or a sequence of 1..5, e.g. (3, 4); got {tr!r}")
    return tuple(f"TR{t}" for t in trs)


def _rois_folder(root: Path) -> Path:
    """``root/ROIs``, or ``root`` itself when it is that folder (it holds ``stim_lists/``)."""
    return root if not (root / "ROIs").is_dir() and (root / "stim_lists").is_dir() else root / "ROIs"


def find_release1(root: Path, subject: str, *, tr: int | Sequence[int] = (3, 4)) -> Release1Files:
    """The ROI files of the chosen TRs and the stimulus list (``mat/*.mat`` preferred over ``h5/*.h5``)."""
    folder = _rois_folder(root) / subject
    files = []
    for name in _tr_files(tr):
        stem = f"{subject}_ROIs_{name}"
        candidates = [folder / "mat" / f"{stem}.mat", folder / "h5" / f"{stem}.h5", folder / "mat" / f"{stem}.h5"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise FileNotFoundError(
                f"release-1 ROI file {candidates[0]} (or {candidates[1]}) is missing; check root, subject and tr"
            )
        files.append(path)
    stim_list = _rois_folder(root) / "stim_lists" / f"CSI{int(subject.removeprefix('CSI')):02d}_stim_lists.txt"
    if not stim_list.exists():
        raise FileNotFoundError(f"the release-1 stimulus list {stim_list} is missing")
    return Release1Files(tuple(files), stim_list)


def _load_roi_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".mat":
        import scipy.io

        try:
            content = scipy.io.loadmat(path)
        except NotImplementedError:  # MATLAB v7.3 files are HDF5
            content = None
        if content is not None:
            return {canonical_roi(k): np.asarray(v, dtype=np.float32) for k, v in content.items() if not k.startswith("__")}
    import h5py

    transposed = path.suffix == ".mat"  # MATLAB v7.3 writes column-major matrices; the .h5 copies are (trial, voxel)
    matrices = {}
    with h5py.File(path, "r") as f:
        for key in (k for k in f.keys() if not k.startswith("#")):
            values = np.asarray(f[key], dtype=np.float32)
            matrices[canonical_roi(key)] = values.T if transposed else values
    return matrices


def _orient(values: np.ndarray, n_trials: int, path: Path, roi: str) -> np.ndarray:
    """``values`` as (trial, voxel): transposed when only its columns match the stimulus list."""
    if values.ndim == 2 and values.shape[0] != n_trials and values.shape[1] == n_trials:
        return values.T
    if values.ndim != 2 or values.shape[0] != n_trials:
        raise ValueError(
            f"{path.name}: {roi} has shape {values.shape}, but the stimulus list has {n_trials} trials; the ROI files "
            f"and the list must be the same subject's"
        )
    return values


def betas_sessions(root: Path, subject: str) -> dict[int, Path] | None:
    """Session files of any release-2 betas version in the tree (TYPED first), or None."""
    for key in sorted(BETAS, reverse=True):
        try:
            return find_release2(root, subject, betas=key).sessions
        except FileNotFoundError:
            continue
    return None


def session_sizes(root: Path, subject: str, n_trials: int, given: Sequence[int] | None) -> tuple[list[int], str]:
    """Trials per session and where the boundaries come from (see the module notes)."""
    if given:
        sizes, source = list(given), "session_trials"
        if sum(sizes) != n_trials:
            raise ValueError(f"session_trials sum to {sum(sizes)}; the release-1 files hold {n_trials} trials")
        return sizes, source
    betas = betas_sessions(root, subject)
    if betas:
        shapes = [nib.load(path).shape for _, path in sorted(betas.items())]
        sizes = [int(shape[3]) if len(shape) > 3 else 1 for shape in shapes]
        if sum(sizes) == n_trials:
            return sizes, "release-2 betas"
    real = real_session_trials(subject)
    covered = np.cumsum(real).tolist()
    if n_trials in covered:
        return real[: covered.index(n_trials) + 1], "BOLD5000 sessions"
    return [n_trials], "none"


def release1_sessions(
    root: Path, subject: str, *, tr: int | Sequence[int] = (3, 4), session_trials: Sequence[int] | None = None
) -> list[int]:
    """Session numbers of a release-1 ingest, from file names and the stimulus list's length."""
    if session_trials:
        return list(range(1, len(session_trials) + 1))
    betas = betas_sessions(root, subject)
    if betas:
        return list(range(1, len(betas) + 1))
    n_trials = len(read_lines(find_release1(root, subject, tr=tr).stim_list))
    covered = np.cumsum(real_session_trials(subject)).tolist()
    return list(range(1, covered.index(n_trials) + 2)) if n_trials in covered else [1]


def read_release1(
    root: Path,
    subject: str,
    *,
    tr: int | Sequence[int] = (3, 4),
    session_trials: Sequence[int] | None = None,
    trials_per_run: int = 37,
    **_: object,
) -> Layout:
    """The release-1 :class:`Layout` of one subject (the ROI matrices are read here, in memory)."""
    found = find_release1(root, subject, tr=tr)
    stimuli = [name.removeprefix("rep_") for name in read_lines(found.stim_list)]
    matrices: dict[str, np.ndarray] = {}
    for path in found.matrices:
        for roi, values in _load_roi_file(path).items():
            matrices[roi] = matrices.get(roi, 0) + _orient(values, len(stimuli), path, roi) / len(found.matrices)
    rois = [r for r in ROIS if r in matrices] + sorted(r for r in matrices if r not in ROIS)
    data = np.concatenate([matrices[r] for r in rois], axis=1).astype(np.float32)
    column_roi = np.concatenate([np.full(matrices[r].shape[1], r, dtype=object) for r in rois])
    sizes, source = session_sizes(root, subject, len(stimuli), session_trials)
    bounds = np.cumsum([0, *sizes])
    sessions = [
        Session(s + 1, runs_of(n, trials_per_run, f"session {s + 1}"), partial(_rows, data, bounds[s], bounds[s + 1]), ())
        for s, n in enumerate(sizes)
    ]
    return Layout(
        release=1, subject=subject, stimuli=stimuli, sessions=sessions, files=found.files, column_roi=column_roi,
        details={"tr": list(_tr_files(tr)), "session_boundaries": source, "trials_per_run": trials_per_run},
    )


def _rows(data: np.ndarray, start: int, stop: int, columns: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data[start:stop][:, columns])
