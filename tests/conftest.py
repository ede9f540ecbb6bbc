"""Fixtures shared across the test tree: the one-node SLURM cluster (tests/slurm_cluster.py) and the
small synthetic subject with its reference pipeline run (tests/small_subject.py)."""

from __future__ import annotations

from slurm_cluster import slurm
from small_subject import small_reference, small_subject

__all__ = ["slurm", "small_reference", "small_subject"]  # session fixtures
