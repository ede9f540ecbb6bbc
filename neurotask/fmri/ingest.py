"""Ingest BOLD5000 into a responses store, streaming, resumably (DESIGN §2–3).

How the write is organized, and why
-----------------------------------
The responses schema is chunked ``(all trials, 4096 voxels)``: encoding reads all trials of a voxel
chunk at once, and one chunk holds exactly that. The files, however, come one session at a time,
and a session (333–370 trials) covers only part of every such chunk. Writing session slices into
``(all, 4096)`` chunks would rewrite each chunk 15 times; re-reading every session's 4-D file once per
voxel chunk would decompress the data ~50 times. So ingestion runs in two passes:

1. **Stage** (one session in memory): each session's file is streamed once, volume by volume,
   keeping only the brain-mask voxels; the (trial, voxel) block is screened (finite? constant in a
   session or run?) and written raw into a staging store chunked ``(gcd of session sizes = 37 trials,
   4096 voxels)``, so every session is a whole number of staging chunks and is written by regions.
2. **Write** (one voxel chunk in memory): the kept voxels are now known; for each output chunk of
   4096 voxels, all trials of those voxels are read from the staging store (the few staging chunks
   that hold them), z-scored within session/run, and written as one ``(all, 4096)`` region.

Peak memory is one session's masked block (≈ 370 × in-mask voxels × 4 bytes) or one output chunk
(trials × 4096 × 4 bytes), not the data size. Both stores are written through
:class:`neurotask.stores.RegionWriter`, so an interrupted ingest resumes where it stopped (staged
sessions are screened again from the staging store, not from the NIfTI files). The staging store
(``<store>.staging``) is deleted once the responses store is finalized.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from rich.progress import Progress

from neurotask.fmri.bold5000 import Layout
from neurotask.fmri.layouts import read_layout
from neurotask.fmri.masking import (
    MaskLike, VoxelScreen, brain_mask, check_mask, is_finite_choice, roi_labels, roi_masks,
)
from neurotask.fmri.normalize import _check, _zscore_groups, trial_groups
from neurotask.stores import (
    RegionWriter,
    StoreError,
    fingerprint,
    is_complete,
    open_responses,
    open_store,
    sha256_array,
)

__all__ = ["load_bold5000"]

logger = logging.getLogger("neurotask.fmri")

VOXEL_CHUNK = 4096


def _fingerprint(paths: Sequence[Path]) -> dict[str, str]:
    """Identify input files: small ones by content (in-place edits show), betas by size, mtime and edges."""
    return {path.name: fingerprint([path]) for path in paths}


def _presentations(images: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per trial: 1-based presentation count of its image so far, and whether the image repeats."""
    seen: Counter[str] = Counter()
    presentation = np.empty(len(images), dtype=np.int64)
    for t, image in enumerate(images):
        seen[image] += 1
        presentation[t] = seen[image]
    repeat = np.array([seen[image] > 1 for image in images], dtype=bool)
    return presentation, repeat


def _candidates(
    layout: Layout, mask: MaskLike | None, resample_mask: bool
) -> tuple[dict[str, object], np.ndarray | None]:
    """Candidate voxels (the binarized brain mask) as coords and read indices, plus the mask volume."""
    if layout.grid is None:  # release 1: columns of the ROI matrices
        n = layout.column_roi.size
        return {"index": np.arange(n), "ijk": (np.full(n, -1),) * 3, "roi": layout.column_roi, "mask": "none"}, None
    grid = layout.grid
    volume, source = brain_mask(mask, grid, layout.mask_files, layout.sessions[0].files[0], resample=resample_mask)
    if not volume.any():
        raise ValueError(
            f"the brain mask ({source}) holds no voxel; pass a mask= that covers the brain, or mask='finite'"
        )
    ijk = np.nonzero(volume)
    rois = roi_masks(layout.roi_files, grid, volume, resample=resample_mask)
    labels, overlaps = roi_labels(rois, ijk) if rois else (None, 0)
    if overlaps:
        logger.info("%d voxels lie in several ROIs: labeled with the first in canonical order", overlaps)
    index = np.ravel_multi_index(ijk, grid.shape, order="F")
    return {"index": index, "ijk": ijk, "roi": labels, "mask": source, "roi_overlaps": overlaps}, volume


