"""BOLD5000 release layouts: find a subject's files and read them one session at a time.

Three layouts are read (file names as in the real releases, see the cross-helper contract A):

* **release 2** (GLMsingle, primary): ``derivatives/GLMsingle/<SUBJ>/<SUBJ>_GLMbetas-<TYPE>_ses-XX.nii.gz``
  (4-D, one volume per trial), ``<SUBJ>_imgnames.txt``, ``<SUBJ>_brainmask.nii.gz`` and ROI masks
  ``derivatives/ROIs/<SUBJ>/<SUBJ>_mask-<ROI>.nii.gz``;
* **release 1** ROI files: ``ROIs/<SUBJ>/mat/<SUBJ>_ROIs_TR<k>.mat`` (one (trial, voxel) matrix per
  ROI) and ``ROIs/stim_lists/CSI0N_stim_lists.txt`` (repeats carry a ``rep_`` prefix);
* **BIDS** (OpenNeuro ds001499): ``sub-<SUBJ>/ses-XX/func/*_task-5000scenes_run-YY_bold.nii.gz`` with
  ``*_events.tsv``; a trial is the mean of chosen volumes after its onset; localizer runs are skipped.

A reader returns a :class:`Layout`: the trial order, per-session trial labels, the volume grid and the
mask/ROI files, and per session a ``read(voxels)`` function returning that session's responses of
the chosen voxels as ``(trial, voxel)`` float32. NIfTI files are decompressed as a stream, volume by
volume, keeping only the chosen voxels, so memory is bounded by one session's masked responses.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from neurotask.stimuli import image_id

__all__ = [
    "BETAS",
    "LAYOUTS",
    "ROIS",
    "ROI_ALIASES",
    "SUBJECTS",
    "Grid",
    "Layout",
    "Session",
    "canonical_roi",
    "canonical_subject",
    "read_layout",
    "read_volumes",
]

SUBJECTS = ("CSI1", "CSI2", "CSI3", "CSI4")

#: The ten BOLD5000 ROIs, in the order voxels are labeled and release-1 columns are concatenated.
ROIS = ("LHEarlyVis", "RHEarlyVis", "LHLOC", "RHLOC", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC", "RHRSC")

#: BOLD5000's inconsistent ROI file names, mapped to the canonical ones.
ROI_ALIASES = {"LHLO": "LHLOC", "RHLO": "RHLOC", "LHRRSC": "LHRSC", "RHRRSC": "RHRSC"}

#: GLMsingle beta versions: the name selects the file-name variant.
BETAS = {
    "TYPEA": "TYPEA-ONOFF",
    "TYPEB": "TYPEB-FITHRF",
    "TYPEC": "TYPEC-FITHRF-GLMDENOISE",
    "TYPED": "TYPED-FITHRF-GLMDENOISE-RR",
}

_SESSION = re.compile(r"_ses-(\d+)")
_RUN = re.compile(r"_run-(\d+)")


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


@dataclass(frozen=True)
class Grid:
    """A volume grid: 3-D shape and voxel-to-world affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

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
    """Everything a loader needs to know about one subject's files in one release layout."""

    release: int | str
    subject: str
    stimuli: list[str]
    sessions: list[Session]
    grid: Grid | None = None
    mask_file: Path | None = None
    roi_files: dict[str, Path] = field(default_factory=dict)
    column_roi: np.ndarray | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        extra = [self.mask_file] if self.mask_file else []
        return [f for s in self.sessions for f in s.files] + extra + list(self.roi_files.values())


# --------------------------------------------------------------------------------------------
# streaming NIfTI reads


def _grid_of(path: Path) -> Grid:
    img = nib.load(path)
    return Grid(tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, dtype=float))


def _stream_volumes(path: Path, volumes: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, volume)`` for the wanted volumes of a 3-D/4-D NIfTI, each flat in F order, float32.

    The file is read sequentially (a gzip stream is decompressed once), one volume in memory at a time.
    """
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
            if t not in wanted:
                continue
            volume = np.frombuffer(buffer, dtype=dtype).astype(np.float32)
            if slope != 1.0 or inter != 0.0:
                volume = volume * np.float32(slope) + np.float32(inter)
            yield t, volume


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
    """
    voxels = np.asarray(voxels)
    picked = {t: volume[voxels] for t, volume in _stream_volumes(Path(path), volumes)}
    order = sorted(picked) if volumes is None else list(volumes)
    out = np.empty((len(order), voxels.size), dtype=np.float32)
    for row, t in enumerate(order):
        out[row] = picked[t]
    return out


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


