"""BOLD5000 ingestion: release layouts, masking, normalization, alignment, noise ceiling."""

from neurotask.fmri.align import align
from neurotask.fmri.bold5000 import BETAS, ROI_ALIASES, ROIS, read_layout
from neurotask.fmri.ceiling import noise_ceiling
from neurotask.fmri.ingest import load_bold5000
from neurotask.fmri.masking import GridMismatchError
from neurotask.fmri.normalize import NORMALIZATIONS, zscore

__all__ = [
    "BETAS",
    "NORMALIZATIONS",
    "ROIS",
    "ROI_ALIASES",
    "GridMismatchError",
    "align",
    "load_bold5000",
    "noise_ceiling",
    "read_layout",
    "zscore",
]
