"""model_similarity on bad features, lazy inputs, Dask clients and a lost worker."""

from __future__ import annotations

import distributed
import numpy as np
import pytest
from rsa_reference import MODELS
from worker_faults import KillAtFirstTask

from neurotask import rsa


def test_constant_features_name_the_model_and_images(features):
    bad = features.copy(deep=True)
    bad.loc[{"model": "jigsaw"}] = bad.sel(model="jigsaw").where(bad.image != bad.image[4], 1.5)
    image = str(features.image[4].values)
    with pytest.raises(ValueError, match=rf"'jigsaw'.*constant.*{image}"):
        rsa.model_similarity(bad, progress=False)
    # euclidean distances are defined for constant rows
    assert np.isfinite(rsa.model_similarity(bad, rdm_method="euclidean", progress=False).values).all()


def test_nan_features_name_the_model_and_images(features):
    bad = features.copy(deep=True)
    bad.values[1, 7, 3] = np.nan
    image = str(features.image[7].values)
    with pytest.raises(ValueError, match=rf"'depth_zbuffer'.*NaN.*{image}"):
        rsa.model_similarity(bad, progress=False)
    # a subset without the bad image works
    keep = [i for i in features.image.values if i != image]
    assert rsa.model_similarity(bad, subset=keep, progress=False).attrs["n_images"] == 59


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rdm_method": "mahalanobis"}, "unknown rdm_method"), ({"compare": "kendall"}, "unknown compare")],
)
def test_unknown_methods(features, kwargs, message):
    with pytest.raises(ValueError, match=message):
        rsa.model_similarity(features, progress=False, **kwargs)


def test_dask_backed_features_give_identical_similarity(features):
    lazy = features.chunk({"model": 1, "image": 16})
    expected = rsa.model_similarity(features, progress=False)
    np.testing.assert_array_equal(rsa.model_similarity(lazy, progress=False).values, expected.values)


def test_one_model_at_a_time_when_memory_is_short(features, monkeypatch):
    expected = rsa.model_similarity(features, progress=False)
    monkeypatch.setattr(rsa.similarity, "_WORK_BUDGET", 1)
    assert rsa.similarity._model_threads(1770)[0] == 1
    np.testing.assert_array_equal(rsa.model_similarity(features, progress=False).values, expected.values)


@pytest.mark.cluster
def test_distributed_client_gives_identical_similarity(features):
    expected = rsa.model_similarity(features, progress=False)
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as client:
        in_memory = rsa.model_similarity(features, client=client, progress=False)
        with distributed.get_task_stream(client) as tasks:  # no client= : the current one is used
            lazy = rsa.model_similarity(features.chunk({"model": 1}), progress=False)
    assert len(tasks.data) >= len(MODELS)
    np.testing.assert_array_equal(in_memory.values, expected.values)
    np.testing.assert_array_equal(lazy.values, expected.values)


@pytest.mark.cluster
def test_worker_lost_mid_rsa_with_in_memory_features(features, tmp_path):
    # numpy-backed features travel inside each model's task: losing the worker that computes a
    # model must not lose the only copy of its features
    in_process = rsa.model_similarity(features, progress=False)
    marker = tmp_path / "killed"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(KillAtFirstTask("_model_vector", str(marker)))
        on_cluster = rsa.model_similarity(features.compute(), client=client, progress=False)
    assert marker.exists(), "no worker was killed"
    np.testing.assert_allclose(on_cluster.values, in_process.values, atol=1e-6)