# --------------------------------------------------------------------------------------------
# release 2


def _runs_of(n_trials: int, trials_per_run: int, where: str) -> np.ndarray:
    if n_trials % trials_per_run:
        raise ValueError(
            f"{where} holds {n_trials} trials, not a multiple of trials_per_run={trials_per_run}; "
            f"pass the right trials_per_run (BOLD5000 runs hold 37 trials)."
        )
    return np.arange(n_trials) // trials_per_run + 1


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _check_grids(files: Sequence[Path]) -> Grid:
    grids = [_grid_of(f) for f in files]
    for f, grid in zip(files[1:], grids[1:]):
        if not grid.matches(grids[0]):
            raise ValueError(
                f"{f.name} lies on another grid than {files[0].name}: shape {grid.shape} vs "
                f"{grids[0].shape}, affine\n{grid.affine}\nvs\n{grids[0].affine}"
            )
    return grids[0]


def _roi_files(root: Path, subject: str) -> dict[str, Path]:
    folder = root / "derivatives" / "ROIs" / subject
    files = {}
    for path in sorted(folder.glob(f"{subject}_mask-*.nii*")):
        name = path.name.split("_mask-", 1)[1].split(".nii", 1)[0]
        files[canonical_roi(name)] = path
    return files


def _release2(root: Path, subject: str, *, betas: str = "TYPED", trials_per_run: int = 37, **_: object) -> Layout:
    if betas not in BETAS:
        raise ValueError(f"unknown betas {betas!r}; expected one of {sorted(BETAS)}")
    folder = root / "derivatives" / "GLMsingle" / subject
    files = sorted(folder.glob(f"{subject}_GLMbetas-{BETAS[betas]}_ses-*.nii*"))
    if not files:
        present = sorted(p.name for p in folder.glob("*"))[:10] if folder.exists() else "folder missing"
        raise FileNotFoundError(
            f"no release-2 betas {subject}_GLMbetas-{BETAS[betas]}_ses-XX.nii.gz in {folder} "
            f"(found: {present}). Check root and subject, or choose betas= among {sorted(BETAS)}."
        )
    files.sort(key=lambda f: int(_SESSION.search(f.name).group(1)))
    names_file = folder / f"{subject}_imgnames.txt"
    if not names_file.exists():
        raise FileNotFoundError(f"the trial order {names_file} is missing")
    stimuli = _read_lines(names_file)
    grid = _check_grids(files)
    sessions = []
    for f in files:
        shape = nib.load(f).shape
        n_trials = int(shape[3]) if len(shape) > 3 else 1
        number = int(_SESSION.search(f.name).group(1))
        sessions.append(Session(number, _runs_of(n_trials, trials_per_run, f.name), partial(_read_file, f), (f,)))
    total = sum(s.n_trials for s in sessions)
    if total != len(stimuli):
        raise ValueError(f"{names_file.name} lists {len(stimuli)} trials but the betas hold {total}")
    mask = folder / f"{subject}_brainmask.nii.gz"
    return Layout(
        release=2, subject=subject, stimuli=stimuli, sessions=sessions, grid=grid,
        mask_file=mask if mask.exists() else None, roi_files=_roi_files(root, subject),
        details={"betas": betas, "trials_per_run": trials_per_run},
    )


def _read_file(path: Path, voxels: np.ndarray) -> np.ndarray:
    return read_volumes(path, voxels)


# --------------------------------------------------------------------------------------------
# release 1


def _tr_files(tr: int | Sequence[int]) -> tuple[str, ...]:
    trs = (tr,) if isinstance(tr, int) else tuple(tr)
    allowed = {1, 2, 3, 4, 5, 34}
    if not trs or any(t not in allowed for t in trs):
        raise ValueError(f"tr must be one of {sorted(allowed)} or a sequence of 1..5, e.g. (3, 4); got {tr!r}")
    return tuple(f"TR{t}" for t in trs)


