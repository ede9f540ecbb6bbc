"""The ``neurotask encode`` command on small synthetic stores."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

import neurotask as nt
from neurotask.cli import app
from neurotask.encoding import fit
from neurotask.stores import write_dataset


def test_encode_writes_results_equal_to_the_library(planted, tmp_path) -> None:
    features, responses, _, _ = planted
    write_dataset(tmp_path / "features.zarr", features.to_dataset(name="features"), region_dim="model",
                  chunks={"model": 1, "image": -1, "feature": -1})
    write_dataset(tmp_path / "responses.zarr", responses.to_dataset(name="responses"), region_dim="voxel",
                  chunks={"trial": -1, "voxel": 64})
    out = tmp_path / "encoding.zarr"
    result = CliRunner().invoke(app, [
        "encode", str(tmp_path / "features.zarr"), str(tmp_path / "responses.zarr"), "--out", str(out),
        "--model", "autoencoding", "--model", "autoencoding+class_object", "--test-session", "6",
        "--alphas", "1,10,100,1000",
    ])
    assert result.exit_code == 0, result.output
    assert "autoencoding+class_object: mean R²" in result.output
    stored = nt.open_results(out)
    expected = fit(features, responses, ["autoencoding", ("autoencoding", "class_object")], alphas=[1, 10, 100, 1000],
                   progress=False)
    np.testing.assert_array_equal(stored.alpha.values, expected.alpha.values)
    np.testing.assert_allclose(stored.r2.values, expected.r2.values, atol=1e-6)


def test_encode_reports_bad_input(planted, tmp_path) -> None:
    features, responses, _, _ = planted
    write_dataset(tmp_path / "features.zarr", features.to_dataset(name="features"), region_dim="model",
                  chunks={"model": 1, "image": -1, "feature": -1})
    write_dataset(tmp_path / "responses.zarr", responses.to_dataset(name="responses"), region_dim="voxel",
                  chunks={"trial": -1, "voxel": 64})
    result = CliRunner().invoke(app, [
        "encode", str(tmp_path / "features.zarr"), str(tmp_path / "responses.zarr"), "--out",
        str(tmp_path / "x.zarr"), "--test-session", "12",
    ])
    assert result.exit_code == 2 and "available sessions" in result.output
