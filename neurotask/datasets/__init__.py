"""Synthetic data with planted ground truth, in BOLD5000's real layouts."""

from neurotask.datasets.synthetic import (
    TASKONOMY_GROUPS,
    bold5000_images,
    bold5000_trial_order,
    make_synthetic_features,
)
from neurotask.datasets.synthetic_bold5000 import (
    RELEASES,
    ROI_FILE_NAMES,
    write_synthetic_bold5000,
    write_synthetic_dataset,
)
from neurotask.datasets.synthetic_planted import (
    N_SESSIONS,
    ROI_NAMES,
    SMALL_VOLUME_SHAPE,
    TRIALS_PER_RUN,
    VOLUME_SHAPES,
    bold5000_session_runs,
    bold5000_trials,
    groundtruth_path,
    open_groundtruth,
)
from neurotask.datasets.synthetic_stimuli import stimulus_path, write_synthetic_stimuli

__all__ = [
    "N_SESSIONS",
    "RELEASES",
    "ROI_FILE_NAMES",
    "ROI_NAMES",
    "SMALL_VOLUME_SHAPE",
    "TASKONOMY_GROUPS",
    "TRIALS_PER_RUN",
    "VOLUME_SHAPES",
    "bold5000_images",
    "bold5000_session_runs",
    "bold5000_trial_order",
    "bold5000_trials",
    "groundtruth_path",
    "make_synthetic_features",
    "open_groundtruth",
    "stimulus_path",
    "write_synthetic_bold5000",
    "write_synthetic_dataset",
    "write_synthetic_stimuli",
]