def _load_roi_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".mat":
        import scipy.io

        try:
            content = scipy.io.loadmat(path)
        except NotImplementedError:  # MATLAB v7.3 files are HDF5
            content = None
        if content is not None:
            return {canonical_roi(k): np.asarray(v, dtype=np.float32) for k, v in content.items() if not k.startswith("__")}
    try:
        import h5py
    except ImportError as error:
        raise ImportError(f"{path.name} is an HDF5 (MATLAB v7.3) file; reading it needs h5py: pip install h5py") from error
    with h5py.File(path, "r") as f:  # HDF5 stores MATLAB matrices transposed
        return {canonical_roi(k): np.asarray(f[k], dtype=np.float32).T for k in f.keys() if not k.startswith("#")}


def _session_sizes_from_betas(root: Path, subject: str) -> list[int] | None:
    folder = root / "derivatives" / "GLMsingle" / subject
    files = sorted(folder.glob(f"{subject}_GLMbetas-*_ses-*.nii*"))
    by_session: dict[int, int] = {}
    for f in files:
        shape = nib.load(f).shape
        by_session.setdefault(int(_SESSION.search(f.name).group(1)), int(shape[3]) if len(shape) > 3 else 1)
    return [by_session[s] for s in sorted(by_session)] or None


def _release1(
    root: Path,
    subject: str,
    *,
    tr: int | Sequence[int] = (3, 4),
    session_trials: Sequence[int] | None = None,
    trials_per_run: int = 37,
    **_: object,
) -> Layout:
    folder = root / "ROIs" / subject / "mat"
    matrices: dict[str, np.ndarray] = {}
    files = []
    for name in _tr_files(tr):
        candidates = [folder / f"{subject}_ROIs_{name}.{ext}" for ext in ("mat", "h5")]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise FileNotFoundError(f"release-1 ROI file {candidates[0]} (or .h5) is missing; check root, subject and tr")
        files.append(path)
        for roi, values in _load_roi_file(path).items():
            matrices[roi] = matrices.get(roi, 0) + values / len(_tr_files(tr))
    number = subject.removeprefix("CSI")
    stim_file = root / "ROIs" / "stim_lists" / f"CSI{int(number):02d}_stim_lists.txt"
    if not stim_file.exists():
        raise FileNotFoundError(f"the release-1 stimulus list {stim_file} is missing")
    stimuli = [name.removeprefix("rep_") for name in _read_lines(stim_file)]
    rois = [r for r in ROIS if r in matrices] + sorted(r for r in matrices if r not in ROIS)
    data = np.concatenate([matrices[r] for r in rois], axis=1).astype(np.float32)
    if data.shape[0] != len(stimuli):
        raise ValueError(f"{stim_file.name} lists {len(stimuli)} trials but the ROI matrices hold {data.shape[0]}")
    column_roi = np.concatenate([np.full(matrices[r].shape[1], r, dtype=object) for r in rois])
    sizes = list(session_trials) if session_trials is not None else _session_sizes_from_betas(root, subject)
    source = "session_trials" if session_trials is not None else ("release-2 betas" if sizes else "none")
    sizes = sizes or [len(stimuli)]
    if sum(sizes) != len(stimuli):
        raise ValueError(f"session_trials sum to {sum(sizes)}; the release-1 files hold {len(stimuli)} trials")
    bounds = np.cumsum([0, *sizes])
    sessions = [
        Session(s + 1, _runs_of(n, trials_per_run, f"session {s + 1}"), partial(_rows, data, bounds[s], bounds[s + 1]), ())
        for s, n in enumerate(sizes)
    ]
    sessions[0].files = tuple(files) + (stim_file,)
    return Layout(
        release=1, subject=subject, stimuli=stimuli, sessions=sessions, column_roi=column_roi,
        details={"tr": list(_tr_files(tr)), "session_boundaries": source, "trials_per_run": trials_per_run},
    )


def _rows(data: np.ndarray, start: int, stop: int, columns: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data[start:stop][:, columns])


# --------------------------------------------------------------------------------------------
# BIDS


