"""neurotask.rsa.rdm against scipy pdist and rsatoolbox: values, strips, labels, laziness."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.spatial.distance as ssd
from rsa_reference import forbid_compute, reference_rdms, rsatoolbox_rdms

from neurotask import rsa
from neurotask.rsa import _kernels


@pytest.mark.parametrize("method", sorted(rsa.RDM_METHODS))
def test_rdm_equals_scipy_pdist(features, method):
    computed = rsa.rdm(features, method).values
    np.testing.assert_allclose(computed, reference_rdms(features, method), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", sorted(rsa.RDM_METHODS))
def test_rdm_strips_cover_every_pair(features, monkeypatch, method):
    """RDMs are computed in strips of rows; uneven strips (7 rows, 60 images) must tile the triangle."""
    monkeypatch.setattr(_kernels, "_STRIP_ROWS", 7)
    computed = rsa.rdm(features.isel(model=[0, 1]), method).values
    np.testing.assert_allclose(computed, reference_rdms(features.isel(model=[0, 1]), method), rtol=0, atol=1e-9)


def test_rdm_equals_rsatoolbox(features):
    ours = rsa.rdm(features, "correlation").values
    np.testing.assert_allclose(ours, rsatoolbox_rdms(features, "correlation").get_vectors(), rtol=0, atol=1e-9)
    # rsatoolbox's 'euclidean' is the squared distance over the number of features
    euclid = rsa.rdm(features, "euclidean").values
    theirs = rsatoolbox_rdms(features, "euclidean").get_vectors()
    np.testing.assert_allclose(euclid**2 / features.sizes["feature"], theirs, rtol=1e-9, atol=1e-9)


def test_rdm_is_lazy_labeled_and_square_on_demand(features):
    with dask.config.set(scheduler=forbid_compute):
        condensed = rsa.rdm(features, subset={"source": ["coco", "imagenet"]})
        square = rsa.rdm(features, square=True)
    assert isinstance(condensed.data, da.Array) and condensed.dims == ("model", "pair")
    kept = features.source.isin(["coco", "imagenet"]).values
    assert condensed.attrs["n_images"] == int(kept.sum())
    a, b = features.image.values[kept][[1, 4]]
    full = square.sel(model="jigsaw")
    assert full.dims == ("image", "image_") and full.shape == (60, 60)
    np.testing.assert_allclose(full.values, ssd.squareform(reference_rdms(features)[2]), atol=1e-9)
    one = condensed.sel(model="jigsaw", image_i=a, image_j=b)
    assert float(one) == pytest.approx(float(full.sel(image=a, image_=b)), abs=1e-12)


def test_condensed_pairs_follow_squareform_order(features):
    r = rsa.rdm(features.isel(model=[0]))
    images = list(features.image.values)
    ref = reference_rdms(features.isel(model=[0]))[0]
    for k in (0, 1, 58, 59, 1769):
        i, j = images.index(r.image_i.values[k]), images.index(r.image_j.values[k])
        assert i < j
        assert r.values[0, k] == pytest.approx(ssd.squareform(ref)[i, j], abs=1e-12)
