"""Permutation statistics, FDR, task similarity, variance partitioning."""
