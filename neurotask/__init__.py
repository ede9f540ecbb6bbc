"""neurotask: Neural Taskonomy analyses on BOLD5000, array-native and Dask-distributed.

The top level re-exports the public API of DESIGN §4. Submodules are imported lazily so that
``import neurotask`` stays fast and does not pull in torch until features are extracted.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "stores",
    "stimuli",
    "features",
    "fmri",
    "datasets",
    "rsa",
    "encoding",
    "stats",
    "plotting",
    "report",
    "pipeline",
    "cluster",
}

_ATTRIBUTES = {
    "open_features": "neurotask.stores",
    "open_responses": "neurotask.stores",
    "open_results": "neurotask.stores",
    "extract_features": "neurotask.features",
    "load_bold5000": "neurotask.fmri",
    "align": "neurotask.fmri",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"neurotask.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'neurotask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_ATTRIBUTES))
