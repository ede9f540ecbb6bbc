"""One entry point per question about a subject's files: read them, which sessions, which files.

:func:`read_layout` describes a subject for ingestion (NIfTI headers and small text files);
:func:`available_sessions` and :func:`input_files` answer from file names alone, cheaply enough
for a config check or a content fingerprint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from neurotask.fmri.bids import find_bids, read_bids
from neurotask.fmri.bold5000 import Layout, canonical_subject
from neurotask.fmri.release1 import find_release1, read_release1, release1_sessions
from neurotask.fmri.release2 import find_release2, read_release2
from neurotask.ids import image_id

__all__ = ["LAYOUTS", "available_sessions", "input_files", "read_layout"]

#: Release readers by name; ``read_layout`` dispatches on the ``release`` argument.
LAYOUTS: dict[int | str, Callable[..., Layout]] = {2: read_release2, 1: read_release1, "bids": read_bids}


def _release_key(release: int | str) -> int | str:
    key = release.lower() if isinstance(release, str) and not release.isdigit() else int(release)
    if key not in LAYOUTS:
        raise ValueError(f"unknown release {release!r}; expected one of {list(LAYOUTS)}")
    return key


#: Names (globs; ``{s}`` the subject) that mark a root of each layout, for the hint given when the
#: asked-for layout is not found in a root that holds another one.
_MARKERS: dict[int | str, tuple[str, ...]] = {
    2: ("{s}_GLMbetas-*.nii*", "*/{s}_GLMbetas-*.nii*", "*/*/{s}_GLMbetas-*.nii*"),
    1: ("ROIs/{s}", "{s}/mat", "{s}/h5"),
    "bids": ("sub-{s}", "dataset_description.json"),
}
_LAYOUT_NAMES = {2: "release 2 (GLMsingle betas)", 1: "release 1 (ROI files)", "bids": "OpenNeuro BIDS (ds001499)"}


def _root(root: str | os.PathLike[str]) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"BOLD5000 root {str(path)!r} is not a directory")
    return path


@contextlib.contextmanager
def _hint_other_layouts(root: Path, subject: str, key: int | str) -> Iterator[None]:
    """Re-raise a file-not-found error naming the layouts ``root`` does hold, when it holds others."""
    try:
        yield
    except FileNotFoundError as error:
        others = [other for other, names in _MARKERS.items() if other != key
                  and any(next(root.glob(name.format(s=subject)), None) is not None for name in names)]
        if not others:
            raise
        described = " and ".join(_LAYOUT_NAMES[other] for other in others)
        options = " or ".join(f"release={other!r} (command line: --release {other})" for other in others)
        raise FileNotFoundError(f"{error} {root} looks like {described}: pass {options}.") from error


def read_layout(root: str | os.PathLike[str], subject: str | int = "CSI1", release: int | str = 2, **options: object) -> Layout:
    """Describe one subject's files in one release layout (reads headers and small text files only).

    Parameters
    ----------
    root : path-like
        Release 2: the folder holding the downloaded files, or a folder up to three levels above
        it. Release 1: the folder holding ``ROIs/`` (or ``ROIs/`` itself). BIDS: the dataset folder
        (``sub-CSIX/``, and ``derivatives/spm/sub-CSIX/`` for ROI masks).
    subject : str or int
        ``"CSI1"`` … ``"CSI4"``.
    release : {2, 1, "bids"}
        Which layout to read.
    **options
        Layout options: ``betas`` and ``trials_per_run`` (release 2); ``tr``, ``session_trials``
        (release 1); ``tr``, ``repetition_time``, ``preprocessed`` (BIDS).

    Returns
    -------
    Layout
    """
    key, path, name = _release_key(release), _root(root), canonical_subject(subject)
    with _hint_other_layouts(path, name, key):
        layout = LAYOUTS[key](path, name, **options)
    layout.stimuli = [image_id(name) for name in layout.stimuli]
    return layout


def available_sessions(
    root: str | os.PathLike[str], subject: str | int = "CSI1", release: int | str = 2, **options: object
) -> list[int]:
    """The session numbers an ingest of ``root`` would hold, from file names (no NIfTI is opened).

    Parameters
    ----------
    root, subject, release, **options
        As for :func:`read_layout`.

    Returns
    -------
    list of int
        1-based session numbers, sorted. Release 1: ``1..len(session_trials)`` when given, else
        the sessions of release-2 betas in the same tree, else the real BOLD5000 sessions the
        stimulus list covers, else ``[1]``.

    Examples
    --------
    >>> available_sessions("BOLD5000", "CSI1")  # doctest: +SKIP
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    """
    key, path, name = _release_key(release), _root(root), canonical_subject(subject)
    with _hint_other_layouts(path, name, key):
        if key == 2:
            return sorted(find_release2(path, name, betas=str(options.get("betas", "TYPED"))).sessions)
        if key == "bids":
            files = find_bids(path, name, preprocessed=bool(options.get("preprocessed", True)))
            return sorted({run.session for run in files.runs})
        return release1_sessions(path, name, tr=options.get("tr", (3, 4)), session_trials=options.get("session_trials"))  # type: ignore[arg-type]


def input_files(
    root: str | os.PathLike[str], subject: str | int = "CSI1", release: int | str = 2, **options: object
) -> list[Path]:
    """The files an ingest of ``root`` reads, found from folder listings (no NIfTI is opened).

    Parameters
    ----------
    root, subject, release, **options
        As for :func:`read_layout`.

    Returns
    -------
    list of pathlib.Path
        Release 2: session betas in session order, the trial order, the brain mask, ROI masks.
        Release 1: the ROI files of the chosen TRs and the stimulus list. BIDS: runs, events,
        (fmriprep) run brain masks and the ``derivatives/spm`` ROI masks. Equal to
        ``read_layout(...).files``.
    """
    key, path, name = _release_key(release), _root(root), canonical_subject(subject)
    with _hint_other_layouts(path, name, key):
        if key == 2:
            return find_release2(path, name, betas=str(options.get("betas", "TYPED"))).files
        if key == "bids":
            return find_bids(path, name, preprocessed=bool(options.get("preprocessed", True))).files
        return find_release1(path, name, tr=options.get("tr", (3, 4))).files  # type: ignore[arg-type]
