"""Tests for neurotask.rsa against scipy, rsatoolbox, brute force and planted groups.

Tolerances: our RDMs and rsatoolbox's are both computed in float64 from the same float32
features, so they agree to ~1e-12; the acceptance bound is 1e-6 and tests use 1e-9 where the
arithmetic is float64 throughout (1e-6 for Pearson, whose vectors are stored as float32).
"""

from __future__ import annotations

import itertools
import os

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import rsatoolbox
import scipy.spatial.distance as ssd
import scipy.stats
import xarray as xr
from typer.testing import CliRunner

from neurotask import rsa, stimuli, stores
from neurotask.rsa import _kernels
from neurotask.cli import app
from neurotask.datasets import make_synthetic_features

MODELS = ["normal", "depth_zbuffer", "jigsaw", "class_object", "denoising"]


class ComputeForbidden(RuntimeError):
    pass


def _forbid_compute(*args, **kwargs):
    raise ComputeForbidden("a dask graph was computed")


@pytest.fixture(scope="module")
def features() -> xr.DataArray:
    return make_synthetic_features(MODELS, 60, n_features=48, seed=1)


def _reference_rdms(features: xr.DataArray, method: str = "correlation") -> np.ndarray:
    return np.stack([ssd.pdist(features.values[m].astype(np.float64), method) for m in range(features.sizes["model"])])


def _rsatoolbox_rdms(features: xr.DataArray, method: str = "correlation"):
    datasets = [rsatoolbox.data.Dataset(features.values[m].astype(np.float64)) for m in range(features.sizes["model"])]
    return rsatoolbox.rdm.calc_rdm(datasets, method=method)


def _brute_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """O(n²) tau-a: (concordant − discordant) / (n(n−1)/2), ties counted as neither."""
    i, j = np.triu_indices(a.size, 1)
    return float(np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size)


# --------------------------------------------------------------------------------------------
# RDMs


