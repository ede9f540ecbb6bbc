"""Taskonomy encoders and feature extraction.

``extract_features`` (and its submodules' torch imports) load on first use, so that importing
the registry stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from neurotask.features.registry import ALIASES, INPUTS, TASKS, resolve_models, resolve_task

__all__ = [
    "TASKS",
    "ALIASES",
    "INPUTS",
    "resolve_task",
    "resolve_models",
    "extract_features",
    "load_encoder",
    "resolve_weights",
    "save_random_checkpoint",
]

_LAZY = {
    "extract_features": "neurotask.features.extract",
    "load_encoder": "neurotask.features.encoders",
    "resolve_weights": "neurotask.features.weights",
    "save_random_checkpoint": "neurotask.features.weights",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neurotask.features' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
