"""Taskonomy encoders and feature extraction.

* :mod:`~neurotask.features.registry` — the 25 tasks, their aliases and inputs;
* :mod:`~neurotask.features.weights` — find, download and verify checkpoints;
* :mod:`~neurotask.features.encoders` — build, load, cache and run encoders (and random
  checkpoints for tests and demos);
* :mod:`~neurotask.features.inputs` — encoder inputs from 8-bit pixels, on the host or on a GPU;
* :mod:`~neurotask.features.extract` — images x encoders into a features store, on Dask.

The imports go one way: registry <- weights <- encoders <- extract, and inputs <- extract. The
submodules load on first use (``lazy_loader``, as the root package), so that the registry's task
names and aliases come without torch.
"""

from __future__ import annotations

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=["encoders", "extract", "inputs", "onednn", "registry", "weights"],
    submod_attrs={
        "encoders": ["load_encoder", "save_random_checkpoint"],
        "extract": ["extract_features"],
        "registry": ["ALIASES", "INPUTS", "TASKS", "resolve_models", "resolve_task"],
        "weights": ["resolve_weights"],
    },
)

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
