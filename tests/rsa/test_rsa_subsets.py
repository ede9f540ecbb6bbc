"""Image subsets, and plain labeled features as users bring them (against scipy and rsatoolbox)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import xarray as xr
from rsa_reference import forbid_compute, reference_rdms, rsatoolbox_rdms

from neurotask import rsa, stimuli


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
    np.testing.assert_allclose(rsa.rdm(plain).values, reference_rdms(plain), rtol=0, atol=1e-9)
    sim = rsa.model_similarity(plain, progress=False)
    toolbox = rsatoolbox_rdms(plain)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "spearman"), rtol=0, atol=1e-9)
    # dims in another order are accepted too
    np.testing.assert_array_equal(rsa.model_similarity(plain.transpose("image", "feature", "model"), progress=False), sim)


def test_plain_features_source_subset_from_bold5000_ids():
    plain = _plain_features(BOLD5000_IDS)
    scenes = [i for i in BOLD5000_IDS if stimuli.image_source(i) == "scene"]
    selected, description = rsa.select_images(plain, {"source": "scene"})
    assert list(selected.image.values) == scenes and description == "source == 'scene'"
    sim = rsa.model_similarity(plain, subset={"source": "scene"}, progress=False)
    reference = scipy.stats.spearmanr(reference_rdms(plain.sel(image=scenes)).T).statistic
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
    reference = scipy.stats.spearmanr(reference_rdms(plain, "euclidean").T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)


def test_float64_features_are_accepted_and_lazy():
    """float64 input is cast to float32 (the features schema), lazily: the result equals the
    float32 features' exactly, and rsatoolbox's on the float64 values to float32 rounding."""
    plain64 = _plain_features(BOLD5000_IDS, dtype=np.float64)
    lazy = plain64.chunk({"model": 1})
    with dask.config.set(scheduler=forbid_compute):
        rdms = rsa.rdm(lazy, subset={"source": ["coco", "imagenet"]})
    assert isinstance(rdms.data, da.Array) and rdms.attrs["n_images"] == 22
    sim = rsa.model_similarity(lazy, compare="pearson", progress=False)
    np.testing.assert_array_equal(sim.values, rsa.model_similarity(plain64.astype(np.float32), compare="pearson",
                                                                    progress=False).values)
    toolbox = rsatoolbox_rdms(plain64)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "corr"), rtol=0, atol=1e-6)
