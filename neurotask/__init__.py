"""neurotask: Neural Taskonomy analyses on BOLD5000, array-native and Dask-distributed.

The top level re-exports the public API of DESIGN §4. Subpackages load on first use
(`SPEC 1 <https://scientific-python.org/specs/spec-0001/>`_, ``lazy_loader``): ``import neurotask``
and every process that needs one subpackage — an ingest, a Dask worker running ridge chunks —
does not import torch, matplotlib or scikit-learn until something it runs needs them (an eager
root cost each such process ≈ 400 MB and 3 s).
"""

from __future__ import annotations

import lazy_loader

from neurotask._version import __version__

__getattr__, _dir, _names = lazy_loader.attach(
    __name__,
    submodules=["cluster", "datasets", "encoding", "execution", "features", "fmri", "pipeline", "plotting", "report",
                "rsa", "stats", "stimuli", "stores"],
    submod_attrs={
        "features": ["extract_features"],
        "fmri": ["align", "load_bold5000"],
        "stores": ["open_features", "open_responses", "open_results"],
    },
)
__all__ = ["__version__", *_names]


def __dir__() -> list[str]:
    return sorted({*_dir(), "__version__"})
