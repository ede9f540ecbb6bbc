"""Voxelwise ridge encoding models (DESIGN §3 Encoding, §6 Execution).

``fit`` chooses a per-voxel alpha by grouped K-fold CV (or GCV), refits on the training trials
and scores held-out trials; ``predict`` recomputes test predictions lazily; ``summary`` averages
scores per model (and ROI); ``model_spaces`` names the feature spaces of each fitted model.
Modules: :mod:`~neurotask.encoding.fit` (API, results), :mod:`~neurotask.encoding.design`
(features → aligned, standardized designs), :mod:`~neurotask.encoding.split` (test set, folds),
:mod:`~neurotask.encoding.executor` (threads or a Dask client), :mod:`~neurotask.encoding.predict`,
:mod:`~neurotask.encoding.scoring`, the numpy kernels of :mod:`~neurotask.encoding.ridge` and
their torch versions in :mod:`~neurotask.encoding.ridge_torch` (``backend="torch"``, CPU or CUDA).
"""

from neurotask.encoding.design import model_spaces
from neurotask.encoding.fit import DEFAULT_ALPHAS, fit
from neurotask.encoding.predict import predict
from neurotask.encoding.ridge import RIDGE_SOLVERS
from neurotask.encoding.scoring import SCORINGS, pearson_r, r2_score, summary
from neurotask.encoding.split import REPEATS

__all__ = [
    "DEFAULT_ALPHAS",
    "REPEATS",
    "RIDGE_SOLVERS",
    "SCORINGS",
    "fit",
    "model_spaces",
    "pearson_r",
    "predict",
    "r2_score",
    "summary",
]
