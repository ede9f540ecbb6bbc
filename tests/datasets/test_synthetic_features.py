"""Tests for the planted-group synthetic features and the shipped BOLD5000 trial orders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from neurotask import stores
from neurotask.datasets import TASKONOMY_GROUPS, bold5000_images, bold5000_trial_order, make_synthetic_features
from neurotask.features.registry import TASKS

SHARED = Path(__file__).resolve().parents[3] / "shared" / "bold5000"


def test_groups_cover_the_25_tasks_once():
    members = [m for group in TASKONOMY_GROUPS.values() for m in group]
    assert sorted(members) == sorted(TASKS) and len(members) == 25


@pytest.mark.parametrize("subject,n_trials,n_unique", [("CSI1", 5254, 4916), ("CSI4", 3108, 2952)])
def test_trial_orders_are_the_real_ones(subject, n_trials, n_unique):
    order = bold5000_trial_order(subject)
    assert len(order) == n_trials
    assert len(bold5000_images(subject=subject)) == n_unique
    if SHARED.exists():  # the packaged copy equals the project's reference file
        reference = (SHARED / f"sub-{subject}_imgnames.txt").read_text().split()
        assert order == reference


def test_features_are_valid_deterministic_and_seed_dependent():
    a = make_synthetic_features(images=60, n_features=32, seed=1)
    b = make_synthetic_features(images=60, n_features=32, seed=1)
    c = make_synthetic_features(images=60, n_features=32, seed=2)
    stores.validate_features(a)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert set(a.source.values) == {"coco", "imagenet", "scene"}


def test_planted_groups_are_recovered_by_average_linkage():
    feats = make_synthetic_features(images=120, n_features=64, seed=0)
    # naive RSA: correlation RDM per model, then correlation between RDMs
    rdms = np.stack([pdist(feats.sel(model=m).values, "correlation") for m in feats.model.values])
    similarity = np.corrcoef(rdms)
    tree = linkage(1 - similarity[np.triu_indices(25, 1)], method="average")
    found = fcluster(tree, t=len(TASKONOMY_GROUPS), criterion="maxclust")
    planted = feats.group.values
    for group in TASKONOMY_GROUPS:
        assert len(set(found[planted == group])) == 1, group
    assert len(set(found)) == len(TASKONOMY_GROUPS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown subject 'CSI9'"):
        bold5000_trial_order("CSI9")
    with pytest.raises(ValueError, match="n_images must be in 1..4916"):
        bold5000_images(5000)
    with pytest.raises(ValueError, match="no default group"):
        make_synthetic_features(["not_a_task"], 10)