def _bids(
    root: Path, subject: str, *, tr: int | Sequence[int] = (3, 4), repetition_time: float | None = None, **_: object
) -> Layout:
    offsets = (3, 4) if tr == 34 else ((tr,) if isinstance(tr, int) else tuple(tr))
    if not offsets or any(not 1 <= t <= 20 for t in offsets):
        raise ValueError(f"tr must name TRs after onset, 1-based (e.g. (3, 4)); got {tr!r}")
    runs = sorted(
        (root / f"sub-{subject}").glob(f"ses-*/func/sub-{subject}_ses-*_task-5000scenes_run-*_bold.nii*"),
        key=lambda f: (int(_SESSION.search(f.name).group(1)), int(_RUN.search(f.name).group(1))),
    )
    if not runs:
        raise FileNotFoundError(f"no BIDS runs sub-{subject}/ses-XX/func/*_task-5000scenes_run-YY_bold.nii.gz under {root}")
    grid = _check_grids(runs)
    by_session: dict[int, list[tuple[Path, int, list[int]]]] = {}
    stimuli: list[str] = []
    used_tr = []
    for path in runs:
        events = Path(str(path).split("_bold.nii")[0] + "_events.tsv")
        with events.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        img = nib.load(path)
        zooms = img.header.get_zooms()
        seconds = repetition_time or (float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else 2.0)
        used_tr.append(seconds)
        volumes = [int(round(float(r["onset"]) / seconds)) + k - 1 for r in rows for k in offsets]
        n_volumes = int(img.shape[3]) if len(img.shape) > 3 else 1
        if volumes and max(volumes) >= n_volumes:
            raise ValueError(
                f"{path.name} has {n_volumes} volumes, but tr={tr!r} after its last onset needs volume "
                f"{max(volumes)}; choose earlier TRs"
            )
        stimuli += [r["ImgName"].strip().removeprefix("rep_") for r in rows]
        by_session.setdefault(int(_SESSION.search(path.name).group(1)), []).append(
            (path, int(_RUN.search(path.name).group(1)), volumes)
        )
    sessions = []
    for number in sorted(by_session):
        pieces = by_session[number]
        run_labels = np.concatenate([np.full(len(v) // len(offsets), run) for _, run, v in pieces])
        sessions.append(
            Session(number, run_labels, partial(_read_bids_session, pieces, len(offsets)), tuple(p for p, _, _ in pieces))
        )
    mask = root / "derivatives" / "GLMsingle" / subject / f"{subject}_brainmask.nii.gz"
    return Layout(
        release="bids", subject=subject, stimuli=stimuli, sessions=sessions, grid=grid,
        mask_file=mask if mask.exists() else None, details={"tr": list(offsets), "repetition_time": sorted(set(used_tr))},
    )


def _read_bids_session(pieces: list[tuple[Path, int, list[int]]], n_offsets: int, voxels: np.ndarray) -> np.ndarray:
    blocks = []
    for path, _, volumes in pieces:
        values = read_volumes(path, voxels, volumes)
        blocks.append(values.reshape(-1, n_offsets, voxels.size).mean(axis=1, dtype=np.float64).astype(np.float32))
    return np.concatenate(blocks, axis=0)


#: Release readers by name; ``read_layout`` dispatches on the ``release`` argument.
LAYOUTS: dict[int | str, Callable[..., Layout]] = {2: _release2, 1: _release1, "bids": _bids}


def read_layout(root: str | Path, subject: str | int = "CSI1", release: int | str = 2, **options: object) -> Layout:
    """Describe one subject's files in one release layout (reads headers and small text files only).

    Parameters
    ----------
    root : path-like
        The BOLD5000 root folder.
    subject : str or int
        ``"CSI1"`` … ``"CSI4"``.
    release : {2, 1, "bids"}
        Which layout to read.
    **options
        Layout options: ``betas`` and ``trials_per_run`` (release 2), ``tr``, ``session_trials``
        (release 1), ``tr``, ``repetition_time`` (BIDS).
    """
    key = release.lower() if isinstance(release, str) and not release.isdigit() else int(release)
    if key not in LAYOUTS:
        raise ValueError(f"unknown release {release!r}; expected one of {list(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BOLD5000 root {str(root)!r} is not a directory")
    layout = LAYOUTS[key](root, canonical_subject(subject), **options)
    layout.stimuli = [image_id(name) for name in layout.stimuli]
    return layout
