"""Voxelwise ridge encoding models (DESIGN §3 Encoding, §6 Execution).

``fit`` chooses a per-voxel alpha by grouped K-fold CV (or GCV), refits on the training trials
and scores held-out trials; ``predict`` recomputes test predictions lazily; ``summary`` averages
scores per model (and ROI). The numpy kernels live in :mod:`neurotask.encoding.ridge`.
"""

from neurotask.encoding.fit import DEFAULT_ALPHAS, fit, predict
from neurotask.encoding.ridge import RIDGE_SOLVERS
from neurotask.encoding.scoring import SCORINGS, pearson_r, r2_score, summary

__all__ = ["DEFAULT_ALPHAS", "RIDGE_SOLVERS", "SCORINGS", "fit", "pearson_r", "predict", "r2_score", "summary"]