def _stage(layout: Layout, candidates: dict[str, object], path: Path, parameters: dict, progress: Progress) -> VoxelScreen:
    """Pass 1: stream each session once, screen it, and write it raw into the staging store."""
    sizes = [s.n_trials for s in layout.sessions]
    n_trials, n_voxels = sum(sizes), candidates["index"].size
    template = xr.Dataset({"raw": (("trial", "voxel"), da.zeros((n_trials, n_voxels), dtype=np.float32, chunks=-1))})
    writer = RegionWriter(
        path, template, region_dims=["trial"], chunks={"trial": math.gcd(*sizes), "voxel": VOXEL_CHUNK},
        parameters=parameters, overwrite=True,
    )
    pending = {(r["trial"].start, r["trial"].stop) for r in writer.pending()}
    screen = VoxelScreen(n_voxels)
    task = progress.add_task(f"{layout.subject}: stage sessions", total=len(sizes))
    start = 0
    for session in layout.sessions:
        stop = start + session.n_trials
        todo = sorted(r for r in pending if start <= r[0] < stop)
        if todo:
            values = session.read(candidates["index"])
            for a, b in todo:
                writer.write(xr.DataArray(values[a - start : b - start], dims=("trial", "voxel"), name="raw"),
                             {"trial": slice(a, b)})
        else:  # resumed: screen the staged copy
            values = open_store(path, kind="staging", allow_incomplete=True)["raw"][start:stop].values
        screen.update(values, session.runs)
        del values
        progress.advance(task)
        start = stop
    if not writer.complete:
        writer.finalize()
    return screen


def _mask_id(mask: MaskLike | None) -> str | None:
    if mask is None or isinstance(mask, (str, os.PathLike)):
        return None if mask is None else str(mask)
    if isinstance(mask, np.ndarray):
        return f"array:{sha256_array(np.asarray(mask))}"
    return f"image:{sha256_array(np.asarray(mask.dataobj))}"


def _is_path(mask: MaskLike | None) -> bool:
    return isinstance(mask, (str, os.PathLike)) and not is_finite_choice(mask)


def _dropped(layout: Layout, keep: np.ndarray, screened: dict[str, int], finite: bool) -> dict[str, int]:
    """Dropped-voxel counts by reason; with mask="finite" there is no mask, only the finiteness screen."""
    n_grid = int(np.prod(layout.grid.shape)) if layout.grid is not None else keep.size
    if finite:
        return {"outside_mask": 0, **screened,
                "nonfinite_in_session": screened["nonfinite_in_session"] + n_grid - keep.size}  # fmt: skip
    return {"outside_mask": n_grid - keep.size, **screened}


def _check_survivors(layout: Layout, keep: np.ndarray, screened: dict[str, int], dropped: dict[str, int],
                     source: str) -> None:
    """A clear error when the screens leave no voxel, naming what each screen removed."""
    if keep.any():
        return
    removed = ", ".join(f"{reason.replace('_', ' ')}: {count}" for reason, count in dropped.items())
    misfit = screened["nonfinite_in_session"] == keep.size and source.startswith(("tree:", "given:"))
    hint = (
        "The mask may not fit the betas (they are non-finite everywhere in it): pass mask='finite' to keep the "
        "voxels finite in every session, or resample_mask=True for a mask on another grid."
        if misfit else "Check the input files."
    )
    raise ValueError(
        f"no voxel of {layout.subject} survives the voxel screens: {keep.size} candidates (mask {source}); "
        f"dropped {removed}. {hint}"
    )


def _output_path(store: str | os.PathLike[str] | None, subject: str) -> Path:
    if store is not None:
        return Path(store)
    folder = Path(tempfile.mkdtemp(prefix="neurotask-"))
    path = folder / f"sub-{subject}.zarr"
    logger.info("store=None: writing the responses to the temporary store %s", path)
    return path


