"""OpenNeuro ds001499 (BIDS): fmriprep's preprocessed T1w runs by default, raw runs on request.

Read under ``root`` (the BIDS dataset folder), for the 5000scenes task only (localizer runs are
skipped)::

    sub-CSIX/ses-XX/func/sub-CSIX_ses-XX_task-5000scenes_run-YY_bold.nii.gz         raw runs
    sub-CSIX/ses-XX/func/sub-CSIX_ses-XX_task-5000scenes_run-YY_events.tsv          trials (always from here)
    derivatives/fmriprep/sub-CSIX/ses-XX/func/
        sub-CSIX_ses-XX_task-5000scenes_run-YY_bold_space-T1w_preproc.nii.gz        preprocessed (fmriprep 1.x)
        sub-CSIX_ses-XX_task-5000scenes_run-YY_bold_space-T1w_brainmask.nii.gz      its brain mask
    derivatives/spm/sub-CSIX/sub-CSIX_mask-<ROI>.nii.gz                             ROI masks (optional)

(fmriprep ≥ 1.4's ``_space-T1w_desc-preproc_bold`` / ``_space-T1w_desc-brain_mask`` names are read
too). ``preprocessed=True`` (the default) reads the fmriprep runs when the subject has any, else
the raw runs; ``False`` reads the raw runs. Which was read is recorded (``bids_runs``).

A trial is the mean of chosen volumes after its onset: TR ``k`` (1-based) is volume
``round(onset / TR) + k − 1``, the volume nearest the onset being TR 1 (BOLD5000 onsets lie a few
milliseconds off whole TRs: 6.0268 s, 16.0020 s, …). events.tsv may end lines with LF or CRLF.
Repeated images are marked in ``ImgType`` (``rep_coco``…), never in ``ImgName``: repeats are
labeled by counting each image's presentations, as for the other layouts.

ROI masks are named as release 2 names them (:func:`neurotask.fmri.bold5000.roi_mask_files`):
BOLD5000's spellings map to :data:`~neurotask.fmri.bold5000.ROIS` (CSI2/CSI3's ``LHLO``/``RHLO`` →
``LHLOC``/``RHLOC``, CSI2's ``RHRRSC`` → ``RHRSC``, case-insensitively); another ``mask-<name>`` is
kept under its own name and reported at ingestion (it may be the user's own ROI, or a misspelling
worth fixing; dropping it would lose voxels silently). Two files naming one ROI are an error.

Where ds001499's masks lie relative to fmriprep's T1w runs, or to the raw runs, is not documented,
so only the grids are compared: masks on the runs' grid (shape and affine) are used as they are,
for raw and preprocessed runs alike; a mask on another grid is refused unless ``resample_mask``
asks to resample it by world coordinates (nearest neighbour). That fixes a grid, not a space: a
mask in another space lands off the brain, and an ROI with most of its voxels outside the brain
mask is reported (:func:`neurotask.fmri.masking.roi_masks`). Raw runs are not realigned, so head
motion moves them under a fixed mask.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from neurotask.fmri.bold5000 import Layout, Session, check_grids, read_volumes, roi_mask_files, spm_roi_folder

__all__ = ["BidsFiles", "BidsRun", "find_bids", "read_bids", "read_events"]

_RAW = "_bold"
#: fmriprep preprocessed-run suffixes and their brain masks (1.x names first).
_FMRIPREP = {"_bold_space-T1w_preproc": "_bold_space-T1w_brainmask", "_space-T1w_desc-preproc_bold": "_space-T1w_desc-brain_mask"}


@dataclass(frozen=True)
class BidsRun:
    """One 5000scenes run: its BOLD series, its events and (fmriprep) its brain mask."""

    session: int
    run: int
    bold: Path
    events: Path
    mask: Path | None


@dataclass(frozen=True)
class BidsFiles:
    """The runs a BIDS ingest reads, in (session, run) order, which kind they are, and the ROI masks."""

    runs: tuple[BidsRun, ...]
    kind: str  # "fmriprep-T1w" or "raw"
    rois: dict[str, Path] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        masks = [r.mask for r in self.runs if r.mask is not None]
        return [r.bold for r in self.runs] + [r.events for r in self.runs] + masks + list(self.rois.values())


def _runs(folder: Path, subject: str, suffixes: Sequence[str]) -> dict[tuple[int, int], tuple[Path, str]]:
    """``(session, run) → (file, stem before the suffix)`` of the 5000scenes runs under ``folder``."""
    alternatives = "|".join(re.escape(s) for s in suffixes)
    pattern = re.compile(rf"(sub-{subject}_ses-(\d+)_task-5000scenes_run-(\d+))(?:{alternatives})\.nii(?:\.gz)?")
    found = {}
    for path in sorted(folder.glob("ses-*/func/*.nii*")):
        match = pattern.fullmatch(path.name)
        if match:
            found.setdefault((int(match[2]), int(match[3])), (path, match[1]))
    return found


def _label(keys: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"ses-{s:02d} run-{r:02d}" for s, r in sorted(keys)[:6]) + (" …" if len(keys) > 6 else "")


def find_bids(root: Path, subject: str, *, preprocessed: bool = True) -> BidsFiles:
    """The subject's 5000scenes runs and ROI masks to read, from folder listings alone (no NIfTI is opened).

    Parameters
    ----------
    root : Path
        The BIDS dataset folder (holding ``sub-CSIX/``).
    subject : str
        Canonical subject name (``"CSI1"``).
    preprocessed : bool
        Read fmriprep's T1w runs when the subject has any (else the raw runs); False: the raw runs.

    Returns
    -------
    BidsFiles
        ROI masks from ``derivatives/spm/sub-CSIX/`` by canonical name (none when absent), for raw
        and preprocessed runs alike (see the module notes).
    """
    raw = _runs(root / f"sub-{subject}", subject, [_RAW])
    fmriprep_dir = root / "derivatives" / "fmriprep" / f"sub-{subject}"
    prep = _runs(fmriprep_dir, subject, list(_FMRIPREP)) if preprocessed else {}
    use_prep = bool(prep)
    where = fmriprep_dir if use_prep else root / f"sub-{subject}"
    chosen = prep if use_prep else raw
    if not chosen:
        also = f" nor preprocessed runs *_bold_space-T1w_preproc.nii.gz in {fmriprep_dir}" if preprocessed else ""
        raise FileNotFoundError(
            f"no BIDS runs ses-XX/func/sub-{subject}_ses-XX_task-5000scenes_run-YY_bold.nii.gz in {where}{also}; "
            f"root must be the BIDS dataset folder holding sub-{subject}/"
        )
    lacking = sorted(set(raw) - set(prep)) if use_prep else []
    if lacking:
        raise ValueError(
            f"{fmriprep_dir} lacks the preprocessed runs of {len(lacking)} raw runs ({_label(lacking)}); "
            f"pass preprocessed=False to read the raw runs, or complete the fmriprep derivatives"
        )
    runs = []
    for (session, run), (path, stem) in sorted(chosen.items()):
        events = root / f"sub-{subject}" / path.parent.relative_to(where) / f"{stem}_events.tsv"
        if not events.is_file():
            raise FileNotFoundError(f"the events of {path.name} are missing: expected {events}")
        mask = None
        if use_prep:
            suffix = next(s for s in _FMRIPREP if path.name.startswith(stem + s))
            mask = next((p for p in path.parent.glob(f"{stem}{_FMRIPREP[suffix]}.nii*")), None)
        runs.append(BidsRun(session, run, path, events, mask))
    rois = roi_mask_files(spm_roi_folder(root, subject), subject)
    return BidsFiles(tuple(runs), "fmriprep-T1w" if use_prep else "raw", rois)


def read_events(path: Path) -> tuple[np.ndarray, list[str]]:
    """Onsets (s) and image names of an events.tsv (LF or CRLF line endings)."""
    with path.open(newline="") as f:
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f, delimiter="\t")]
    columns = set(rows[0]) if rows else set()
    if rows and not {"onset", "ImgName"} <= columns:
        raise ValueError(f"{path} lacks the columns onset and ImgName of BOLD5000 events; found {sorted(columns)}")
    return np.array([float(r["onset"]) for r in rows], dtype=np.float64), [r["ImgName"] for r in rows]


def _offsets(tr: int | Sequence[int]) -> tuple[int, ...]:
    offsets = (3, 4) if tr == 34 else ((tr,) if isinstance(tr, int) else tuple(tr))
    if not offsets or any(not 1 <= t <= 20 for t in offsets):
        raise ValueError(f"tr must name TRs after onset, 1-based (e.g. (3, 4)); got {tr!r}")
    return offsets


#: BOLD5000's repetition time in seconds (all its functional runs).
BOLD5000_TR = 2.0

_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def _header_seconds(img: nib.Nifti1Image) -> float:
    """A run's TR in seconds from its NIfTI header (time unit honoured); BOLD5000's when absent."""
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or zooms[3] <= 0:
        return BOLD5000_TR
    return float(zooms[3]) * _TIME_UNITS.get(img.header.get_xyzt_units()[1], 1.0)


def read_bids(
    root: Path, subject: str, *, tr: int | Sequence[int] = (3, 4), repetition_time: float | None = None,
    preprocessed: bool = True, **_: object,
) -> Layout:
    """The BIDS :class:`Layout` of one subject (reads NIfTI headers and the events).

    ``roi_files`` holds the ``derivatives/spm`` ROI masks by canonical name; ingestion loads them
    onto the runs' grid (module notes).
    """
    offsets = _offsets(tr)
    found = find_bids(root, subject, preprocessed=preprocessed)
    grid = check_grids([r.bold for r in found.runs])
    by_session: dict[int, list[tuple[Path, int, list[int]]]] = {}
    stimuli: list[str] = []
    used_tr = set()
    for run in found.runs:
        onsets, names = read_events(run.events)
        img = nib.load(run.bold)
        seconds = repetition_time or _header_seconds(img)
        used_tr.add(seconds)
        nearest = np.floor(onsets / seconds + 0.5).astype(int)  # half up, not numpy's half to even
        volumes = [int(v) + k - 1 for v in nearest for k in offsets]
        n_volumes = int(img.shape[3]) if len(img.shape) > 3 else 1
        if volumes and max(volumes) >= n_volumes:
            raise ValueError(
                f"{run.bold.name} has {n_volumes} volumes, but tr={tr!r} after its last onset needs volume "
                f"{max(volumes)}; choose earlier TRs"
            )
        stimuli += names
        by_session.setdefault(run.session, []).append((run.bold, run.run, volumes))
    sessions = []
    for number, pieces in sorted(by_session.items()):
        labels = np.concatenate([np.full(len(v) // len(offsets), run) for _, run, v in pieces])
        sessions.append(Session(number, labels, partial(_read_session, pieces, len(offsets)), tuple(p for p, _, _ in pieces)))
    if repetition_time is None and any(not np.isclose(t, BOLD5000_TR) for t in used_tr):
        warnings.warn(
            f"the BIDS runs' headers give a TR of {sorted(used_tr)} s, BOLD5000's is {BOLD5000_TR:g} s: trials "
            f"take their volumes by the headers' TR; pass repetition_time={BOLD5000_TR:g} if the headers are wrong",
            UserWarning, stacklevel=2,
        )
    masks = tuple(r.mask for r in found.runs)
    return Layout(
        release="bids", subject=subject, stimuli=stimuli, sessions=sessions, files=found.files, grid=grid,
        mask_files=masks if all(m is not None for m in masks) else (), roi_files=found.rois,
        details={"tr": list(offsets), "repetition_time": sorted(used_tr), "bids_runs": found.kind},
    )  # fmt: skip


def _read_session(pieces: list[tuple[Path, int, list[int]]], n_offsets: int, voxels: np.ndarray) -> np.ndarray:
    blocks = []
    for path, _, volumes in pieces:
        values = read_volumes(path, voxels, volumes)
        blocks.append(values.reshape(-1, n_offsets, voxels.size).mean(axis=1, dtype=np.float64).astype(np.float32))
    return np.concatenate(blocks, axis=0)
