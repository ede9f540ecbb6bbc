"""Release 2 (GLMsingle betas) as users have it: the figshare files, flat in one folder.

The files of one subject (``X`` the subject number, ``XX`` the two-digit session)::

    CSIX_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-XX.nii.gz   4-D (x, y, z, trial), float32 % signal change
    CSIX_brainmask.nii.gz                                    3-D, > 0 inside the brain
    CSIX_imgnames.txt                                        one stimulus name per trial, presentation order

``root`` may be the folder holding them, a folder above it (searched :data:`SEARCH_DEPTH` levels
down), or the ``derivatives/GLMsingle/CSIX/`` tree of earlier neurotask versions. The trial order
is read beside the betas, else from the stimulus archive's
``Stimuli_Presentation_Lists/CSIX/CSIX_imgnames.txt`` under ``root``. ROI masks come from
OpenNeuro's ``derivatives/spm/sub-CSIX/sub-CSIX_mask-<ROI>.nii.gz`` (or ``CSIX_mask-<ROI>`` files)
in the searched folders or in a ``derivatives/spm/sub-CSIX/`` below any of them, BOLD5000's
spellings mapped to :data:`ROIS` (``LHLO`` → ``LHLOC``). Two folders holding the same kind of
file for the subject is an error that lists both: which one is meant cannot be guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from neurotask.fmri.bold5000 import (
    SEARCH_DEPTH,
    SESSION_RUNS,
    TRIALS_PER_RUN,
    Layout,
    Session,
    check_grids,
    read_lines,
    read_volumes,
    roi_mask_files,
    runs_of,
    spm_roi_folder,
    walk_folders,
)

__all__ = ["BETAS", "BETAS_SPELLINGS", "Release2Files", "find_release2", "find_rois", "read_release2"]

#: GLMsingle beta versions: the short name selects the published file-name variant.
BETAS = {
    "TYPEA": "TYPEA-ASSUMEHRF",
    "TYPEB": "TYPEB-FITHRF",
    "TYPEC": "TYPEC-FITHRF-GLMDENOISE",
    "TYPED": "TYPED-FITHRF-GLMDENOISE-RR",
}
#: Every spelling read for each version (the release README spells TYPEB as "TYBEB").
BETAS_SPELLINGS = {**{key: (name,) for key, name in BETAS.items()}, "TYPEB": ("TYPEB-FITHRF", "TYBEB-FITHRF")}

_SPELLING_KEY = {spelling.upper(): key for key, spellings in BETAS_SPELLINGS.items() for spelling in spellings}


@dataclass(frozen=True)
class Release2Files:
    """One subject's release-2 files, found from file names alone (no NIfTI is opened)."""

    subject: str
    betas: str
    folder: Path
    sessions: dict[int, Path]
    names: Path
    mask: Path | None
    rois: dict[str, Path] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        mask = [self.mask] if self.mask else []
        return [self.sessions[s] for s in sorted(self.sessions)] + [self.names, *mask, *self.rois.values()]


def _betas_key(betas: str) -> str:
    key = str(betas).upper()
    key = _SPELLING_KEY.get(key, key)
    if key not in BETAS:
        raise ValueError(
            f"unknown betas {betas!r}; expected one of {sorted(BETAS)} (or a published name such as {BETAS['TYPED']!r})"
        )
    return key


def _betas_pattern(subject: str) -> re.Pattern[str]:
    return re.compile(rf"{subject}_GLMbetas-(?P<kind>[A-Za-z-]+?)_ses-(?P<session>\d+)\.nii(?:\.gz)?")


