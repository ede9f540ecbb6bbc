"""Representational similarity analysis across models: RDMs, model×model similarity, trees (DESIGN §3).

* :func:`select_images` (:mod:`~neurotask.rsa.subsets`) — an image subset by query, mapping,
  mask or ids.
* :func:`rdm` (:mod:`~neurotask.rsa.rdms`) — one representational dissimilarity matrix per
  model, lazily, as a labeled condensed vector ``(model, pair)`` or a square
  ``(model, image, image_)`` matrix.
* :func:`model_similarity` (:mod:`~neurotask.rsa.similarity`) — Spearman (or Pearson, Kendall
  tau-a) between the models' RDMs, on all images or a subset, computed one model at a time (on
  the Dask client if there is one), so that memory holds a few models' RDMs plus one 4-byte
  vector per model — never 25 square matrices.
* :func:`compare_rdms` — the same comparison for RDMs you already have.
* :func:`linkage` (:mod:`~neurotask.rsa.tree`) — average-linkage tree on ``1 − similarity``
  with its leaf order.

Exactness (:mod:`~neurotask.rsa._kernels`). Spearman ranks average ties (as
:func:`scipy.stats.rankdata`); each model's ranks are kept as *doubled, centered* ranks
``2·rank − (P + 1)``, which are integers, stored as int32 (exact for up to 2³¹ pairs, i.e.
~65,000 images) and multiplied and summed in float64. Kendall tau-a follows rsatoolbox:
``(concordant − discordant) / (P (P − 1) / 2)`` with tied pairs counted as neither, computed
exactly: one packed sort and one O(P log P) Fenwick-tree count of discordant pairs per model
pair (scipy's kernel behind :func:`scipy.stats.kendalltau`).
"""

from __future__ import annotations

from neurotask.rsa.rdms import RDM_METHODS, rdm
from neurotask.rsa.similarity import COMPARE_METHODS, compare_rdms, model_similarity
from neurotask.rsa.subsets import select_images
from neurotask.rsa.tree import LINKAGE_METHODS, Tree, linkage

__all__ = [
    "RDM_METHODS",
    "COMPARE_METHODS",
    "LINKAGE_METHODS",
    "Tree",
    "select_images",
    "rdm",
    "compare_rdms",
    "model_similarity",
    "linkage",
]
