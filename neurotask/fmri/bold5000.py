"""BOLD5000 as it lies on disk: subjects, ROIs, sessions, volume grids and streaming NIfTI reads.

The shared core of the layout readers (``bold5000/LAYOUTS.md`` lists the real files):

* :mod:`neurotask.fmri.release2` — GLMsingle betas (primary), flat as downloaded from figshare;
* :mod:`neurotask.fmri.release1` — release-1 ROI ``.mat``/``.h5`` files;
* :mod:`neurotask.fmri.bids` — OpenNeuro ds001499 runs, fmriprep's preprocessed T1w runs preferred;
* :mod:`neurotask.fmri.layouts` — ``read_layout``, ``available_sessions``, ``input_files``.

A reader returns a :class:`Layout`: the trial order, per-session trial labels, the volume grid,
the mask/ROI files, and per session a ``read(voxels)`` function returning that session's responses
of the chosen voxels as ``(trial, voxel)`` float32. NIfTI files are decompressed as a stream,
volume by volume, keeping only the chosen voxels, so memory is bounded by one session's masked
responses.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener

__all__ = [
    "ROIS",
    "ROI_ALIASES",
    "SEARCH_DEPTH",
    "SESSION_RUNS",
    "SUBJECTS",
    "TRIALS_PER_RUN",
    "Grid",
    "Layout",
    "Session",
    "canonical_roi",
    "canonical_subject",
    "check_grids",
    "first_volume",
    "grid_of",
    "mean_abs_volume",
    "read_lines",
    "read_volumes",
    "real_session_trials",
    "roi_mask_files",
    "runs_of",
    "spm_roi_folder",
    "walk_folders",
]

SUBJECTS = ("CSI1", "CSI2", "CSI3", "CSI4")

#: The ten BOLD5000 ROIs, in the order voxels are labeled and release-1 columns are concatenated.
ROIS = ("LHEarlyVis", "RHEarlyVis", "LHLOC", "RHLOC", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC", "RHRSC")

#: BOLD5000's inconsistent ROI file names (CSI2/CSI3 spell LHLO/RHLO, CSI2 RHRRSC), mapped to the canonical ones.
ROI_ALIASES = {"LHLO": "LHLOC", "RHLO": "RHLOC", "LHRRSC": "LHRSC", "RHRRSC": "RHRSC"}

TRIALS_PER_RUN = 37

#: Runs per functional session of each subject (9 or 10 runs of 37 trials: 333 or 370 trials), from
#: the runs of OpenNeuro ds001499 (``bold5000/sessions.tsv``). They add up to the trial orders
#: (5254 trials for CSI1-3, 3108 for CSI4).
SESSION_RUNS = {
    "CSI1": (10, 10, 10, 9, 10, 9, 10, 9, 9, 10, 9, 9, 9, 9, 10),
    "CSI2": (10, 9, 10, 10, 10, 9, 9, 9, 9, 9, 10, 10, 9, 10, 9),
    "CSI3": (10, 9, 10, 9, 10, 10, 10, 9, 9, 9, 10, 9, 9, 9, 10),
    "CSI4": (10, 9, 9, 10, 9, 9, 9, 9, 10),
}

#: Folder levels below ``root`` searched for a subject's files (root itself is level 0).
SEARCH_DEPTH = 3
#: Folders never searched: stores written by neurotask (thousands of chunk folders) and their staging copies.
_SKIPPED_SUFFIXES = (".zarr", ".staging")


def canonical_subject(subject: str | int) -> str:
    """``"CSI1"`` from ``"CSI1"``, ``"sub-CSI1"``, ``"csi1"``, ``"CSI01"`` or ``1``."""
    text = str(subject).upper().removeprefix("SUB-")
    match = re.fullmatch(r"(?:CSI)?0*(\d)", text)
    name = f"CSI{match.group(1)}" if match else text
    if name not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}; expected one of {list(SUBJECTS)} (or 1..4)")
    return name


def canonical_roi(name: str) -> str:
    """The canonical ROI name of a BOLD5000 ROI name (``"LHLO"`` → ``"LHLOC"``); unknown names pass through."""
    by_upper = {roi.upper(): roi for roi in ROIS} | {k.upper(): v for k, v in ROI_ALIASES.items()}
    return by_upper.get(name.upper(), name)


def spm_roi_folder(root: Path, subject: str) -> Path:
    """Where OpenNeuro ds001499 keeps a subject's ROI masks: ``root/derivatives/spm/sub-CSIX/``."""
    return root / "derivatives" / "spm" / f"sub-{subject}"


