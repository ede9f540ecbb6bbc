"""The rsa command: matrix store, CSV and figures; a bad subset exits 2."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from neurotask import rsa, stores
from neurotask.cli import app


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
