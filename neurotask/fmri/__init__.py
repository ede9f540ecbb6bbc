"""BOLD5000 ingestion: release layouts, masking, normalization, alignment, noise ceiling."""

from neurotask.fmri.align import align
from neurotask.fmri.bold5000 import ROI_ALIASES, ROIS, SESSION_RUNS
from neurotask.fmri.ceiling import noise_ceiling
from neurotask.fmri.ingest import load_bold5000
from neurotask.fmri.layouts import available_sessions, input_files, read_layout
from neurotask.fmri.masking import GridMismatchError
from neurotask.fmri.normalize import NORMALIZATIONS, zscore
from neurotask.fmri.release2 import BETAS

__all__ = [
    "BETAS",
    "NORMALIZATIONS",
    "ROIS",
    "ROI_ALIASES",
    "SESSION_RUNS",
    "GridMismatchError",
    "align",
    "available_sessions",
    "input_files",
    "load_bold5000",
    "noise_ceiling",
    "read_layout",
    "zscore",
]