@pytest.mark.parametrize("method", sorted(rsa.RDM_METHODS))
def test_rdm_equals_scipy_pdist(features, method):
    computed = rsa.rdm(features, method).values
    np.testing.assert_allclose(computed, _reference_rdms(features, method), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", sorted(rsa.RDM_METHODS))
def test_rdm_strips_cover_every_pair(features, monkeypatch, method):
    """RDMs are computed in strips of rows; uneven strips (7 rows, 60 images) must tile the triangle."""
    monkeypatch.setattr(_kernels, "_STRIP_ROWS", 7)
    computed = rsa.rdm(features.isel(model=[0, 1]), method).values
    np.testing.assert_allclose(computed, _reference_rdms(features.isel(model=[0, 1]), method), rtol=0, atol=1e-9)


def test_rdm_equals_rsatoolbox(features):
    ours = rsa.rdm(features, "correlation").values
    np.testing.assert_allclose(ours, _rsatoolbox_rdms(features, "correlation").get_vectors(), rtol=0, atol=1e-9)
    # rsatoolbox's 'euclidean' is the squared distance over the number of features
    euclid = rsa.rdm(features, "euclidean").values
    theirs = _rsatoolbox_rdms(features, "euclidean").get_vectors()
    np.testing.assert_allclose(euclid**2 / features.sizes["feature"], theirs, rtol=1e-9, atol=1e-9)


def test_rdm_is_lazy_labeled_and_square_on_demand(features):
    with dask.config.set(scheduler=_forbid_compute):
        condensed = rsa.rdm(features, subset={"source": ["coco", "imagenet"]})
        square = rsa.rdm(features, square=True)
    assert isinstance(condensed.data, da.Array) and condensed.dims == ("model", "pair")
    kept = features.source.isin(["coco", "imagenet"]).values
    assert condensed.attrs["n_images"] == int(kept.sum())
    a, b = features.image.values[kept][[1, 4]]
    full = square.sel(model="jigsaw")
    assert full.dims == ("image", "image_") and full.shape == (60, 60)
    np.testing.assert_allclose(full.values, ssd.squareform(_reference_rdms(features)[2]), atol=1e-9)
    one = condensed.sel(model="jigsaw", image_i=a, image_j=b)
    assert float(one) == pytest.approx(float(full.sel(image=a, image_=b)), abs=1e-12)


def test_condensed_pairs_follow_squareform_order(features):
    r = rsa.rdm(features.isel(model=[0]))
    images = list(features.image.values)
    ref = _reference_rdms(features.isel(model=[0]))[0]
    for k in (0, 1, 58, 59, 1769):
        i, j = images.index(r.image_i.values[k]), images.index(r.image_j.values[k])
        assert i < j
        assert r.values[0, k] == pytest.approx(ssd.squareform(ref)[i, j], abs=1e-12)


# --------------------------------------------------------------------------------------------
# ranks and comparisons


@pytest.mark.parametrize(
    "values",
    [
        np.round(np.random.default_rng(0).standard_normal(2000), 1),  # heavy ties
        np.random.default_rng(1).standard_normal(3001),  # no ties
        np.r_[np.zeros(4), -np.zeros(4), 5e-324 * np.arange(3), 1 + 2.2e-16 * np.arange(6), -np.arange(3.0)],
        np.full(7, 0.25),
        np.array([2.0, 1.0, 3.0]),
        5e-324 * np.random.default_rng(2).integers(0, 5, 50),  # a range of a few subnormals
        np.array([-1e308, 1e308, 0.0, 5.0, 5.0]),  # a range beyond the largest float
        1 + 2.2e-16 * np.random.default_rng(3).integers(0, 3, 1000),  # ties one ulp apart
    ],
    ids=["ties", "distinct", "signed-zero-subnormal-ulp", "all-equal", "three", "subnormal-range", "huge-range", "ulp-ties"],
)
def test_ranks_equal_rankdata(values):
    expected = 2 * scipy.stats.rankdata(values) - (values.size + 1)
    ranks = _kernels._doubled_centered_ranks(values)
    assert ranks.dtype == np.int32
    np.testing.assert_array_equal(ranks, expected)
    np.testing.assert_array_equal(_kernels._dense_ranks(values), scipy.stats.rankdata(values, method="dense"))


def test_model_similarity_spearman_equals_scipy_and_rsatoolbox(features):
    sim = rsa.model_similarity(features, progress=False)
    reference = scipy.stats.spearmanr(_reference_rdms(features).T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)
    toolbox = _rsatoolbox_rdms(features)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "spearman"), rtol=0, atol=1e-9)
    assert sim.dims == ("model", "model_") and list(sim.model_.values) == MODELS
    assert sim.attrs["compare"] == "spearman" and sim.attrs["rdm_method"] == "correlation"
    assert sim.attrs["n_images"] == 60 and sim.attrs["subset"] == "all images"


def test_model_similarity_tau_a_equals_rsatoolbox_and_brute_force(features):
    small = features.isel(image=slice(0, 30))
    sim = rsa.model_similarity(small, compare="tau-a", progress=False)
    toolbox = _rsatoolbox_rdms(small)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "tau-a"), rtol=0, atol=1e-9)
    rdms = _reference_rdms(small)
    for a, b in itertools.combinations(range(len(MODELS)), 2):
        assert sim.values[a, b] == pytest.approx(_brute_tau_a(rdms[a], rdms[b]), abs=1e-9)


