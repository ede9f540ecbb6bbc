"""neurotask: Neural Taskonomy analyses on BOLD5000, array-native and Dask-distributed.

The top level re-exports the public API of DESIGN §4.
"""

from __future__ import annotations

from neurotask import (
    cluster,
    datasets,
    encoding,
    execution,
    features,
    fmri,
    pipeline,
    plotting,
    report,
    rsa,
    stats,
    stimuli,
    stores,
)
from neurotask._version import __version__
from neurotask.features import extract_features
from neurotask.fmri import align, load_bold5000
from neurotask.stores import open_features, open_responses, open_results

__all__ = [
    "__version__", "align", "cluster", "datasets", "encoding", "execution", "extract_features", "features", "fmri",
    "load_bold5000", "open_features", "open_responses", "open_results", "pipeline", "plotting", "report", "rsa",
    "stats", "stimuli", "stores",
]
