"""Figures: similarity heatmaps and dendrograms, brain maps, variance-partitioning charts.

Every function returns a matplotlib Figure and never calls ``plt.show``.
"""

from neurotask.plotting.brain import plot_brain_map, plot_significant_counts, plot_winning_model, volume_image  # noqa: E402
from neurotask.plotting.partition import plot_variance_partition  # noqa: E402

from neurotask.plotting.rsa import compare_trees, plot_dendrogram, plot_similarity  # noqa: E402,F401