def roi_mask_files(folder: Path, subject: str, names: Iterable[str] | None = None) -> dict[str, Path]:
    """The ROI masks ``(sub-)CSIX_mask-<ROI>.nii[.gz]`` in ``folder``, by canonical ROI name.

    Parameters
    ----------
    folder : Path
        The folder to look in (none found when it does not exist).
    subject : str
        Canonical subject name (``"CSI2"``).
    names : iterable of str, optional
        The file names of ``folder``, when already listed; else the folder is listed.

    Returns
    -------
    dict of str to Path
        In file-name order. ``<ROI>`` is mapped by :func:`canonical_roi` (case-insensitive;
        ``LHLO`` → ``LHLOC``, ``RHRRSC`` → ``RHRSC``); a name that is none of :data:`ROIS` or
        :data:`ROI_ALIASES` is kept as it is spelled (ingestion reports it).

    Raises
    ------
    ValueError
        Two files name the same ROI (``LHLO`` and ``LHLOC``, or a ``.nii`` and a ``.nii.gz``):
        which one is meant cannot be guessed.
    """
    if names is None:
        names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    pattern = re.compile(rf"(?:sub-)?{subject}_mask-(?P<roi>[A-Za-z0-9]+)\.nii(?:\.gz)?")
    found: dict[str, list[Path]] = {}
    for name in sorted(names):
        match = pattern.fullmatch(name)
        if match:
            found.setdefault(canonical_roi(match["roi"]), []).append(folder / name)
    doubles = {roi: paths for roi, paths in found.items() if len(paths) > 1}
    if doubles:
        roi, paths = min(doubles.items())
        raise ValueError(f"{folder} holds two masks of ROI {roi}: {[p.name for p in paths]}; keep one of them")
    return {roi: paths[0] for roi, paths in found.items()}


def real_session_trials(subject: str) -> list[int]:
    """Trials per functional session of a subject, from :data:`SESSION_RUNS`."""
    return [TRIALS_PER_RUN * runs for runs in SESSION_RUNS[subject]]


@dataclass(frozen=True)
class Grid:
    """A volume grid: 3-D shape and voxel-to-world affine, and the file it was read from (for messages)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    source: Path | None = field(default=None, compare=False)

    def matches(self, other: Grid) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=1e-4)


@dataclass
class Session:
    """One session: its 1-based number, the run of each of its trials, and how to read it.

    ``read(voxels)`` returns the session's responses ``(trial, voxel)`` float32 for ``voxels``
    (F-order flat indices into the grid for volumetric layouts; column indices for release 1).
    """

    number: int
    runs: np.ndarray
    read: Callable[[np.ndarray], np.ndarray]
    files: tuple[Path, ...] = ()

    @property
    def n_trials(self) -> int:
        return int(self.runs.size)


@dataclass
class Layout:
    """Everything a loader needs to know about one subject's files in one release layout.

    ``files`` lists every input file the layout reads (what :func:`neurotask.fmri.input_files`
    returns); ``mask_files`` are brain masks on the grid, intersected when there are several
    (fmriprep writes one per run); ``roi_files`` are ROI masks by canonical name
    (:func:`roi_mask_files`; release 2 and BIDS), loaded onto the grid at ingestion.
    """

    release: int | str
    subject: str
    stimuli: list[str]
    sessions: list[Session]
    files: list[Path]
    grid: Grid | None = None
    mask_files: tuple[Path, ...] = ()
    roi_files: dict[str, Path] = field(default_factory=dict)
    column_roi: np.ndarray | None = None
    details: dict[str, object] = field(default_factory=dict)


def walk_folders(root: Path, max_depth: int = SEARCH_DEPTH) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` for ``root`` and its sub-folders down to ``max_depth`` levels, breadth first.

    Hidden folders and neurotask stores (``*.zarr``) are skipped; names are sorted, so the order is
    reproducible. Only folder listings are read.
    """
    level = [root]
    for depth in range(max_depth + 1):
        below = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (PermissionError, FileNotFoundError, NotADirectoryError):
                continue
            files = [e.name for e in entries if e.is_file()]
            yield folder, files
            if depth < max_depth:
                below += [
                    Path(e.path) for e in entries
                    if e.is_dir() and not e.name.startswith(".") and not e.name.endswith(_SKIPPED_SUFFIXES)
                ]
        level = below


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file (LF or CRLF)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def runs_of(n_trials: int, trials_per_run: int, where: str) -> np.ndarray:
    """1-based run labels of a session's trials (consecutive blocks of ``trials_per_run``)."""
    if n_trials % trials_per_run:
        raise ValueError(
            f"{where} holds {n_trials} trials, not a multiple of trials_per_run={trials_per_run}; "
            f"pass the right trials_per_run (BOLD5000 runs hold 37 trials)."
        )
    return np.arange(n_trials) // trials_per_run + 1


