"""`neurotask permute` and `neurotask partition` end to end on tiny stores."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from neurotask.cli import app
from neurotask.stores import open_results, write_dataset


def test_permute_and_partition_commands(tmp_path, small_fit, encoding_fit):
    features, responses, _, _, drivers = small_fit
    write_dataset(tmp_path / "features.zarr", features.drop_vars("group").to_dataset(), region_dim="model")
    write_dataset(tmp_path / "responses.zarr", responses.to_dataset(), region_dim="voxel")
    fit = encoding_fit(features, responses, cv=3, progress=False)
    write_dataset(tmp_path / "results.zarr", fit, region_dim="voxel")
    runner = CliRunner()
    stores = ["--responses", str(tmp_path / "responses.zarr"), "--features", str(tmp_path / "features.zarr")]
    outcome = runner.invoke(app, ["permute", str(tmp_path / "results.zarr"), *stores, "--out", str(tmp_path / "perm.zarr"),
                                  "--permutations", "199", "--figure", str(tmp_path / "counts.png")])
    assert outcome.exit_code == 0, outcome.output
    perm = open_results(tmp_path / "perm.zarr")
    assert perm.p.dims == ("model", "voxel") and float(perm.p.min()) == np.float32(1 / 200)
    assert "normal:" in outcome.output and (tmp_path / "counts.png").exists()
    assert perm.significant.sel(model="normal").values[drivers == "normal"].mean() > 0.5

    outcome = runner.invoke(app, ["partition", str(tmp_path / "features.zarr"), str(tmp_path / "responses.zarr"),
                                  "--out", str(tmp_path / "vp.zarr"), "--pair", "normal,class_object", "--cv", "3",
                                  "--results", str(tmp_path / "results.zarr"), "--figure", str(tmp_path / "vp.png")])
    assert outcome.exit_code == 0, outcome.output
    vp = open_results(tmp_path / "vp.zarr")
    assert list(vp.pair.values) == ["normal+class_object"] and "shared_mean" in vp
    assert (tmp_path / "vp.png").exists() and "normal+class_object" in outcome.output

    outcome = runner.invoke(app, ["partition", str(tmp_path / "features.zarr"), str(tmp_path / "responses.zarr"),
                                  "--out", str(tmp_path / "bad.zarr"), "--pair", "normal,nope"])
    assert outcome.exit_code == 2 and "not in features" in outcome.output
