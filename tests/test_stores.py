"""Tests for neurotask.stores: schema validation, lazy opening, resumable region writes."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from neurotask import stores
from neurotask.datasets import make_synthetic_features

FEATURE_CHUNKS = {"model": 1, "image": 16, "feature": -1}


class ComputeForbidden(RuntimeError):
    pass


def _forbid_compute(*args, **kwargs):
    raise ComputeForbidden("a dask graph was computed")


@pytest.fixture
def features() -> xr.DataArray:
    return make_synthetic_features(["normal", "depth_zbuffer", "class_object"], 40, n_features=8, seed=3)


def _template(features: xr.DataArray) -> xr.Dataset:
    lazy = da.zeros(features.shape, dtype="float32", chunks=(1, 16, -1))
    return features.copy(data=lazy).drop_vars("group").to_dataset(name="features")


def _write_all(path: Path, features: xr.DataArray, *, stop_after: int | None = None, parameters=None):
    writer = stores.RegionWriter(
        path, _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS,
        parameters=parameters or {"seed": 3},
    )
    for n, region in enumerate(writer.pending()):
        if stop_after is not None and n == stop_after:
            raise KeyboardInterrupt("simulated interruption")
        writer.write(features.isel(region).drop_vars("group"), region)
    writer.finalize()
    return writer


def test_round_trip_is_lazy_and_exact(tmp_path, features):
    path = tmp_path / "features.zarr"
    _write_all(path, features)
    with dask.config.set(scheduler=_forbid_compute):
        opened = stores.open_features(path)
        assert isinstance(opened.data, da.Array)
        assert opened.dims == ("model", "image", "feature")
        assert opened.chunks[1][0] == 16
    np.testing.assert_array_equal(opened.values, features.values)
    assert list(opened.image.values) == list(features.image.values)
    assert list(opened.source.values) == list(features.source.values)
    for key in ("neurotask_version", "created", "parameters", "inputs"):
        assert key in opened.attrs
    assert json.loads(opened.attrs["parameters"]) == {"seed": 3}


def test_interrupted_write_never_reads_complete_and_resumes_identically(tmp_path, features):
    reference = tmp_path / "reference.zarr"
    _write_all(reference, features)
    resumed = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        _write_all(resumed, features, stop_after=4)
    assert not stores.is_complete(resumed)
    with pytest.raises(stores.StoreError, match=r"incomplete \(4 of 9 regions written\)"):
        stores.open_features(resumed)
    partial = stores.open_features(resumed, allow_incomplete=True)
    assert np.isnan(partial.values).any()

    writer = stores.RegionWriter(
        resumed, _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS,
        parameters={"seed": 3},
    )
    assert len(writer.pending()) == 5  # only the unwritten regions are redone
    _write_all(resumed, features)
    a, b = stores.open_features(reference), stores.open_features(resumed)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["parameters"] == b.attrs["parameters"]


def test_complete_store_has_nothing_pending(tmp_path, features):
    path = tmp_path / "f.zarr"
    _write_all(path, features)
    writer = stores.RegionWriter(
        path, _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS, parameters={"seed": 3}
    )
    assert writer.complete and writer.pending() == []


def test_other_parameters_refused_unless_overwrite(tmp_path, features):
    path = tmp_path / "f.zarr"
    _write_all(path, features)
    with pytest.raises(stores.StoreError, match="other parameters"):
        stores.RegionWriter(
            path, _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS, parameters={"seed": 4}
        )
    writer = stores.RegionWriter(
        path, _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS, parameters={"seed": 4},
        overwrite=True,
    )
    assert len(writer.pending()) == 9


def test_unaligned_region_is_rejected(tmp_path, features):
    writer = stores.RegionWriter(
        tmp_path / "f.zarr", _template(features), region_dims=["model", "image"], chunks=FEATURE_CHUNKS
    )
    with pytest.raises(ValueError, match="not chunk-aligned"):
        writer.write(features.isel(model=[0], image=slice(3, 19)).drop_vars("group"),
                     {"model": slice(0, 1), "image": slice(3, 19)})
    with pytest.raises(stores.StoreError, match="regions are unwritten"):
        writer.finalize()


def test_write_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    r2 = rng.standard_normal((2, 1000)).astype("float32")
    sim = np.array([[1, 0.5], [0.5, 1]], dtype="float32")
    ds = xr.Dataset(
        {"r2": (("model", "voxel"), da.from_array(r2, chunks=(2, 300))), "similarity": (("model", "model_"), sim)},
        coords={"model": ["a", "b"], "model_": ["a", "b"], "i": ("voxel", np.arange(1000))},
    )
    stores.write_dataset(tmp_path / "results.zarr", ds, parameters={"alphas": [1.0, 10.0]})
    opened = stores.open_results(tmp_path / "results.zarr")
    np.testing.assert_array_equal(opened.r2.values, r2)
    np.testing.assert_array_equal(opened.similarity.values, sim)
    np.testing.assert_array_equal(opened.i.values, np.arange(1000))
    assert "_regions_done" not in opened.variables


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.rename(image="stimulus"), r"missing \['image'\].*unexpected \['stimulus'\]"),
        (lambda f: f.isel(feature=0), r"missing \['feature'\]"),
        (lambda f: f.drop_vars("image"), "lacks the coordinate 'image'"),
        (lambda f: f.astype("complex64"), r"dtype complex64; expected numbers"),
        (lambda f: f.isel(image=[0, 1, 1, 2]), "2 duplicate image ids|1 duplicate image ids"),
    ],
)
def test_feature_validation_errors_name_problem_and_fix(features, mutate, message):
    with pytest.raises(stores.StoreError, match=message):
        stores.validate_features(mutate(features))


def test_validation_type_error_and_transpose(features):
    with pytest.raises(TypeError, match="must be an xarray.DataArray"):
        stores.validate_features(features.values)
    transposed = features.transpose("image", "feature", "model")
    assert stores.validate_features(transposed).dims == ("model", "image", "feature")


def test_plain_features_get_their_optional_labels(features):
    """Features with only (model, image, feature) and model/image coords are accepted (DESIGN §2)."""
    ids = ["COCO_train2014_000000000584", "n01440764_10110", "airplanecabin1"]
    plain = xr.DataArray(
        np.random.default_rng(0).normal(size=(2, 3, 4)), dims=("model", "image", "feature"),
        coords={"model": ["normal", "jigsaw"], "image": ids},
    )
    checked = stores.validate_features(plain)
    assert checked.dtype == np.float32
    assert list(checked["source"].values) == ["coco", "imagenet", "scene"]
    np.testing.assert_array_equal(checked.values, plain.values.astype(np.float32))
    other = stores.validate_features(plain.assign_coords(image=["cat", "dog", "tree"]))
    assert list(other["source"].values) == ["unknown"] * 3  # not BOLD5000 ids: no source is guessed
    given = stores.validate_features(plain.assign_coords(source=("image", ["x", "y", "z"])))
    assert list(given["source"].values) == ["x", "y", "z"]  # a source the user gave is kept


def test_plain_responses_get_a_run_and_no_grid():
    plain = xr.DataArray(
        np.zeros((4, 3)), dims=("voxel", "trial")[::-1],
        coords={"image": ("trial", list("abcd")), "session": ("trial", [1, 1, 2, 2])},
    )
    checked = stores.validate_responses(plain)
    assert checked.dtype == np.float32 and list(checked["run"].values) == [1, 1, 1, 1]
    assert not stores.has_voxel_grid(checked)
    with pytest.raises(stores.StoreError, match="lacks the coordinate 'image'"):
        stores.validate_responses(plain.drop_vars("image"))


def test_responses_validation():
    responses = xr.DataArray(
        np.zeros((4, 3), dtype="float32"), dims=("trial", "voxel"),
        coords={"image": ("trial", list("abcd")), "session": ("trial", [1, 1, 2, 2]), "run": ("trial", [1, 2, 1, 2]),
                "i": ("voxel", [0, 1, 2]), "j": ("voxel", [0, 0, 0]), "k": ("voxel", [0, 0, 0])},
    )
    assert stores.validate_responses(responses) is not None
    assert stores.has_voxel_grid(responses)
    with pytest.raises(stores.StoreError, match="lacks the coordinate 'session'"):
        stores.validate_responses(responses.drop_vars("session"))


def test_store_not_found_and_not_a_store(tmp_path):
    with pytest.raises(stores.StoreError, match="store not found.*neurotask extract"):
        stores.open_features(tmp_path / "missing.zarr")
    (tmp_path / "junk").mkdir()
    with pytest.raises(stores.StoreError, match="not a readable zarr store"):
        stores.open_features(tmp_path / "junk")


def test_wrong_kind_of_store(tmp_path):
    ds = xr.Dataset({"r2": (("model", "voxel"), np.zeros((1, 5), dtype="float32"))}, coords={"model": ["a"]})
    stores.write_dataset(tmp_path / "results.zarr", ds)
    with pytest.raises(stores.StoreError, match="holds no 'features' variable"):
        stores.open_features(tmp_path / "results.zarr")


def test_hashes_are_content_hashes(tmp_path):
    a = np.arange(6, dtype="float32")
    assert stores.sha256_array(a) == stores.sha256_array(a.copy())
    assert stores.sha256_array(a) != stores.sha256_array(a.reshape(2, 3))
    (tmp_path / "x").write_bytes(b"abc")
    assert stores.sha256_file(tmp_path / "x") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_dataset_is_told_to_pass_its_variable(features):
    with pytest.raises(TypeError, match=r"got Dataset: pass one of its variables, e.g. ds\['features'\]"):
        stores.validate_features(features.to_dataset(name="features"))


def test_an_unnamed_dataarray_written_with_to_zarr_opens(tmp_path):
    values = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    unnamed = xr.DataArray(values, dims=("trial", "voxel"),
                           coords={"image": ("trial", list("abcabc")), "session": ("trial", [1, 1, 1, 2, 2, 2])})
    unnamed.to_zarr(tmp_path / "mine.zarr")
    opened = stores.open_responses(tmp_path / "mine.zarr")
    assert opened.name == "responses"
    np.testing.assert_array_equal(opened.values, values)