def check_grids(files: Sequence[Path]) -> Grid:
    """The common grid of NIfTI files (headers only); an error names a file on another grid."""
    grids = [grid_of(f) for f in files]
    for f, grid in zip(files[1:], grids[1:]):
        if not grid.matches(grids[0]):
            raise ValueError(
                f"{f.name} lies on another grid than {files[0].name}: shape {grid.shape} vs "
                f"{grids[0].shape}, affine\n{grid.affine}\nvs\n{grids[0].affine}"
            )
    return grids[0]


def grid_of(path: Path) -> Grid:
    img = nib.load(path)
    return Grid(tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, dtype=float), Path(path))


# --------------------------------------------------------------------------------------------
# streaming NIfTI reads


def _stream_volumes(path: Path, volumes: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, volume)`` for the wanted volumes of a 3-D/4-D NIfTI, each flat in F order, float32.

    The file is read sequentially (a gzip stream is decompressed once), one volume in memory at a time.
    """
    try:  # gzip and nibabel do not say which file is truncated or corrupt: say it here
        img = nib.load(path)
        proxy = img.dataobj
        shape = img.shape
        n_volumes = int(np.prod(shape[3:], dtype=int)) if len(shape) > 3 else 1
        n_voxels = int(np.prod(shape[:3], dtype=int))
        dtype = np.dtype(proxy.dtype)
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        wanted = set(range(n_volumes)) if volumes is None else set(volumes)
        if wanted and (min(wanted) < 0 or max(wanted) >= n_volumes):
            raise ValueError(f"{path} has {n_volumes} volumes; volumes {sorted(wanted)[:5]}… are out of range")
        last = max(wanted, default=-1)
        with ImageOpener(img.file_map["image"].filename, "rb") as stream:
            stream.seek(proxy.offset)
            for t in range(last + 1):
                buffer = stream.read(n_voxels * dtype.itemsize)
                if len(buffer) < n_voxels * dtype.itemsize:
                    raise EOFError(f"the file ends in volume {t + 1} of {n_volumes}")
                if t not in wanted:
                    continue
                volume = np.frombuffer(buffer, dtype=dtype).astype(np.float32)
                if slope != 1.0 or inter != 0.0:
                    volume = volume * np.float32(slope) + np.float32(inter)
                yield t, volume
    except (EOFError, zlib.error, gzip.BadGzipFile, ImageFileError) as error:
        raise ValueError(f"{path}: truncated or corrupt NIfTI ({error}); re-download it") from error


def read_volumes(path: str | Path, voxels: np.ndarray, volumes: Sequence[int] | None = None) -> np.ndarray:
    """Read chosen voxels of chosen volumes of a NIfTI file, streaming.

    Parameters
    ----------
    path : path-like
        A 3-D or 4-D NIfTI file (``.nii`` or ``.nii.gz``).
    voxels : array of int, shape (n_voxels,)
        Flat voxel indices in F (NIfTI) order: ``i + nx * (j + ny * k)``.
    volumes : sequence of int, optional
        Volume indices, in any order (repeats allowed); all volumes when None.

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_voxels), float32
        Filled in place as the file streams: memory is the output plus one volume.
    """
    path, voxels = Path(path), np.asarray(voxels)
    if volumes is None:
        shape = nib.load(path).shape
        volumes = range(int(np.prod(shape[3:], dtype=int)) if len(shape) > 3 else 1)
    rows: dict[int, list[int]] = {}
    for row, t in enumerate(volumes):
        rows.setdefault(int(t), []).append(row)
    out = np.empty((len(volumes), voxels.size), dtype=np.float32)
    for t, volume in _stream_volumes(path, rows):  # each volume's voxels go straight into their rows
        first, *repeats = rows[t]
        np.take(volume, voxels, out=out[first])
        for row in repeats:
            out[row] = out[first]
    return out


def first_volume(path: str | Path) -> np.ndarray:
    """The first volume of a NIfTI file, flat in F order, float32 (one volume decompressed)."""
    return next(_stream_volumes(Path(path), [0]))[1]


def mean_abs_volume(path: str | Path) -> np.ndarray:
    """Mean over volumes of ``|value|`` (non-finite as 0), as a 3-D array: the image a mask is derived from."""
    path = Path(path)
    shape = nib.load(path).shape[:3]
    total = np.zeros(int(np.prod(shape)), dtype=np.float64)
    count = 0
    for _, volume in _stream_volumes(path):
        total += np.abs(np.nan_to_num(volume, nan=0.0, posinf=0.0, neginf=0.0))
        count += 1
    return (total / max(count, 1)).reshape(shape, order="F")
