"""Permutation statistics, FDR, task similarity, variance partitioning (DESIGN §3)."""

from neurotask.stats.fdr import fdr_bh
from neurotask.stats.permutation import PERMUTATION_METHODS, STATISTICS, permutation_test

__all__ = ["PERMUTATION_METHODS", "STATISTICS", "fdr_bh", "permutation_test"]
