"""Fixtures shared across the test tree: the one-node SLURM cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

from slurm_cluster import slurm  # noqa: F401 - the session fixture, for tests marked slurm
