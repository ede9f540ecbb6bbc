"""Figures: similarity heatmaps and dendrograms, brain maps, variance-partitioning charts.

Every function returns a matplotlib Figure and never calls ``plt.show``.
"""

from neurotask.plotting.brain import plot_brain_map, plot_significant_counts, plot_winning_model, volume_image
from neurotask.plotting.partition import plot_variance_partition
from neurotask.plotting.rsa import compare_trees, plot_dendrogram, plot_similarity

__all__ = [
    "compare_trees",
    "plot_brain_map",
    "plot_dendrogram",
    "plot_significant_counts",
    "plot_similarity",
    "plot_variance_partition",
    "plot_winning_model",
    "volume_image",
]
