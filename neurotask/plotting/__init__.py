"""Figures: similarity heatmaps and dendrograms, brain maps, variance-partitioning charts.

Every function returns a matplotlib Figure and never calls ``plt.show``.
"""
