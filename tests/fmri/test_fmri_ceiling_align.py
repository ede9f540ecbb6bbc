"""Noise ceiling (planted reliability, naive loop) and feature alignment by image id."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import neurotask as nt
from neurotask.datasets import make_synthetic_features


def responses_with_repeats(n_images=400, shows=4, n_voxels=6, signal_sd=None, seed=0) -> xr.DataArray:
    """Each image shown ``shows`` times: response = image signal (sd per voxel) + unit noise, shuffled."""
    rng = np.random.default_rng(seed)
    signal_sd = np.linspace(0.0, 2.0, n_voxels) if signal_sd is None else signal_sd
    signal = rng.standard_normal((n_images, n_voxels)) * signal_sd
    image = np.repeat(np.arange(n_images), shows)
    order = rng.permutation(image.size)
    image = image[order]
    values = signal[image] + rng.standard_normal((image.size, n_voxels))
    return xr.DataArray(
        values.astype(np.float32), dims=("trial", "voxel"),
        coords={"image": ("trial", [f"img{i}" for i in image]), "session": ("trial", np.ones(image.size, int)),
                "run": ("trial", np.ones(image.size, int)), "i": ("voxel", np.arange(n_voxels)),
                "j": ("voxel", np.zeros(n_voxels, int)), "k": ("voxel", np.zeros(n_voxels, int))},
    )


def naive_ceiling(values: np.ndarray, images: np.ndarray) -> np.ndarray:
    odd, even = [], []
    for image in dict.fromkeys(images):
        trials = np.flatnonzero(images == image)
        if trials.size < 2:
            continue
        odd.append(values[trials[0::2]].mean(axis=0))
        even.append(values[trials[1::2]].mean(axis=0))
    odd, even = np.array(odd), np.array(even)
    r = np.array([np.corrcoef(odd[:, v], even[:, v])[0, 1] for v in range(values.shape[1])])
    return 2 * r / (1 + r)


def test_noise_ceiling_matches_naive_loop_and_is_lazy():
    resp = responses_with_repeats(n_images=60, shows=3, seed=1)
    # add unrepeated trials: they must be ignored
    extra = responses_with_repeats(n_images=20, shows=1, seed=2).assign_coords(
        image=("trial", [f"single{i}" for i in range(20)])
    )
    resp = xr.concat([resp, extra], dim="trial")
    expected = naive_ceiling(resp.values.astype(np.float64), resp["image"].values)
    lazy = nt.fmri.noise_ceiling(resp.chunk({"voxel": 2}))
    assert lazy.chunks is not None and lazy.dims == ("voxel",)
    # float64 inside both; the result is float32
    np.testing.assert_allclose(lazy.values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nt.fmri.noise_ceiling(resp).values, expected, rtol=1e-5, atol=1e-6)
    assert lazy.attrs["n_images"] == 60 and "i" in lazy.coords


def test_noise_ceiling_recovers_planted_reliability():
    sd = np.linspace(0.0, 2.0, 6)
    resp = responses_with_repeats(n_images=3000, shows=4, signal_sd=sd, seed=3)
    # reliability of the mean of 4 presentations: s² / (s² + 1/4)
    truth = sd**2 / (sd**2 + 0.25)
    got = nt.fmri.noise_ceiling(resp).values
    # sampling sd of r over 3000 images is ≤ 1/sqrt(3000) ≈ 0.018; 3 sd
    np.testing.assert_allclose(got, truth, atol=0.055)


def test_noise_ceiling_needs_repeats():
    resp = responses_with_repeats(n_images=10, shows=1)
    with pytest.raises(ValueError, match="repeated images"):
        nt.fmri.noise_ceiling(resp)


def forbid_compute(*args, **kwargs):
    raise AssertionError("dask computed where laziness was expected")


def test_align_by_image_id_lazily():
    feats = make_synthetic_features(models=["normal", "depth_euclidean"], images=12, n_features=5).chunk({"image": 4})
    ids = feats["image"].values
    trial_images = [ids[3], ids[0], ids[3], ids[11]]
    resp = xr.DataArray(
        np.zeros((4, 2), np.float32), dims=("trial", "voxel"),
        coords={"image": ("trial", trial_images), "session": ("trial", [1, 1, 2, 2]), "run": ("trial", [1, 2, 1, 2])},
    )
    with dask.config.set(scheduler=forbid_compute):
        design = nt.align(feats, resp)
    assert design.dims == ("model", "trial", "feature") and design.chunks is not None
    np.testing.assert_array_equal(design.values, feats.values[:, [3, 0, 3, 11]])
    assert design["image"].values.tolist() == trial_images
    np.testing.assert_array_equal(design["session"], [1, 1, 2, 2])
    np.testing.assert_array_equal(design["model"], feats["model"])


def test_align_lists_missing_images():
    feats = make_synthetic_features(models=["normal"], images=5, n_features=3)
    resp = xr.DataArray(
        np.zeros((4, 1), np.float32), dims=("trial", "voxel"),
        coords={"image": ("trial", ["absent_a", feats.image.values[0], "absent_b", "absent_a"])},
    )
    with pytest.raises(ValueError, match=r"2 image ids .* \(3 trials\), e.g. \['absent_a', 'absent_b'\]"):
        nt.align(feats, resp)


def test_align_says_when_ids_differ_only_by_a_file_extension():
    feats = xr.DataArray(np.zeros((1, 3, 2), np.float32), dims=("model", "image", "feature"),
                         coords={"model": ["m"], "image": ["airplanecabin1", "n01440764_10026", "img_3"]})
    resp = xr.DataArray(np.zeros((2, 1), np.float32), dims=("trial", "voxel"),
                        coords={"image": ("trial", ["airplanecabin1.jpg", "n01440764_10026.JPEG"])})
    with pytest.raises(ValueError, match="once file extensions are removed.*image_id"):
        nt.align(feats, resp)
    resp = resp.assign_coords(image=("trial", ["airplanecabin1.jpg", "elsewhere.jpg"]))
    with pytest.raises(ValueError, match="Extract features for these images") as error:
        nt.align(feats, resp)
    assert "extensions" not in str(error.value)
