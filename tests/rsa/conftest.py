"""Fixtures of the RSA tests; the references live in ``rsa_reference`` (a unique module name)."""

from __future__ import annotations

import pytest
import xarray as xr
from rsa_reference import MODELS

from neurotask.datasets import make_synthetic_features


@pytest.fixture(scope="module")
def features() -> xr.DataArray:
    """Five models x 60 images x 48 features, planted Taskonomy groups, BOLD5000-style ids."""
    return make_synthetic_features(MODELS, 60, n_features=48, seed=1)
