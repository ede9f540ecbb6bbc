"""The torch backend of model_similarity and rdm (CPU torch here) against the numpy path and scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from rsa_reference import reference_rdms
from typer.testing import CliRunner

from neurotask import rsa, stores
from neurotask.cli import app
from neurotask.rsa import _torch

CASES = list(itertools.product(sorted(rsa.RDM_METHODS), sorted(rsa.COMPARE_METHODS)))
SCENES = {"source": "scene"}


@pytest.mark.parametrize("subset", [None, SCENES], ids=["all", "scenes"])
@pytest.mark.parametrize("rdm_method, compare", CASES)
def test_torch_on_cpu_equals_numpy(features, rdm_method, compare, subset):
    # float64 RDMs and products on both paths: they differ by GEMM summation order only (~1e-16)
    small = features.isel(image=slice(0, 30)) if compare == "tau-a" else features
    expected = rsa.model_similarity(small, subset, rdm_method, compare, progress=False)
    other = rsa.model_similarity(small, subset, rdm_method, compare, progress=False, backend="torch", device="cpu")
    np.testing.assert_allclose(other.values, expected.values, rtol=0, atol=1e-6)
    assert other.attrs["backend"] == "torch" and other.attrs["device"] == "cpu"
    assert expected.attrs["backend"] == "numpy" and expected.attrs["device"] == "cpu"
    assert other.attrs["n_images"] == expected.attrs["n_images"]


@pytest.mark.parametrize("rdm_method, compare", CASES)
def test_tiny_device_batch_gives_the_same_result(features, rdm_method, compare):
    # 7 pairs per step: one-row RDM strips and 7-pair cross-product blocks
    small = features.isel(image=slice(0, 25))
    whole = rsa.model_similarity(small, rdm_method=rdm_method, compare=compare, progress=False, backend="torch",
                                 device="cpu")
    tiny = rsa.model_similarity(small, rdm_method=rdm_method, compare=compare, progress=False, backend="torch",
                                device="cpu", device_batch=7)
    np.testing.assert_allclose(tiny.values, whole.values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", sorted(rsa.RDM_METHODS))
def test_torch_rdm_equals_scipy_pdist_in_tiny_strips(features, method):
    rdm = _torch.condensed_rdm(features.values[2], method, "cpu", device_batch=5)
    assert rdm.dtype == torch.float64
    np.testing.assert_allclose(rdm.numpy(), reference_rdms(features, method)[2], rtol=0, atol=1e-9)
    lazy = rsa.rdm(features, method, backend="torch", device="cpu")
    np.testing.assert_allclose(lazy.values, reference_rdms(features, method), rtol=0, atol=1e-9)
    assert lazy.attrs["backend"] == "torch"


def test_torch_spearman_equals_scipy_pdist_and_spearmanr(features):
    sim = rsa.model_similarity(features, progress=False, backend="torch", device="cpu", device_batch=11)
    reference = scipy.stats.spearmanr(reference_rdms(features).T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "values",
    [np.round(np.random.default_rng(0).standard_normal(2000), 1), np.r_[np.zeros(3), -np.zeros(3), 1.0, 0.5, 0.5],
     np.full(5, 0.25), np.array([0.3])],
    ids=["ties", "signed-zeros", "all-equal", "one"],
)
def test_torch_ranks_equal_rankdata(values):
    v = torch.as_tensor(values)
    np.testing.assert_array_equal(_torch.doubled_centered_ranks(v).numpy(),
                                  2 * scipy.stats.rankdata(values) - (values.size + 1))
    np.testing.assert_array_equal(_torch.dense_ranks(v).numpy(), scipy.stats.rankdata(values, method="dense"))


def test_auto_is_numpy_without_a_gpu(features, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    auto = rsa.model_similarity(features, progress=False, backend="auto")
    assert auto.attrs["backend"] == "numpy" and auto.attrs["device"] == "cpu"
    torch_auto = rsa.model_similarity(features, progress=False, backend="torch")  # device="auto": the CPU
    assert torch_auto.attrs["device"] == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        rsa.model_similarity(features, progress=False, backend="torch", device="cuda")


def test_backend_errors_name_the_argument(features):
    with pytest.raises(ValueError, match="'backend' parameter of model_similarity"):
        rsa.model_similarity(features, progress=False, backend="jax")
    with pytest.raises(ValueError, match="backend='numpy' runs on the CPU"):
        rsa.model_similarity(features, progress=False, device="cuda")
    with pytest.raises(ValueError, match="'device_batch' parameter of model_similarity"):
        rsa.model_similarity(features, progress=False, backend="torch", device_batch=0)
    with pytest.raises(ValueError, match="'backend' parameter of rdm"):
        rsa.rdm(features, backend="jax")


def test_torch_names_the_model_with_unusable_features(features):
    bad = features.copy(deep=True)
    bad.values[1, 7, 3] = np.nan
    with pytest.raises(ValueError, match=r"'depth_zbuffer'.*NaN"):
        rsa.model_similarity(bad, progress=False, backend="torch", device="cpu")


def test_cli_rsa_on_torch(tmp_path, features):
    store = tmp_path / "features.zarr"
    stores.write_dataset(store, features.drop_vars("group").to_dataset(name="features"),
                         chunks={"model": 1, "image": 32, "feature": -1}, region_dim="model")
    out = tmp_path / "rsa"
    result = CliRunner().invoke(app, ["rsa", str(store), "--out", str(out), "--format", "png", "--backend", "torch",
                                      "--device", "cpu", "--device-batch", "100"])
    assert result.exit_code == 0, result.output
    written = stores.open_results(out / "similarity.zarr")
    assert written.attrs["backend"] == "torch" and "on torch (cpu)" in result.output
    expected = rsa.model_similarity(features, progress=False)
    np.testing.assert_allclose(written["similarity"].squeeze("subset").values, expected.values, atol=1e-6)
