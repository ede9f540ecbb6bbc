"""Permutation statistics, FDR, task similarity, variance partitioning (DESIGN §3)."""

from neurotask.stats.fdr import fdr_bh
from neurotask.stats.partition import PARTITION_VARIABLES, ceiling_normalized, variance_partition
from neurotask.stats.permutation import PERMUTATION_METHODS, STATISTICS, permutation_test
from neurotask.stats.similarity import task_similarity

__all__ = [
    "PARTITION_VARIABLES",
    "PERMUTATION_METHODS",
    "STATISTICS",
    "ceiling_normalized",
    "fdr_bh",
    "permutation_test",
    "task_similarity",
    "variance_partition",
]
