"""The torch backend of fit / predict (CPU torch here) against the numpy path and himalaya;
predictions written to the store chunk by chunk; GPU-resource routing on a Dask client."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import xarray as xr
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score as himalaya_r2
import torch
from sklearn.model_selection import PredefinedSplit

import neurotask as nt
from neurotask import backend as backends
from neurotask.encoding import fit, predict


ALPHAS = np.logspace(-2, 7, 19)


@pytest.fixture(scope="module")
def numpy_fit(planted):
    features, responses, _, _ = planted
    return fit(features, responses, progress=False)


@pytest.fixture(scope="module")
def torch_fit(planted):
    features, responses, _, _ = planted
    return fit(features, responses, progress=False, backend="torch", device="cpu")


def _agree(other: xr.Dataset, base: xr.Dataset) -> None:
    """The acceptance bounds of issue 17: ≥ 99% of alphas equal, R² within 1e-4; CV scores of
    flipped near-ties within 1e-5."""
    same = other.alpha.values == base.alpha.values
    assert same.mean() >= 0.99
    assert np.all(np.abs(other.cv_r2.values - base.cv_r2.values)[~same] < 1e-5)
    np.testing.assert_allclose(other.r2.values, base.r2.values, atol=1e-4)
    np.testing.assert_allclose(other.r.values, base.r.values, atol=1e-4)


def test_torch_agrees_with_numpy(numpy_fit, torch_fit) -> None:
    _agree(torch_fit, numpy_fit)
    # predictions of the voxels whose alpha is the same (a flipped near-tie changes them)
    same = torch_fit.alpha.values == numpy_fit.alpha.values
    ours, theirs = (np.moveaxis(f.prediction.values, 1, 2)[same] for f in (torch_fit, numpy_fit))
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max())
    assert torch_fit.attrs["backend"] == "torch" and torch_fit.attrs["device"] == "cpu"
    assert torch_fit.attrs["allow_tf32"] is False or torch_fit.attrs["allow_tf32"] == 0
    assert numpy_fit.attrs["backend"] == "numpy" and numpy_fit.attrs["device"] == "cpu"


def test_torch_alphas_and_r2_match_himalaya(planted, torch_fit) -> None:
    features, responses, _, _ = planted
    x = features.sel(model="depth_euclidean", image=responses.image).values
    y = responses.values
    train = ~torch_fit.is_test.values
    reference = RidgeCV(alphas=ALPHAS, cv=PredefinedSplit(torch_fit.fold.values[train]), fit_intercept=True,
                        solver_params={"score_func": himalaya_r2}).fit(x[train], y[train])
    ours = torch_fit.sel(model="depth_euclidean")
    same = np.isclose(np.asarray(reference.best_alphas_), ours.alpha.values, rtol=1e-5)
    # noise voxels sit on the large-alpha plateau: 2 of 180 flip there, their CV scores equal to 1e-7
    assert same.mean() >= 0.98
    assert np.all(np.abs(np.asarray(reference.cv_scores_) - ours.cv_r2.values)[~same] < 1e-5)
    test = ~train
    expected = nt.encoding.r2_score(y[test], np.asarray(reference.predict(x[test])))
    np.testing.assert_allclose(ours.r2.values, expected, atol=1e-4)


def test_torch_gcv_and_joint_models_agree_with_numpy(planted) -> None:
    features, responses, _, _ = planted
    models = ["autoencoding", ("autoencoding", "class_object")]
    base = fit(features, responses, models, cv="gcv", progress=False)
    other = fit(features, responses, models, cv="gcv", progress=False, backend="torch", device="cpu")
    _agree(other, base)


def test_small_device_batch_gives_the_same_results(planted, torch_fit) -> None:
    features, responses, _, _ = planted
    small = fit(features, responses, progress=False, backend="torch", device="cpu", device_batch=7)
    # torch's CPU GEMMs round differently with the batch width (float32): a plateau near-tie may flip
    same = small.alpha.values == torch_fit.alpha.values
    assert same.mean() >= 0.99
    assert np.all(np.abs(small.cv_r2.values - torch_fit.cv_r2.values) < 1e-5)
    for name in ("r2", "r"):
        np.testing.assert_allclose(small[name].values[same], torch_fit[name].values[same], atol=2e-5)


def test_device_batch_is_bounded_by_free_memory(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000 * 64, 10**12))
    assert backends.voxel_batch(10_000, 64, "cuda") == 500  # half the free memory
    assert backends.voxel_batch(10_000, 64, "cuda", limit=100) == 100
    assert backends.voxel_batch(10_000, 64, "cpu") == 10_000
    assert backends.voxel_batch(10, 10**9, "cuda") == 1


def test_auto_is_numpy_without_a_gpu(planted, numpy_fit, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    features, responses, _, _ = planted
    auto = fit(features, responses, progress=False, backend="auto")
    assert auto.attrs["backend"] == "numpy"
    np.testing.assert_array_equal(auto.r2.values, numpy_fit.r2.values)


def test_predict_on_torch_equals_numpy(planted, numpy_fit) -> None:
    features, responses, _, _ = planted
    lazy = responses.chunk({"voxel": 70})
    base = predict(numpy_fit, features, lazy).values
    other = predict(numpy_fit, features, lazy, backend="torch", device="cpu")
    assert other.attrs["backend"] == "torch"
    np.testing.assert_allclose(other.values, base, atol=1e-5 * np.abs(base).max())


def test_backend_errors_name_the_argument(planted, monkeypatch) -> None:
    features, responses, _, _ = planted
    with pytest.raises(ValueError, match="'backend' parameter of fit"):
        fit(features, responses, backend="jax", progress=False)
    with pytest.raises(ValueError, match="'device' parameter of predict"):
        predict(xr.Dataset(), features, responses, device="tpu")
    with pytest.raises(ValueError, match="backend='numpy' runs on the CPU"):
        fit(features, responses, device="cuda", progress=False)
    with pytest.raises(ValueError, match="device_batch"):
        fit(features, responses, backend="torch", device_batch=0, progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        fit(features, responses, backend="torch", device="cuda", progress=False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_store_gets_the_predictions_chunk_by_chunk(planted, numpy_fit, tmp_path, backend) -> None:
    features, responses, _, _ = planted
    # two model groups (factor_memory 1 byte) and chunks of 50 voxels: every (group, chunk) written on its own
    stored = fit(features, responses, store=tmp_path / "fit.zarr", voxel_chunk=50, factor_memory=1, progress=False,
                 backend=backend, device="cpu")
    assert stored.prediction.chunks[0] == (1,) * 3 and stored.prediction.chunks[2][0] == 50
    lazy = predict(stored, features, responses, backend=backend, device="cpu").values
    np.testing.assert_allclose(stored.prediction.values, lazy, atol=1e-5 * np.abs(lazy).max())
    if backend == "numpy":  # the same chunks as the in-memory fit's: the same values
        np.testing.assert_allclose(stored.prediction.values, numpy_fit.prediction.values, atol=1e-6)
    np.testing.assert_array_equal(stored.test_trial.values, numpy_fit.test_trial.values)
    _agree(stored, numpy_fit)
    assert stored.attrs["backend"] == backend and bool(stored.is_test.values.any())
    assert nt.stores.is_complete(tmp_path / "fit.zarr")


def test_store_keeps_memory_below_the_predictions(make_planted, tmp_path) -> None:
    features, responses, _, _ = make_planted(n_voxels_per_driver=1500, n_noise_voxels=3000)
    n_bytes = 3 * int((responses.session == 6).sum()) * responses.sizes["voxel"] * 4  # ~5.8 MB of predictions
    peaks = {}
    for name, store in (("memory", None), ("store", tmp_path / "fit.zarr")):
        tracemalloc.start()
        fit(features, responses, cv="gcv", voxel_chunk=500, store=store, progress=False)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["memory"] - peaks["store"] > 0.8 * n_bytes


class _FakeClient:
    def __init__(self, resources: list[dict]) -> None:
        self.workers = {f"tcp://w{i}": {"resources": r} for i, r in enumerate(resources)}

    def scheduler_info(self) -> dict:
        return {"workers": self.workers}


def test_gpu_resources_read_from_the_workers() -> None:
    assert backends.gpu_resources(None) is None
    assert backends.gpu_resources(_FakeClient([{}, {"memory": 1}])) is None
    assert backends.gpu_resources(_FakeClient([{}, {"GPU": 1}])) == {"GPU": 1}


@pytest.mark.cluster
def test_torch_tasks_run_on_the_gpu_worker(planted, torch_fit) -> None:
    from distributed import Client, Scheduler, SpecCluster, Worker, get_task_stream

    features, responses, _, _ = planted
    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 1}},
               "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}}}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        assert backends.gpu_resources(client) == {"GPU": 1}
        assert backends.workers_see_cuda(client) == torch.cuda.is_available()
        # "auto" with a GPU worker: each task resolves it where it runs (numpy here without CUDA)
        auto = fit(features, responses, ["autoencoding"], client=client, progress=False, backend="auto")
        assert auto.attrs["backend"].startswith("auto")
        _agree(auto, torch_fit.sel(model=["autoencoding"]))
        gpu = next(a for a, w in client.scheduler_info()["workers"].items() if w["resources"].get("GPU"))
        with get_task_stream(client) as stream:
            other = fit(features, responses, voxel_chunk=40, client=client, progress=False, backend="torch",
                        device="cpu")
        ran = [(str(task["key"]), task["worker"]) for task in stream.data]
    torch_tasks = [w for key, w in ran if "_fit_block" in key or "_remote_factors" in key]
    assert len(torch_tasks) >= 3 + 5 and set(torch_tasks) == {gpu}  # 3 factor tasks, 5 chunks of 40 voxels
    assert other.attrs["backend"] == "torch" and other.attrs["device"] == "cpu"
    _agree(other, torch_fit)


def test_allow_tf32_is_recorded_and_restored(planted) -> None:
    features, responses, _, _ = planted
    before = torch.backends.cuda.matmul.allow_tf32
    results = fit(features, responses, ["autoencoding"], cv="gcv", progress=False, backend="torch", device="cpu",
                  allow_tf32=True)
    assert bool(results.attrs["allow_tf32"]) is True
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with backends.tf32(not before):
        assert torch.backends.cuda.matmul.allow_tf32 == (not before)
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_plain_arrays_on_torch_with_a_store(tmp_path) -> None:
    """Hand-made arrays with only the essential labels: no source, run or i/j/k coords."""
    rng = np.random.default_rng(0)
    images = [f"img{i:03d}" for i in range(120)]
    x = rng.standard_normal((2, 120, 10))
    features = xr.DataArray(x, dims=("model", "image", "feature"), coords={"model": ["a", "b"], "image": images})
    y = x[0] @ rng.standard_normal((10, 300)) + rng.standard_normal((120, 300))
    responses = xr.DataArray(y.astype(np.float32), dims=("trial", "voxel"),
                             coords={"image": ("trial", images), "session": ("trial", np.repeat(np.arange(6), 20))})
    base = fit(features, responses, progress=False)
    stored = fit(features, responses, progress=False, backend="torch", device="cpu", store=tmp_path / "fit.zarr")
    _agree(stored, base)
    np.testing.assert_allclose(stored.prediction.values, predict(stored, features, responses, backend="torch",
                                                                 device="cpu").values, atol=1e-5)
    assert float(stored.r2.sel(model="a").mean()) > 0.5 > float(stored.r2.sel(model="b").mean())


@pytest.mark.cluster
def test_auto_on_cpu_workers_is_the_numpy_path(planted, numpy_fit, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # in-process workers: the same answer anywhere
    from distributed import Client, LocalCluster

    features, responses, _, _ = planted
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        assert not backends.workers_see_cuda(client) and backends.gpu_resources(client) is None
        auto = fit(features, responses, client=client, progress=False, backend="auto")
    assert auto.attrs["backend"] == "numpy" and auto.attrs["device"] == "cpu"
    _agree(auto, numpy_fit)
