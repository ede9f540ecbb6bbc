"""RSA on inputs built by hand, as an outside user builds them (numpy + xarray only).

Features are plain ``xr.DataArray``s with dims (model, image, feature), float64, and only the
``model`` and ``image`` coordinates; image ids are either not BOLD5000's (``img_0001``) or
BOLD5000's as users have them (COCO, ImageNet and SUN names, with or without extensions).
References are independent: scipy (``pdist``, ``spearmanr``, ``kendalltau``), an O(n²) tau-a
and rsatoolbox (``calc_rdm``, ``compare``).

Tolerances: the features schema casts float64 features to float32 (pinned by
``test_rsa_subsets.py``), so our RDMs of float64 features are ~3e-8 from float64 references
(measured 2.8e-8): those comparisons use the acceptance bound 1e-6. Where the features are exact
in float32 (small integers) or the comparison works on ranks of well-separated values, both sides
are the same float64 arithmetic: 1e-12.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import rsatoolbox
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd
import scipy.stats
import xarray as xr

from neurotask import plotting, rsa

matplotlib.use("Agg")

#: Planted groups: the models of a group share a latent representation, plus their own noise.
GROUPS = {"g0_a": 0, "g0_b": 0, "g0_c": 0, "g1_a": 1, "g1_b": 1, "g2_a": 2, "g2_b": 2}
PLAIN_IDS = [f"img_{i:04d}" for i in range(14)]
BOLD5000_IDS = (
    ["COCO_train2014_000000000036.jpg", "COCO_train2014_000000000042", "COCO_train2014_000000000049.jpg"]
    + ["n01440764_10026.JPEG", "n01443537_1000", "n01484850_4496.JPEG"]
    + ["airplanecabin1.jpg", "airport2", "kitchen3.jpg", "beach4", "office5.jpg", "ATM1"]
)
SOURCES = ["coco"] * 3 + ["imagenet"] * 3 + ["scene"] * 6
BACKENDS = ("numpy", "torch")


def handbuilt(ids: list[str], *, n_features: int = 20, noise: float = 0.4, seed: int = 0) -> xr.DataArray:
    """Planted-group features, float64, with only ``model`` and ``image`` coordinates."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((max(GROUPS.values()) + 1, len(ids), n_features))
    values = np.stack([latents[g] + noise * rng.standard_normal((len(ids), n_features)) for g in GROUPS.values()])
    return xr.DataArray(values, dims=("model", "image", "feature"), coords={"model": list(GROUPS), "image": ids})


def toolbox_rdms(features: xr.DataArray, method: str = "correlation") -> rsatoolbox.rdm.RDMs:
    return rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(x) for x in features.values], method=method)


def brute_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    i, j = np.triu_indices(a.size, 1)
    return float(np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size)


def scipy_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """tau-a from scipy's tau-b: ``tau_b · sqrt((T − X)(T − Y)) / T`` with X, Y the tied pairs."""
    total = a.size * (a.size - 1) / 2
    tied = [sum(c * (c - 1) / 2 for c in np.unique(v, return_counts=True)[1]) for v in (a, b)]
    return float(scipy.stats.kendalltau(a, b).statistic * np.sqrt((total - tied[0]) * (total - tied[1])) / total)


# --------------------------------------------------------------------------------------------
# numbers against scipy and rsatoolbox


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
def test_float64_rdms_equal_pdist(method, backend):
    features = handbuilt(PLAIN_IDS)
    ours = rsa.rdm(features, method, backend=backend, device="cpu")
    assert ours.dtype == np.float64 and set(features.coords) == {"model", "image"}
    reference = np.stack([ssd.pdist(x, method) for x in features.values])
    np.testing.assert_allclose(ours.values, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_correlation_rdms_equal_rsatoolbox(backend):
    features = handbuilt(BOLD5000_IDS)
    ours = rsa.rdm(features, backend=backend, device="cpu").values
    np.testing.assert_allclose(ours, toolbox_rdms(features).get_vectors(), rtol=0, atol=1e-6)
    integers = features.round()  # exact in float32: the same float64 arithmetic on both sides
    np.testing.assert_allclose(rsa.rdm(integers, backend=backend, device="cpu").values,
                               toolbox_rdms(integers).get_vectors(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compare, toolbox, atol", [("spearman", "spearman", 1e-12), ("tau-a", "tau-a", 1e-12),
                                                     ("pearson", "corr", 1e-6)])
def test_similarity_equals_rsatoolbox_compare(compare, toolbox, atol, backend):
    features = handbuilt(PLAIN_IDS)
    sim = rsa.model_similarity(features, compare=compare, progress=False, backend=backend, device="cpu")
    rdms = toolbox_rdms(features)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(rdms, rdms, method=toolbox), rtol=0, atol=atol)
    assert sim.attrs["backend"] == backend and list(sim["model"].values) == list(GROUPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spearman_and_tau_a_equal_scipy_with_many_ties(backend):
    # small integer features: euclidean distances repeat often, so ties must be averaged (Spearman)
    # and counted as neither concordant nor discordant (tau-a)
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3, size=(4, 12, 3)).astype(np.float64)
    features = xr.DataArray(values, dims=("model", "image", "feature"),
                            coords={"model": ["w", "x", "y", "z"], "image": PLAIN_IDS[:12]})
    rdms = np.stack([ssd.pdist(x, "euclidean") for x in values])
    assert len(np.unique(rdms[0])) < rdms.shape[1] / 4  # really tied
    spearman = rsa.model_similarity(features, None, "euclidean", "spearman", progress=False,
                                    backend=backend, device="cpu")
    np.testing.assert_allclose(spearman.values, scipy.stats.spearmanr(rdms.T).statistic, rtol=0, atol=1e-12)
    tau = rsa.model_similarity(features, None, "euclidean", "tau-a", progress=False, backend=backend, device="cpu")
    for a in range(4):
        for b in range(a + 1, 4):
            assert tau.values[a, b] == pytest.approx(brute_tau_a(rdms[a], rdms[b]), abs=1e-12)
            assert tau.values[a, b] == pytest.approx(scipy_tau_a(rdms[a], rdms[b]), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["correlation", "euclidean"])
