"""Fixtures shared across the test tree: the one-node SLURM cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

from slurm_cluster import slurm

__all__ = ["slurm"]  # the session fixture behind the tests marked slurm