def _listing(root: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    return f"{names[:12]}{' …' if len(names) > 12 else ''}" if names else "an empty folder"


def _find_betas(root: Path, subject: str, key: str, folders: list[tuple[Path, list[str]]]) -> tuple[Path, dict[int, Path]]:
    """The one folder holding the subject's betas of version ``key``, and its session files."""
    pattern = _betas_pattern(subject)
    wanted: dict[Path, dict[int, list[Path]]] = {}
    others: dict[str, set[Path]] = {}
    for folder, files in folders:
        for name in files:
            match = pattern.fullmatch(name)
            if not match:
                continue
            kind = _SPELLING_KEY.get(match["kind"].upper(), match["kind"])
            if kind == key:
                wanted.setdefault(folder, {}).setdefault(int(match["session"]), []).append(folder / name)
            else:
                others.setdefault(kind, set()).add(folder)
    example = f"{subject}_GLMbetas-{BETAS[key]}_ses-XX.nii.gz"
    if not wanted:
        found = "; ".join(f"{kind} in {', '.join(map(str, sorted(f)))}" for kind, f in sorted(others.items()))
        hint = f"found {subject} betas of other versions: {found}; pass betas= one of {sorted(others)}" if others else (
            f"{root} holds {_listing(root)}. Point root at the folder holding the downloaded {subject} files "
            f"(or a folder up to {SEARCH_DEPTH} levels above it)"
        )
        raise FileNotFoundError(
            f"no release-2 betas {example} in {root} or its sub-folders ({SEARCH_DEPTH} levels searched): {hint}."
        )
    if len(wanted) > 1:
        listed = "\n".join(f"  {folder}  ({len(s)} sessions)" for folder, s in sorted(wanted.items()))
        raise ValueError(
            f"two or more folders under {root} hold {subject}'s {key} betas:\n{listed}\n"
            f"pass root= the one to read, or move the other copy away."
        )
    folder, by_session = next(iter(wanted.items()))
    doubles = {s: paths for s, paths in by_session.items() if len(paths) > 1}
    if doubles:
        s, paths = min(doubles.items())
        raise ValueError(f"{folder} holds ses-{s:02d} twice: {[p.name for p in paths]}; keep one of them")
    return folder, {s: paths[0] for s, paths in sorted(by_session.items())}


def _find_names(root: Path, subject: str, folder: Path, folders: list[tuple[Path, list[str]]]) -> Path:
    """``CSIX_imgnames.txt`` beside the betas, else under ``Stimuli_Presentation_Lists/CSIX/``."""
    name = f"{subject}_imgnames.txt"
    if (folder / name).is_file():
        return folder / name
    lists = [f / name for f, files in folders if name in files and f.name == subject
             and f.parent.name == "Stimuli_Presentation_Lists"]  # fmt: skip
    if not lists:
        raise FileNotFoundError(
            f"the trial order {name} is neither beside the betas in {folder} nor under "
            f"Stimuli_Presentation_Lists/{subject}/ in {root}: copy it from the release (or the stimulus "
            f"archive) next to the betas."
        )
    if len({p.read_bytes() for p in lists}) > 1:
        raise ValueError(f"different trial orders {name} under {root}: {[str(p) for p in lists]}; keep one")
    return lists[0]


def find_rois(root: Path, subject: str, folders: list[tuple[Path, list[str]]]) -> dict[str, Path]:
    """ROI masks ``(sub-)CSIX_mask-<ROI>.nii(.gz)`` in one folder, by canonical ROI name.

    Searched: ``folders``, and OpenNeuro's ``derivatives/spm/sub-CSIX/`` below each of them (so a
    ds001499 tree beside the betas' folder, or one inside it, is found from a root above both).
    Names as :func:`neurotask.fmri.bold5000.roi_mask_files` reads them.
    """
    listed = dict(folders)
    for folder, _ in folders:
        spm = spm_roi_folder(folder, subject)
        if spm not in listed and spm.is_dir():
            listed[spm] = sorted(p.name for p in spm.iterdir() if p.is_file())
    by_folder = {folder: rois for folder, files in listed.items() if (rois := roi_mask_files(folder, subject, files))}
    if len(by_folder) > 1:
        raise ValueError(
            f"two or more folders under {root} hold {subject}'s ROI masks: {[str(f) for f in sorted(by_folder)]}; "
            f"pass root= a folder that holds one of them (e.g. the OpenNeuro derivatives/spm/sub-{subject}/)."
        )
    return next(iter(by_folder.values()), {})


def find_release2(root: Path, subject: str, *, betas: str = "TYPED") -> Release2Files:
    """Find one subject's release-2 files under ``root`` from folder listings alone.

    Parameters
    ----------
    root : Path
        The folder holding the files, a folder up to :data:`SEARCH_DEPTH` levels above it, or a
        tree with ``derivatives/GLMsingle/CSIX/``.
    subject : str
        Canonical subject name (``"CSI1"``).
    betas : str
        ``"TYPEA"`` … ``"TYPED"`` or a published name (``"TYPEB-FITHRF"``, ``"TYBEB-FITHRF"``).

    Returns
    -------
    Release2Files
    """
    key = _betas_key(betas)
    folders = list(walk_folders(root, SEARCH_DEPTH + 1))
    shallow = [(f, files) for f, files in folders if len(f.relative_to(root).parts) <= SEARCH_DEPTH]
    folder, sessions = _find_betas(root, subject, key, shallow)
    names = _find_names(root, subject, folder, folders)
    mask = next((folder / m for m in (f"{subject}_brainmask.nii.gz", f"{subject}_brainmask.nii")
                 if (folder / m).is_file()), None)  # fmt: skip
    return Release2Files(subject, key, folder, sessions, names, mask, find_rois(root, subject, shallow))


def _count_message(subject: str, names: Path, n_names: int, sizes: dict[int, int]) -> str:
    """Why the trial order and the betas disagree, naming the sessions whose betas are missing."""
    total = sum(sizes.values())
    present = sorted(sizes)
    missing = [s for s in range(1, present[-1]) if s not in sizes]
    covered = np.cumsum([TRIALS_PER_RUN * r for r in SESSION_RUNS[subject]]).tolist()
    if n_names in covered:  # the order covers whole real sessions: those after the last present are missing too
        missing += list(range(present[-1] + 1, covered.index(n_names) + 2))
    held = f"the betas hold {total} in {len(present)} sessions (ses-{', ses-'.join(f'{s:02d}' for s in present)})"
    if missing and n_names > total:
        absent = ", ".join(f"ses-{s:02d}" for s in missing)
        return f"{names.name} lists {n_names} trials but betas for {absent} are missing ({held}); download them"
    return (
        f"{names.name} lists {n_names} trials but {held}; the trial order and the betas must come from the same "
        f"subject and release"
    )


def read_release2(
    root: Path, subject: str, *, betas: str = "TYPED", trials_per_run: int = TRIALS_PER_RUN, **_: object
) -> Layout:
    """The release-2 :class:`Layout` of one subject (reads NIfTI headers and the trial order)."""
    found = find_release2(root, subject, betas=betas)
    stimuli = read_lines(found.names)
    files = [found.sessions[s] for s in sorted(found.sessions)]
    grid = check_grids(files)
    sessions = []
    for number, path in sorted(found.sessions.items()):
        shape = nib.load(path).shape
        n_trials = int(shape[3]) if len(shape) > 3 else 1
        sessions.append(Session(number, runs_of(n_trials, trials_per_run, path.name), partial(read_volumes, path), (path,)))
    sizes = {s.number: s.n_trials for s in sessions}
    if sum(sizes.values()) != len(stimuli):
        raise ValueError(_count_message(subject, found.names, len(stimuli), sizes))
    return Layout(
        release=2, subject=subject, stimuli=stimuli, sessions=sessions, files=found.files, grid=grid,
        mask_files=(found.mask,) if found.mask else (), roi_files=found.rois,
        details={"betas": found.betas, "betas_file": BETAS[found.betas], "trials_per_run": trials_per_run,
                 "folder": str(found.folder)},
    )  # fmt: skip
