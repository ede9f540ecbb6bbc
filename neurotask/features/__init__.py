"""Taskonomy encoders and feature extraction.

* :mod:`~neurotask.features.registry` — the 25 tasks, their aliases and inputs;
* :mod:`~neurotask.features.weights` — find, download and verify checkpoints;
* :mod:`~neurotask.features.encoders` — build, load, cache and run encoders (and random
  checkpoints for tests and demos);
* :mod:`~neurotask.features.inputs` — encoder inputs from 8-bit pixels, on the host or on a GPU;
* :mod:`~neurotask.features.extract` — images x encoders into a features store, on Dask.

The imports go one way: registry <- weights <- encoders <- extract, and inputs <- extract.
"""

from __future__ import annotations

from neurotask.features.encoders import load_encoder, save_random_checkpoint
from neurotask.features.extract import extract_features
from neurotask.features.registry import ALIASES, INPUTS, TASKS, resolve_models, resolve_task
from neurotask.features.weights import resolve_weights

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
