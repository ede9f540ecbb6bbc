"""Voxel selection (DESIGN §3): brain mask, grid checks, finiteness and variance screens, ROI labels.

The kept voxels are the binarized (> 0) brain mask ∩ voxels finite in every session ∩ voxels
non-constant in every normalization group (every session; every run when z-scoring by run, since a
run-constant voxel has no run z-score). Each excluded voxel is counted under the first reason that
applies: outside the mask, non-finite in some session, constant in some session (or run).

The brain mask (:func:`brain_mask`) is the tree's (release 2: ``CSIX_brainmask.nii.gz``; fmriprep:
the intersection of the runs' masks), a given one (path, nibabel image, boolean array), or
``"finite"``: no mask, every voxel finite in every session is kept — for when the shipped mask does
not fit the betas (one public loader reports this for release 2).

ROI masks (:func:`roi_masks`) must lie on the same grid, or be resampled to it on request; an ROI
that then lies mostly outside the brain mask, or is empty, is reported rather than left unlabeled
in silence.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from neurotask.fmri.bold5000 import ROI_ALIASES, ROIS, Grid, first_volume, mean_abs_volume
from neurotask.stores import sha256_array, sha256_file

__all__ = ["MASK_CHOICES", "ROI_MIN_INSIDE", "GridMismatchError", "MaskLike", "VoxelScreen", "brain_mask", "check_mask",
           "derive_mask", "is_finite_choice", "load_mask", "roi_labels", "roi_masks"]

#: What ``mask=`` accepts besides None (the tree's mask): the word "finite", or a mask itself.
MaskLike = str | os.PathLike[str] | nib.spatialimages.SpatialImage | np.ndarray
MASK_CHOICES = "None (the tree's brain mask), 'finite', a NIfTI path, a nibabel image or a boolean array"

logger = logging.getLogger("neurotask.fmri")

#: The fraction of an ROI's voxels that must lie inside the brain mask for it to pass unreported.
#: An ROI on the right grid and in the right space lies within the brain but for a rim: BOLD5000's
#: ROIs are cortical patches, and an EPI brain mask can clip a voxel or two at the surface. Below
#: half, the mask most likely belongs to another subject or space (:func:`roi_masks`).
ROI_MIN_INSIDE = 0.5


class GridMismatchError(ValueError):
    """A mask does not lie on the voxel grid of the data (the betas, or the BIDS runs)."""


def _image(mask: str | Path | nib.spatialimages.SpatialImage) -> nib.spatialimages.SpatialImage:
    return mask if isinstance(mask, nib.spatialimages.SpatialImage) else nib.load(mask)


def load_mask(
    mask: str | Path | nib.spatialimages.SpatialImage, grid: Grid, *, resample: bool = False, what: str = "mask"
) -> np.ndarray:
    """A mask on the data's grid, binarized (> 0; NaN counts as outside).

    Parameters
    ----------
    mask : path-like or nibabel image
        A 3-D mask (a 4-D one with a single volume is accepted).
    grid : Grid
        The grid of the betas or runs (shape and affine).
    resample : bool
        Resample a mask on another grid to ``grid`` by world coordinates (nearest neighbour,
        nilearn). Without it, a mask on another grid raises :class:`GridMismatchError`, which names
        the mask's file, the data file and both shapes and affines.
    what : str
        How the mask is named in messages.

    Returns
    -------
    numpy.ndarray of bool, shape grid.shape
    """
    img = _image(mask)
    label = f"{what} ({mask})" if isinstance(mask, (str, os.PathLike)) else what
    data = f"the data ({grid.source.name})" if grid.source is not None else "the data"
    shape = tuple(int(n) for n in img.shape[:3])
    if len(img.shape) > 3 and int(np.prod(img.shape[3:])) != 1:
        raise ValueError(f"the {label} must be a 3-D image; got shape {img.shape}")
    mask_grid = Grid(shape, np.asarray(img.affine, dtype=float))
    if not mask_grid.matches(grid):
        if not resample:
            raise GridMismatchError(
                f"the {label} and {data} lie on different voxel grids:\n"
                f"  {what}: shape {mask_grid.shape}, affine\n{np.array2string(mask_grid.affine, precision=3)}\n"
                f"  data: shape {grid.shape}, affine\n{np.array2string(grid.affine, precision=3)}\n"
                f"Use a mask on the data's grid, or pass resample_mask=True (command line: --resample-mask) to "
                f"resample it by world coordinates (nearest neighbour; right when both lie in the same space)."
            )
        from nilearn.image import resample_to_img
        from nilearn.image.resampling import BoundingBoxError

        reference = nib.Nifti1Image(np.zeros(grid.shape, dtype=np.uint8), grid.affine)
        img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32).reshape(shape), img.affine)
        try:
            img = resample_to_img(img, reference, interpolation="nearest", force_resample=True, copy_header=True)
        except BoundingBoxError:  # nilearn refuses a mask lying wholly beside the grid: it holds none of its voxels
            logger.info("the %s lies wholly outside the field of view of %s", label, data)
            return np.zeros(grid.shape, dtype=bool)
        logger.info("resampled the %s from shape %s to the grid %s of %s", label, shape, grid.shape, data)
    values = np.asarray(img.dataobj, dtype=np.float32).reshape(grid.shape)
    return np.nan_to_num(values, nan=0.0) > 0


def derive_mask(mean_volume: np.ndarray, grid: Grid) -> np.ndarray:
    """A brain mask derived from a mean volume with ``nilearn.masking.compute_epi_mask``."""
    from nilearn.masking import compute_epi_mask

    img = nib.Nifti1Image(np.asarray(mean_volume, dtype=np.float32), grid.affine)
    return np.asarray(compute_epi_mask(img).dataobj) > 0


def _array_mask(mask: np.ndarray, grid: Grid) -> np.ndarray:
    values = np.asarray(mask)
    if values.shape != grid.shape:
        raise ValueError(f"mask is an array of shape {values.shape}; expected the betas' grid shape {grid.shape}")
    return values.astype(bool) if values.dtype == bool else np.nan_to_num(values.astype(np.float64), nan=0.0) > 0


def is_finite_choice(mask: object) -> bool:
    """``mask="finite"`` (also as ``Path("finite")``, as a command line passes it)."""
    return isinstance(mask, (str, os.PathLike)) and os.fspath(mask) == "finite"


def check_mask(mask: object) -> None:
    """Refuse a ``mask=`` that is none of :data:`MASK_CHOICES` before any file is read."""
    if isinstance(mask, (str, os.PathLike)) and not (is_finite_choice(mask) or Path(mask).is_file()):
        raise FileNotFoundError(f"mask {str(mask)!r} is not a file; pass {MASK_CHOICES}")
    if not (mask is None or isinstance(mask, (str, os.PathLike, np.ndarray, nib.spatialimages.SpatialImage))):
        raise TypeError(f"mask must be {MASK_CHOICES}; got {type(mask).__name__}")


def brain_mask(
    mask: MaskLike | None, grid: Grid, tree_masks: Sequence[Path], first_file: Path, *, resample: bool = False
) -> tuple[np.ndarray, str]:
    """The candidate voxels on ``grid`` and where they come from (recorded as ``mask_source``).

    Parameters
    ----------
    mask : None, "finite", path-like, nibabel image or array of bool, shape grid.shape
        None: the intersection of ``tree_masks`` (derived from ``first_file`` with nilearn's
        ``compute_epi_mask`` when there is none). "finite": voxels finite in ``first_file``'s first
        volume (the finiteness screen then drops those non-finite in any session).
    grid : Grid
    tree_masks : sequence of Path
        The layout's brain masks.
    first_file : Path
        The first session's first file.
    resample : bool
        Resample masks on another grid (nearest neighbour) instead of raising.

    Returns
    -------
    (numpy.ndarray of bool, shape grid.shape, str)
    """
    if is_finite_choice(mask):
        return np.isfinite(first_volume(first_file)).reshape(grid.shape, order="F"), f"finite:{first_file.name}"
    if isinstance(mask, np.ndarray):
        return _array_mask(mask, grid), f"given:array:{sha256_array(np.asarray(mask))}"
    check_mask(mask)
    if isinstance(mask, (str, os.PathLike)):
        return load_mask(mask, grid, resample=resample), f"given:{sha256_file(mask)}"
    if mask is not None:
        return load_mask(mask, grid, resample=resample), "given:image"
    if tree_masks:
        volume = np.logical_and.reduce([load_mask(m, grid, resample=resample) for m in tree_masks])
        names = tree_masks[0].name if len(tree_masks) == 1 else f"intersection of {len(tree_masks)} run masks"
        return volume, f"tree:{names}"
    volume = derive_mask(mean_abs_volume(first_file), grid)
    logger.info("no brain mask given or found: derived one from %s (%d voxels)", first_file.name, volume.sum())
    return volume, f"derived:compute_epi_mask({first_file.name})"


def roi_masks(
    roi_files: Mapping[str, Path], grid: Grid, brain: np.ndarray, *, resample: bool = False
) -> dict[str, np.ndarray]:
    """The ROI masks on ``grid``, each checked against the brain mask.

    Every ROI's voxel count on the grid, and how many lie inside ``brain``, is logged. An ROI
    with no voxel on the grid, or with fewer than :data:`ROI_MIN_INSIDE` of its voxels inside the
    brain mask, is reported in one warning: its voxels would be missing from the ``roi`` labels
    (a mask of another subject, or in another space, which resampling by world coordinates does
    not fix). ROI names other than BOLD5000's ten (and their spellings) are kept, and reported.

    Parameters
    ----------
    roi_files : mapping of str to Path
        ROI masks by name (a layout's ``roi_files``).
    grid : Grid
        The data's grid.
    brain : numpy.ndarray of bool, shape grid.shape
        The candidate voxels (the brain mask).
    resample : bool
        Resample masks on another grid (nearest neighbour) instead of raising
        :class:`GridMismatchError`.

    Returns
    -------
    dict of str to numpy.ndarray of bool, shape grid.shape

    Warns
    -----
    UserWarning
        Naming the ROIs empty on the grid or mostly outside ``brain`` (with their counts), and
        those of unknown names.
    """
    rois = {name: load_mask(path, grid, resample=resample, what=f"ROI mask {name}") for name, path in roi_files.items()}
    misplaced = []
    for name, volume in rois.items():
        total, inside = int(volume.sum()), int((volume & brain).sum())
        logger.info("ROI %s: %d voxels on the grid, %d inside the brain mask", name, total, inside)
        if total == 0:
            misplaced.append(f"{name} has no voxel on the grid ({roi_files[name].name})")
        elif inside < ROI_MIN_INSIDE * total:
            misplaced.append(f"{name} has {inside} of its {total} voxels inside ({roi_files[name].name})")
    if misplaced:
        warnings.warn(
            f"ROI masks empty or lying mostly outside the brain mask label few or none of their voxels: "
            f"{'; '.join(misplaced)}. Check that they are this subject's masks and lie in the space of the data "
            f"(resample_mask fixes another grid, not another space).",
            UserWarning, stacklevel=3,
        )
    unknown = [name for name in rois if name not in ROIS]
    if unknown:
        warnings.warn(
            f"ROI masks {[roi_files[n].name for n in unknown]} name none of BOLD5000's ROIs {list(ROIS)} (nor the "
            f"spellings {sorted(ROI_ALIASES)}): their voxels are labeled {unknown}; rename the files if that is a "
            f"misspelling.",
            UserWarning, stacklevel=3,
        )
    return rois


def roi_labels(
    rois: Mapping[str, np.ndarray], coords: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, int]:
    """The ROI label of each voxel ("" in none) and the number of voxels in several ROIs.

    A voxel in several ROIs gets the first in canonical order (:data:`ROIS`, then other names sorted).
    """
    labels = np.full(coords[0].size, "", dtype=object)
    claimed = np.zeros(coords[0].size, dtype=np.int64)
    order = [r for r in ROIS if r in rois] + sorted(r for r in rois if r not in ROIS)
    for name in reversed(order):
        inside = rois[name][coords]
        labels[inside] = name
        claimed += inside
    return labels, int((claimed > 1).sum())


def _segments(labels: np.ndarray) -> list[slice]:
    """Slices of consecutive equal labels."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    bounds = [0, *edges.tolist(), labels.size]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class VoxelScreen:
    """Per-voxel finiteness and constancy, accumulated one session at a time.

    Parameters
    ----------
    n_voxels : int
        Candidate voxels (those inside the brain mask).
    """

    n_voxels: int
    nonfinite: np.ndarray = field(init=False)
    constant_session: np.ndarray = field(init=False)
    constant_run: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.nonfinite = np.zeros(self.n_voxels, dtype=bool)
        self.constant_session = np.zeros(self.n_voxels, dtype=bool)
        self.constant_run = np.zeros(self.n_voxels, dtype=bool)

    def update(self, values: np.ndarray, runs: np.ndarray) -> None:
        """Screen one session's ``values`` (trial, voxel), whose trials belong to ``runs``."""
        finite = np.isfinite(values).all(axis=0)
        self.nonfinite |= ~finite
        with np.errstate(invalid="ignore"):
            self.constant_session |= finite & (values.max(axis=0) == values.min(axis=0))
            for run in _segments(runs):
                block = values[run]
                self.constant_run |= finite & (block.max(axis=0) == block.min(axis=0))

    def keep(self, by_run: bool) -> tuple[np.ndarray, dict[str, int]]:
        """The kept candidates and the dropped counts by reason."""
        constant = self.constant_run if by_run else self.constant_session
        dropped_constant = constant & ~self.nonfinite
        keep = ~self.nonfinite & ~constant
        reason = "constant_in_run" if by_run else "constant_in_session"
        return keep, {"nonfinite_in_session": int(self.nonfinite.sum()), reason: int(dropped_constant.sum())}
