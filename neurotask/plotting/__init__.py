"""Figures: similarity heatmaps and dendrograms, brain maps, score distributions, variance
partitioning, and planted-truth comparisons.

Every function returns a matplotlib Figure and never calls ``plt.show``.
"""

from neurotask.plotting.brain import plot_brain_map, plot_significant_counts, plot_winning_model, volume_image
from neurotask.plotting.partition import plot_variance_partition
from neurotask.plotting.rsa import compare_trees, plot_dendrogram, plot_similarity
from neurotask.plotting.scores import plot_model_scores, plot_noise_ceiling, plot_r2_distribution
from neurotask.plotting.truth import plot_driver_confusion, plot_error_rates, plot_true_vs_estimated

__all__ = [
    "compare_trees",
    "plot_brain_map",
    "plot_dendrogram",
    "plot_driver_confusion",
    "plot_error_rates",
    "plot_model_scores",
    "plot_noise_ceiling",
    "plot_r2_distribution",
    "plot_significant_counts",
    "plot_similarity",
    "plot_true_vs_estimated",
    "plot_variance_partition",
    "plot_winning_model",
    "volume_image",
]