def load_bold5000(
    root: str | os.PathLike[str],
    subject: str | int = "CSI1",
    release: int | str = 2,
    store: str | os.PathLike[str] | None = None,
    *,
    mask: MaskLike | None = None,
    normalize: str | None = "session",
    betas: str = "TYPED",
    tr: int | Sequence[int] = (3, 4),
    resample_mask: bool = False,
    trials_per_run: int = 37,
    session_trials: Sequence[int] | None = None,
    preprocessed: bool = True,
    voxel_chunk: int = VOXEL_CHUNK,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.DataArray:
    """Ingest one BOLD5000 subject into a responses store and open it lazily.

    Parameters
    ----------
    root : path-like
        Release 2: the folder holding the downloaded files (``CSI1_GLMbetas-…_ses-01.nii.gz``,
        ``CSI1_brainmask.nii.gz``, ``CSI1_imgnames.txt``), or a folder up to three levels above it.
        Release 1: the folder holding ``ROIs/`` (or ``ROIs/`` itself). BIDS: the dataset folder
        holding ``sub-CSIx/``.
    subject : str or int
        ``"CSI1"`` … ``"CSI4"`` (``"sub-CSI1"`` and ``1`` are accepted).
    release : {2, 1, "bids"}
        Layout: 2 = GLMsingle betas (primary), 1 = release-1 ROI files, "bids" = OpenNeuro runs.
    store : path-like, optional
        Where to write the responses store. None writes to a new temporary folder (logged; not
        resumable across processes). An existing complete store with the same parameters is
        reopened without reading any input; an interrupted one is resumed.
    mask : None, "finite", path-like, nibabel image or array of bool, shape (x, y, z), optional
        Brain mask (binarized > 0). Default: the tree's ``CSIX_brainmask.nii.gz`` beside the betas
        (release 2), the intersection of fmriprep's run brain masks (BIDS); when there is none,
        one is derived from the first file's mean ``|value|`` volume with
        ``nilearn.masking.compute_epi_mask``. ``"finite"``: no mask, every voxel finite in every
        session (for a shipped mask that does not fit the betas). Ignored for release 1.
    normalize : {"session", "run", "none"}
        z-score each voxel within session (default) or run (ddof=0), or keep raw values.
    betas : {"TYPEA", "TYPEB", "TYPEC", "TYPED"}
        GLMsingle beta version (release 2): TYPEA-ASSUMEHRF, TYPEB-FITHRF (also spelled TYBEB),
        TYPEC-FITHRF-GLMDENOISE, TYPED-FITHRF-GLMDENOISE-RR (recommended); a published name works too.
    tr : int or sequence of int
        TRs after onset, 1-based. Release 1: ``(3, 4)`` averages the TR3 and TR4 files, ``34`` reads
        the TR34 file, ``k`` reads TRk. BIDS: the volumes ``onset/TR + k - 1`` averaged per trial.
    resample_mask : bool
        Resample a brain or ROI mask on another grid to the grid of the betas (or BIDS runs) by
        world coordinates, nearest neighbour, instead of raising :class:`neurotask.fmri.GridMismatchError`.
    trials_per_run : int
        Trials per run (37 in BOLD5000); runs are numbered 1.. within each session (releases 1, 2).
    session_trials : sequence of int, optional
        Release 1 only: trials per session (the ROI files do not say). Default (None or empty): read from release-2
        betas in the same tree if present, else BOLD5000's real sessions when the stimulus list
        covers whole sessions, else all trials form session 1 (a warning is logged).
    preprocessed : bool
        BIDS only: True (default) reads fmriprep's
        ``derivatives/fmriprep/…_bold_space-T1w_preproc.nii.gz`` runs when the subject has any
        (else the raw runs); False reads the raw runs. Which were read is recorded in attrs
        ``bids_runs`` ("fmriprep-T1w" or "raw").
    voxel_chunk : int
        Voxels per store chunk.
    overwrite : bool
        Replace a store written with other parameters.
    progress : bool
        Show rich progress bars.

    Returns
    -------
    xarray.DataArray, dims (trial, voxel)
        Lazy (opened from the store), float32, with ``image`` (stimulus id), ``session``, ``run``
        (1-based), ``presentation`` (1-based count of the image's showings so far) and ``repeat``
        (the image is shown more than once) on trial; ``i, j, k`` on voxel (-1 for release 1, which
        has no voxel positions) and ``roi`` when ROI masks exist ("" outside them): release 1's
        ROI columns, or OpenNeuro's ``derivatives/spm/sub-CSIX/sub-CSIX_mask-<ROI>.nii.gz`` (release 2
        and BIDS) named as in :data:`neurotask.fmri.ROIS` (``LHLO`` → ``LHLOC``, ``RHRRSC`` →
        ``RHRSC``); a warning reports ROI masks mostly outside the brain mask, or of unknown names
        (kept under their own). Attrs: subject,
        release, affine (JSON), volume_shape, mask_sha256 (of the kept-voxel volume), dropped_voxels
        (JSON counts by reason), mask_source, normalization, and the layout's choices (betas, tr,
        bids_runs).

    Examples
    --------
    >>> resp = nt.load_bold5000("BOLD5000", subject="CSI1", store="sub-CSI1.zarr")  # doctest: +SKIP
    >>> resp.groupby("session").mean()                                              # doctest: +SKIP
    """
    normalize = _check(normalize)
    check_mask(mask)
    layout = read_layout(
        root, subject, release, betas=betas, tr=tr, trials_per_run=trials_per_run, session_trials=session_trials,
        preprocessed=preprocessed,
    )
    path = _output_path(store, layout.subject)
    parameters = {
        "root": str(Path(root).resolve()), "subject": layout.subject, "release": layout.release,
        "mask": _mask_id(mask), "resample_mask": resample_mask,
        "normalize": normalize, "voxel_chunk": voxel_chunk, **layout.details,
        "inputs": _fingerprint(layout.files + ([Path(mask)] if _is_path(mask) else [])),
    }
    if path.exists():
        existing = open_store(path, kind="responses", allow_incomplete=True).attrs.get("parameters")
        same = existing == json.dumps(parameters, sort_keys=True, default=str)
        if same and is_complete(path):
            logger.info("%s is complete with the same parameters: reopened", path)
            return open_responses(path)
        if not same and not overwrite:
            raise StoreError(
                f"a store already exists at {str(path)!r} with other parameters ({existing}). "
                f"Choose another store path, delete it, or pass overwrite=True."
            )
    if layout.details.get("session_boundaries") == "none":
        logger.warning("release 1: session boundaries unknown; all trials form session 1 (pass session_trials)")
    with Progress(disable=not progress, transient=True) as bar:
        candidates, volume = _candidates(layout, mask, resample_mask)
        staging = Path(f"{path}.staging")
        stage_parameters = {k: v for k, v in parameters.items() if k not in ("normalize", "voxel_chunk")}
        started = time.perf_counter()
        try:
            screen = _stage(layout, candidates, staging, {**stage_parameters, "stage": True}, bar)
        except Exception:  # an unreadable input fails again on resume: keep staging only across interruptions
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("staged %d sessions in %.1f s", len(layout.sessions), time.perf_counter() - started)
        keep, screened = screen.keep(by_run=normalize == "run")
        dropped = _dropped(layout, keep, screened, is_finite_choice(mask))
        if not keep.any():
            shutil.rmtree(staging, ignore_errors=True)
            _check_survivors(layout, keep, screened, dropped, str(candidates["mask"]))
        for reason, count in dropped.items():
            logger.info("%s: dropped %d voxels (%s)", layout.subject, count, reason)
        started = time.perf_counter()
        _write(layout, candidates, volume, keep, dropped, normalize, staging, path, parameters, voxel_chunk, overwrite, bar)
        logger.info("wrote %d voxels in %.1f s", int(keep.sum()), time.perf_counter() - started)
    shutil.rmtree(staging, ignore_errors=True)
    return open_responses(path)


def _write(
    layout: Layout, candidates: dict[str, object], volume: np.ndarray | None, keep: np.ndarray,
    dropped: dict[str, int], normalize: str, staging: Path, path: Path, parameters: dict,
    voxel_chunk: int, overwrite: bool, bar: Progress,
) -> None:
    """Pass 2: one (all trials, voxel chunk) region at a time, from the staging store."""
    kept = np.flatnonzero(keep)
    session = np.concatenate([np.full(s.n_trials, s.number) for s in layout.sessions])
    run = np.concatenate([s.runs for s in layout.sessions])
    presentation, repeat = _presentations(layout.stimuli)
    i, j, k = (np.asarray(axis)[kept].astype(np.int64) for axis in candidates["ijk"])
    voxel_coords = {"i": ("voxel", i), "j": ("voxel", j), "k": ("voxel", k)}
    if candidates["roi"] is not None:
        voxel_coords["roi"] = ("voxel", np.asarray(candidates["roi"], dtype=str)[kept])
    coords = {
        "image": ("trial", np.asarray(layout.stimuli, dtype=str)), "session": ("trial", session),
        "run": ("trial", run), "presentation": ("trial", presentation), "repeat": ("trial", repeat), **voxel_coords,
    }
    data = da.zeros((session.size, kept.size), dtype=np.float32, chunks=-1)
    template = xr.Dataset({"responses": (("trial", "voxel"), data)}, coords=coords)
    if volume is not None:
        final_mask = np.zeros(layout.grid.shape, dtype=np.uint8)
        final_mask[i, j, k] = 1
    attrs = {
        "subject": layout.subject, "release": str(layout.release),
        "affine": json.dumps(layout.grid.affine.tolist() if layout.grid is not None else None),
        "volume_shape": list(layout.grid.shape) if layout.grid is not None else [],
        "mask_sha256": sha256_array(final_mask) if volume is not None else sha256_array(keep),
        "mask_source": candidates["mask"], "roi_overlaps": candidates.get("roi_overlaps", 0),
        "dropped_voxels": json.dumps(dropped), "normalization": normalize,
        **{key: json.dumps(value) if not isinstance(value, (str, int)) else value for key, value in layout.details.items()},
    }
    writer = RegionWriter(
        path, template, region_dims=["voxel"], chunks={"trial": -1, "voxel": voxel_chunk},
        parameters=parameters, attrs=attrs, overwrite=overwrite,
    )
    groups = trial_groups(session, run, normalize)
    raw = open_store(staging, kind="staging")["raw"].data
    pending = writer.pending()
    task = bar.add_task(f"{layout.subject}: write voxel chunks", total=len(pending))
    for region in pending:
        values = raw[:, kept[region["voxel"]]].compute(scheduler="threads")
        if normalize != "none":
            values = _zscore_groups(values, groups)
        writer.write(xr.DataArray(values, dims=("trial", "voxel"), name="responses"), region)
        bar.advance(task)
    if not writer.complete:
        writer.finalize()
