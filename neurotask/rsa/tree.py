"""Hierarchical clustering of models on ``1 − similarity`` (average linkage, as Taskonomy)."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd
import xarray as xr

from neurotask.rsa._labels import check_choice

__all__ = ["LINKAGE_METHODS", "Tree", "linkage"]

#: scipy linkage methods valid on a non-Euclidean dissimilarity.
LINKAGE_METHODS: tuple[str, ...] = ("average", "complete", "single", "weighted")


class Tree(NamedTuple):
    """A hierarchical clustering of models.

    Attributes
    ----------
    matrix : numpy.ndarray of shape (n_models - 1, 4)
        scipy linkage matrix.
    order : numpy.ndarray of shape (n_models,)
        Leaf order (indices into ``labels``), as the dendrogram draws it.
    labels : list of str
        Model names, in the similarity matrix's order.
    method : str
        Linkage method.
    """

    matrix: np.ndarray
    order: np.ndarray
    labels: list[str]
    method: str

    @property
    def leaves(self) -> list[str]:
        """Model names in leaf order."""
        return [self.labels[i] for i in self.order]

    def clusters(self, n_clusters: int) -> xr.DataArray:
        """Cut the tree into ``n_clusters`` groups; returns a group number (1…) per model."""
        if not 1 <= n_clusters <= len(self.labels):
            raise ValueError(f"n_clusters must be in 1..{len(self.labels)}; got {n_clusters}")
        groups = sch.fcluster(self.matrix, n_clusters, criterion="maxclust")
        return xr.DataArray(groups, dims="model", coords={"model": self.labels}, name="cluster")


def _undefined_as_unrelated(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """NaN similarities (a model with a zero score vector) become 0 to the others, 1 to itself."""
    undefined = np.isnan(values)
    if not undefined.any():
        return values
    # name the models whose whole row is undefined, and others only for NaN they do not explain
    off_diagonal = undefined & ~np.eye(len(values), dtype=bool)
    whole = off_diagonal.sum(axis=1) == len(values) - 1
    unexplained = off_diagonal & ~whole[:, None] & ~whole[None, :]
    names = [labels[i] for i in np.flatnonzero(whole | unexplained.any(axis=1))]
    warnings.warn(
        f"similarity is undefined (NaN) for models {names} (e.g. a model without any significant voxel); "
        "they are clustered as similarity 0 to the other models and 1 to themselves",
        RuntimeWarning,
        stacklevel=3,
    )
    values = np.where(undefined, 0.0, values)
    np.fill_diagonal(values, 1.0)
    return values


def linkage(similarity: xr.DataArray, method: str = "average") -> Tree:
    """Hierarchical clustering of models on ``1 − similarity`` (scipy).

    Parameters
    ----------
    similarity : xarray.DataArray, dims (model, model_)
        A symmetric similarity, e.g. from :func:`~neurotask.rsa.model_similarity` or
        :func:`neurotask.stats.task_similarity`. NaN entries (an undefined similarity, as a
        model without any significant voxel had in older results) count as similarity 0 to the
        other models and 1 to itself, with a ``RuntimeWarning`` naming the models.
    method : {"average", "complete", "single", "weighted"}
        Linkage method (average = UPGMA, as in Taskonomy and Neural Taskonomy).

    Returns
    -------
    Tree
        ``matrix`` (scipy linkage), ``order`` (leaf order), ``labels``, ``method``.

    Raises
    ------
    ValueError
        For an unknown method, wrong dims, fewer than 2 models, infinite values or an asymmetric
        matrix.

    Examples
    --------
    >>> sim = xr.DataArray([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]], dims=("model", "model_"),
    ...                    coords={"model": ["a", "b", "c"], "model_": ["a", "b", "c"]})
    >>> linkage(sim).clusters(2).values.tolist()
    [1, 1, 2]
    """
    check_choice("method", method, LINKAGE_METHODS)
    if set(similarity.dims) != {"model", "model_"}:
        raise ValueError(f"similarity must have dims ('model', 'model_'); got {similarity.dims}")
    labels = [str(m) for m in similarity["model"].values]
    if len(labels) < 2:
        raise ValueError(f"a tree needs at least 2 models; similarity has {len(labels)} ({labels})")
    values = _undefined_as_unrelated(np.asarray(similarity.transpose("model", "model_").values, dtype=np.float64), labels)
    if not np.all(np.isfinite(values)) or not np.allclose(values, values.T, atol=1e-10):
        raise ValueError("similarity must be finite and symmetric (model × model)")
    distance = np.clip(1.0 - values, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    matrix = sch.linkage(ssd.squareform(distance, checks=False), method=method)
    return Tree(matrix, sch.leaves_list(matrix), labels, method)