def test_model_similarity_pearson_equals_rsatoolbox(features):
    sim = rsa.model_similarity(features, compare="pearson", rdm_method="cosine", progress=False)
    toolbox = rsatoolbox.rdm.RDMs(_reference_rdms(features, "cosine"))
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "corr"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("compare", sorted(rsa.COMPARE_METHODS))
def test_compare_rdms_with_many_ties(compare):
    """RDMs with frequent exact ties: ranks must average them, tau-a must count them as neither."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 6, size=(4, 300)).astype(np.float64)
    values[1] = values[0] + rng.integers(0, 2, 300)  # correlated with model 0
    values[3, :150] = 0.0
    rdms = xr.DataArray(values, dims=("model", "pair"), coords={"model": list("abcd")})
    sim = rsa.compare_rdms(rdms, compare).values
    if compare == "spearman":
        reference = scipy.stats.spearmanr(values.T).statistic
    elif compare == "pearson":
        reference = np.corrcoef(values)
    else:
        reference = np.array([[_brute_tau_a(x, y) for y in values] for x in values])
        np.fill_diagonal(reference, 1.0)
    np.testing.assert_allclose(sim, reference, rtol=0, atol=1e-6 if compare == "pearson" else 1e-12)


def test_compare_rdms_refuses_nan():
    rdms = xr.DataArray([[0.1, np.nan, 0.3], [0.2, 0.1, 0.3]], dims=("model", "pair"), coords={"model": ["a", "b"]})
    with pytest.raises(ValueError, match="model 'a' holds NaN"):
        rsa.compare_rdms(rdms)


def test_tau_a_public_fallback_equals_fast_kernel(monkeypatch):
    """Without scipy's private discordance kernel, tau-a comes from the public tau-b, equal to 1e-12."""
    rng = np.random.default_rng(6)
    values = rng.integers(0, 8, size=(3, 400)).astype(np.float64)
    values[1] += values[0]
    rdms = xr.DataArray(values, dims=("model", "pair"), coords={"model": list("abc")})
    fast = rsa.compare_rdms(rdms, "tau-a").values
    monkeypatch.setattr(_kernels, "_kendall_dis", None)
    np.testing.assert_allclose(rsa.compare_rdms(rdms, "tau-a").values, fast, rtol=0, atol=1e-12)
    assert fast[0, 1] == pytest.approx(_brute_tau_a(values[0], values[1]), abs=1e-12)


# --------------------------------------------------------------------------------------------
# subsets


def test_subset_forms_agree_with_explicit_selection(features):
    scene = features.source.values == "scene"
    expected = rsa.model_similarity(features.isel(image=np.flatnonzero(scene)), progress=False)
    forms = ['source == "scene"', {"source": "scene"}, scene, list(features.image.values[scene])]
    for subset in forms:
        sim = rsa.model_similarity(features, subset=subset, progress=False)
        np.testing.assert_allclose(sim.values, expected.values, rtol=0, atol=1e-12)
        assert sim.attrs["n_images"] == int(scene.sum())
    assert rsa.model_similarity(features, subset={"source": "scene"}, progress=False).attrs["subset"] == "source == 'scene'"


@pytest.mark.parametrize(
    "subset, message",
    [
        ({"source": "nonexistent"}, "selects 0 images"),
        (["n01440764_10110"], "not in features"),
        ({"colour": "red"}, "not on the image dim"),
        ("source === 1", "not a valid query"),
        (np.ones(3, dtype=bool), "one entry per image"),
    ],
)
def test_bad_subsets_say_what_is_wrong(features, subset, message):
    with pytest.raises(ValueError, match=message):
        rsa.model_similarity(features, subset=subset, progress=False)


def test_subset_of_two_images_is_refused(features):
    with pytest.raises(ValueError, match="at least 3 images"):
        rsa.rdm(features, subset=list(features.image.values[:2]))


# --------------------------------------------------------------------------------------------
# plain labeled arrays, as users bring them