def test_a_category_model_keeps_its_ties(method, backend):
    """A one-hot category model (the classic RSA model RDM) and an image shown twice: the RDM has
    exactly pdist's distinct values, and Spearman and tau-a equal rsatoolbox's (they were 0.01 and
    0.63 off when GEMM rounding split the ties)."""
    rng = np.random.default_rng(6)
    category = np.eye(4)[rng.integers(0, 4, 30)]
    values = np.stack([np.pad(category, ((0, 0), (0, 8))), rng.standard_normal((30, 12))])
    values[1, 1] = values[1, 0]  # a duplicate image: distance exactly 0
    features = xr.DataArray(values, dims=("model", "image", "feature"),
                            coords={"model": ["category", "pixels"], "image": [f"s{i}" for i in range(30)]})
    ours = rsa.rdm(features, method, backend=backend, device="cpu").values
    reference = np.stack([ssd.pdist(x, method) for x in values])
    assert len(np.unique(ours[0])) == len(np.unique(reference[0])) == 2
    assert ours[1, 0] == 0.0
    rdms = toolbox_rdms(features, method)
    off = ~np.eye(2, dtype=bool)
    for compare in ("spearman", "tau-a"):
        sim = rsa.model_similarity(features, None, method, compare, progress=False, backend=backend, device="cpu")
        toolbox = rsatoolbox.rdm.compare(rdms, rdms, method=compare)
        np.testing.assert_allclose(sim.values[off], toolbox[off], rtol=0, atol=1e-12)
        np.testing.assert_allclose(rsa.compare_rdms(rsa.rdm(features, method), compare).values, sim.values, rtol=0, atol=1e-12)


def test_compare_rdms_on_handbuilt_rdms_equals_scipy():
    rng = np.random.default_rng(4)
    values = rng.standard_normal((3, 45))
    rdms = xr.DataArray(values, dims=("model", "pair"), coords={"model": ["p", "q", "r"]})
    sim = rsa.compare_rdms(rdms, "spearman")
    np.testing.assert_allclose(sim.values, scipy.stats.spearmanr(values.T).statistic, rtol=0, atol=1e-12)
    assert sim.attrs["n_images"] == 10


# --------------------------------------------------------------------------------------------
# planted groups, trees and their figures


@pytest.mark.parametrize("ids", [PLAIN_IDS, BOLD5000_IDS], ids=["plain-ids", "bold5000-ids"])
def test_dendrogram_recovers_the_planted_groups_exactly(ids):
    sim = rsa.model_similarity(handbuilt(ids), progress=False)
    tree = rsa.linkage(sim)
    planted = np.array(list(GROUPS.values()))
    clusters = tree.clusters(3).values
    # the same partition, whatever the cluster numbers
    assert len({(p, c) for p, c in zip(planted, clusters)}) == 3 == len(set(clusters))
    reference = sch.linkage(ssd.squareform(1 - sim.values, checks=False), "average")
    np.testing.assert_allclose(tree.matrix, reference, rtol=0, atol=1e-12)


def test_a_single_model_has_no_tree_but_a_heatmap():
    sim = rsa.model_similarity(handbuilt(PLAIN_IDS), progress=False).isel(model=[0], model_=[0])
    with pytest.raises(ValueError, match="at least 2 models"):
        rsa.linkage(sim)
    assert plotting.plot_similarity(sim) is not None


# --------------------------------------------------------------------------------------------
# sources and image subsets


def test_source_is_derived_from_bold5000_ids_with_or_without_extensions():
    selected, _ = rsa.select_images(handbuilt(BOLD5000_IDS))
    assert list(selected["source"].values) == SOURCES
    assert set(rsa.select_images(handbuilt(PLAIN_IDS))[0]["source"].values) == {"unknown"}


@pytest.mark.parametrize("subset", [{"source": "scene"}, 'source == "scene"'])
def test_scene_subset_equals_rsa_on_the_scene_images_alone(subset):
    features = handbuilt(BOLD5000_IDS)
    scenes = [i for i, s in zip(BOLD5000_IDS, SOURCES) if s == "scene"]
    sim = rsa.model_similarity(features, subset=subset, progress=False)
    rdms = toolbox_rdms(features.sel(image=scenes))
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(rdms, rdms, method="spearman"), rtol=0, atol=1e-12)
    assert sim.attrs["n_images"] == len(scenes)


@pytest.mark.parametrize(
    "ids, subset, message",
    [
        (PLAIN_IDS, {"source": "scene"}, r"selects 0 images of 14.*'unknown': 14.*not BOLD5000's"),
        (BOLD5000_IDS, 'source == "nothing"', r"selects 0 images of 12.*'scene': 6"),
        (BOLD5000_IDS, {"image": "airport2"}, "selects 1 image of 12"),
        (BOLD5000_IDS, ["airport2"], "selects 1 image of 12"),
        (BOLD5000_IDS, [], "selects 0 images of 12"),
        (BOLD5000_IDS, np.zeros(12, dtype=bool), "selects 0 images of 12"),
    ],
)
def test_empty_and_single_image_subsets_are_refused_clearly(ids, subset, message):
    features = handbuilt(ids)
    for call in (lambda: rsa.model_similarity(features, subset=subset, progress=False),
                 lambda: rsa.rdm(features, subset=subset)):
        with pytest.raises(ValueError, match=message):
            call()
