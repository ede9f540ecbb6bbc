"""Synthetic data with planted ground truth, in BOLD5000's real layouts."""

from neurotask.datasets.synthetic import (
    TASKONOMY_GROUPS,
    bold5000_images,
    bold5000_trial_order,
    make_synthetic_features,
)

__all__ = ["TASKONOMY_GROUPS", "bold5000_images", "bold5000_trial_order", "make_synthetic_features"]