def _plain_features(ids, n_models=3, n_features=24, seed=7, dtype=np.float32) -> xr.DataArray:
    """Only the essentials: dims (model, image, feature), coords model and image; nothing else."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((len(ids), n_features))
    values = np.stack([shared + (1 + m) * rng.standard_normal((len(ids), n_features)) for m in range(n_models)])
    return xr.DataArray(
        values.astype(dtype), dims=("model", "image", "feature"),
        coords={"model": [f"m{m}" for m in range(n_models)], "image": list(ids)},
    )


BOLD5000_IDS = (
    [f"COCO_train2014_{i:012d}" for i in range(584, 596)]
    + [f"n0144076{i}_{10110 + i}" for i in range(10)]
    + ["airplanecabin1", "ATM1", "bakery3", "bedroom12", "canyon2", "castle1", "kitchen5", "library2"]
)


def test_plain_features_rdm_and_spearman_equal_scipy_and_rsatoolbox():
    plain = _plain_features(BOLD5000_IDS)
    assert set(plain.coords) == {"model", "image"}
    np.testing.assert_allclose(rsa.rdm(plain).values, _reference_rdms(plain), rtol=0, atol=1e-9)
    sim = rsa.model_similarity(plain, progress=False)
    toolbox = _rsatoolbox_rdms(plain)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "spearman"), rtol=0, atol=1e-9)
    # dims in another order are accepted too
    np.testing.assert_array_equal(rsa.model_similarity(plain.transpose("image", "feature", "model"), progress=False), sim)


def test_plain_features_source_subset_from_bold5000_ids():
    plain = _plain_features(BOLD5000_IDS)
    scenes = [i for i in BOLD5000_IDS if stimuli.image_source(i) == "scene"]
    selected, description = rsa.select_images(plain, {"source": "scene"})
    assert list(selected.image.values) == scenes and description == "source == 'scene'"
    sim = rsa.model_similarity(plain, subset={"source": "scene"}, progress=False)
    reference = scipy.stats.spearmanr(_reference_rdms(plain.sel(image=scenes)).T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)
    assert sim.attrs["n_images"] == len(scenes) == 8
    query = rsa.model_similarity(plain, subset='source == "coco"', progress=False)
    assert query.attrs["n_images"] == 12


def test_plain_features_with_other_ids_have_unknown_source():
    plain = _plain_features([f"stim{i:03d}" for i in range(20)])
    assert set(rsa.select_images(plain)[0].source.values) == {"unknown"}
    with pytest.raises(ValueError, match="selects 0 images"):
        rsa.model_similarity(plain, subset={"source": "scene"}, progress=False)
    sim = rsa.model_similarity(plain, subset={"source": "unknown"}, rdm_method="euclidean", progress=False)
    reference = scipy.stats.spearmanr(_reference_rdms(plain, "euclidean").T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)


def test_float64_features_are_accepted_and_lazy():
    """float64 input is cast to float32 (the features schema), lazily: the result equals the
    float32 features' exactly, and rsatoolbox's on the float64 values to float32 rounding."""
    plain64 = _plain_features(BOLD5000_IDS, dtype=np.float64)
    lazy = plain64.chunk({"model": 1})
    with dask.config.set(scheduler=_forbid_compute):
        rdms = rsa.rdm(lazy, subset={"source": ["coco", "imagenet"]})
    assert isinstance(rdms.data, da.Array) and rdms.attrs["n_images"] == 22
    sim = rsa.model_similarity(lazy, compare="pearson", progress=False)
    np.testing.assert_array_equal(sim.values, rsa.model_similarity(plain64.astype(np.float32), compare="pearson",
                                                                    progress=False).values)
    toolbox = _rsatoolbox_rdms(plain64)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "corr"), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# bad features


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


# --------------------------------------------------------------------------------------------
# lazy inputs, Dask clients


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


# --------------------------------------------------------------------------------------------
# trees


def test_dendrogram_recovers_planted_groups():
    feats = make_synthetic_features(images=120, n_features=96, seed=2)  # 25 tasks, TASKONOMY_GROUPS
    tree = rsa.linkage(rsa.model_similarity(feats, progress=False))
    groups = feats.group.values
    clusters = tree.clusters(len(set(groups))).sel(model=feats.model).values
    planted = {frozenset(np.flatnonzero(groups == g)) for g in set(groups)}
    found = {frozenset(np.flatnonzero(clusters == c)) for c in set(clusters)}
    assert found == planted


def test_linkage_equals_scipy_average_on_one_minus_similarity(features):
    sim = rsa.model_similarity(features, progress=False)
    tree = rsa.linkage(sim)
    import scipy.cluster.hierarchy as sch

    reference = sch.linkage(ssd.squareform(1 - sim.values, checks=False), "average")
    np.testing.assert_allclose(tree.matrix, reference, atol=1e-12)
    assert list(tree.order) == list(sch.leaves_list(reference))
    assert tree.leaves == [MODELS[i] for i in tree.order] and tree.labels == MODELS
    with pytest.raises(ValueError, match="unknown method"):
        rsa.linkage(sim, method="ward")


def test_linkage_treats_undefined_similarity_as_unrelated():
    """A NaN row (a model whose score vector is zero, in results written before issue 13) is
    clustered as similarity 0 to the others and 1 to itself, with a warning naming it."""
    import scipy.cluster.hierarchy as sch

    values = np.array([[1, .8, np.nan, .1], [.8, 1, np.nan, .2], [np.nan] * 4, [.1, .2, np.nan, 1]])
    names = ["a", "b", "curvature", "d"]
    sim = xr.DataArray(values, dims=("model", "model_"), coords={"model": names, "model_": names})
    with pytest.warns(RuntimeWarning, match=r"undefined \(NaN\) for models \['curvature'\]"):
        tree = rsa.linkage(sim)
    filled = np.nan_to_num(values)
    np.fill_diagonal(filled, 1.0)
    reference = sch.linkage(ssd.squareform(1 - filled, checks=False), "average")
    np.testing.assert_allclose(tree.matrix, reference, atol=1e-12)
    assert np.isfinite(tree.matrix).all()
    assert 2 in tree.matrix[-1, :2] and tree.matrix[-1, 2] == 1.0  # curvature joins last, at distance 1
    with pytest.raises(ValueError, match="finite and symmetric"):
        rsa.linkage(sim.fillna(0.0).where(sim.model != "a", np.inf))


# --------------------------------------------------------------------------------------------
# command line


def test_cli_rsa_writes_matrix_and_figures(tmp_path, features):
    store = tmp_path / "features.zarr"
    stores.write_dataset(
        store, features.drop_vars("group").to_dataset(name="features"),
        chunks={"model": 1, "image": 32, "feature": -1}, region_dim="model",
    )
    out = tmp_path / "rsa"
    result = CliRunner().invoke(
        app, ["rsa", str(store), "--subset", "source=scene,coco", "--out", str(out), "--format", "png,svg"]
    )
    assert result.exit_code == 0, result.output
    written = stores.open_results(out / "similarity.zarr")["similarity"].squeeze("subset")  # the rsa step's layout
    expected = rsa.model_similarity(features, subset={"source": ["scene", "coco"]}, progress=False)
    np.testing.assert_allclose(written.values, expected.values, atol=1e-12)
    for name in ("similarity.csv", "similarity.png", "similarity.svg", "dendrogram.png", "dendrogram.svg"):
        assert (out / name).stat().st_size > 0
    bad = CliRunner().invoke(app, ["rsa", str(store), "--subset", "source=moon", "--out", str(out)])
    assert bad.exit_code == 2 and "selects 0 images" in bad.output


class _KillAtFirstModel(distributed.WorkerPlugin):
    """Kill the worker's process when it starts its first model's RDM, once (marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        name = key if isinstance(key, str) else key[0]
        if finish != "executing" or not str(name).startswith("_model_vector"):
            return
        try:  # atomic: both workers start a model at once, only one may die
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, str(name).encode())
        os._exit(1)


@pytest.mark.cluster
def test_worker_lost_mid_rsa_with_in_memory_features(features, tmp_path):
    # numpy-backed features are scattered to the workers: losing the worker that computes a model
    # must not lose the only copy of its features
    in_process = rsa.model_similarity(features, progress=False)
    marker = tmp_path / "killed"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(_KillAtFirstModel(str(marker)))
        on_cluster = rsa.model_similarity(features.compute(), client=client, progress=False)
    assert marker.exists(), "no worker was killed"
    np.testing.assert_allclose(on_cluster.values, in_process.values, atol=1e-6)
