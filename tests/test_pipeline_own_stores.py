"""The pipeline on one's own stores: subject labels (BOLD5000's four only when it reads BOLD5000),
and steps recomputed when their methods are revised."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurotask import pipeline, stores
from neurotask.pipeline import steps
from neurotask.pipeline.config import ConfigError
from neurotask.pipeline.validate import validate
from neurotask.stores.layout import open_outputs

MODELS = ["driven", "unrelated"]
IDS = [f"img_{i:03d}" for i in range(24)]
SUBJECTS = ["sub-01", "sub-02"]


def _to_zarr(name: str, array: xr.DataArray, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: fixed-width strings have no v3 spec yet
        xr.Dataset({name: array}).to_zarr(path)


@pytest.fixture(scope="module")
def own_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Features of two models (one drives the voxels) and two subjects' responses, built with xarray alone."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((len(IDS), 8))
    features = np.stack([latent + 0.3 * rng.standard_normal(latent.shape), rng.standard_normal(latent.shape)])
    _to_zarr("features", xr.DataArray(features, dims=("model", "image", "feature"),
                                      coords={"model": MODELS, "image": IDS}), root / "features.zarr")
    shown = [i for s in range(3) for i in list(range(8 * s, 8 * s + 8)) + list(range(8 * s, 8 * s + 3))]
    for subject in SUBJECTS:
        values = latent[shown] @ rng.standard_normal((8, 20)) + 0.5 * rng.standard_normal((len(shown), 20))
        responses = xr.DataArray(values, dims=("trial", "voxel"), coords={
            "image": ("trial", [IDS[i] for i in shown]), "session": ("trial", np.repeat([1, 2, 3], 11))})
        _to_zarr("responses", responses, root / f"responses-{subject}.zarr")
    return root


def _config(root: Path, out: Path, **top: object) -> dict:
    cfg = {
        "out": str(out),
        "subjects": list(SUBJECTS),
        "extract": {"store": str(root / "features.zarr")},
        "ingest": {"store": str(root / "responses-{subject}.zarr")},
        "encode": {"test_sessions": [3], "alphas": [1.0, 10.0, 100.0], "cv": 2},
        "permute": {"n_permutations": 50, "seed": 0},
        "partition": {"pairs": [MODELS]},
        "cluster": {"workers": 1, "processes": False},
    }
    return {**cfg, **top}


def test_a_run_on_own_stores_keeps_the_subjects_labels(own_stores: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = pipeline.run(_config(own_stores, tmp_path, steps=["encode", "permute", "report"]))
    assert set(summary.statuses.values()) == {"complete"}, summary.statuses
    for subject in SUBJECTS:
        fit = stores.open_results(tmp_path / f"encoding-{subject}.zarr")
        assert fit.sizes["voxel"] == 20
    similarity = stores.open_results(tmp_path / "task_similarity.zarr")
    assert list(similarity["subject"].values) == SUBJECTS
    found = open_outputs(tmp_path)
    assert sorted(found["subjects"]) == SUBJECTS and "permutation" in found["subjects"]["sub-02"]
    page = (tmp_path / "report.html").read_text()
    assert all(subject in page for subject in SUBJECTS)


@pytest.mark.parametrize(("change", "message"), [
    ({"subjects": ["sub-01", "sub-01"]}, "distinct subjects"),
    ({"subjects": []}, "distinct subjects"),
    ({"subjects": ["sub/01"]}, r"\['sub/01'\] cannot name the output stores"),
    ({"subjects": [".hidden"]}, "cannot name the output stores"),
])
def test_bad_subject_labels_fail_in_validate(own_stores: Path, tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(_config(own_stores, tmp_path, **change))


def test_several_subjects_need_subject_in_the_store_path(own_stores: Path, tmp_path: Path) -> None:
    cfg = _config(own_stores, tmp_path)
    cfg["ingest"] = {"store": str(own_stores / "responses-sub-01.zarr")}
    with pytest.raises(ConfigError, match=r"2 subjects would all read .*put \{subject\} in the path"):
        validate(cfg)
    cfg["subjects"] = ["sub-01"]
    assert validate(cfg)["subjects"] == ["sub-01"]


def test_reading_bold5000_still_needs_its_subjects(own_stores: Path, tmp_path: Path) -> None:
    cfg = _config(own_stores, tmp_path, subjects=["sub-01"])
    cfg["ingest"] = {"root": str(own_stores)}
    with pytest.raises(ConfigError, match=r"unknown subjects \['sub-01'\]; BOLD5000 has \['CSI1'"):
        validate(cfg)


def test_a_revised_method_recomputes_its_steps_and_what_follows(
    own_stores: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(own_stores, tmp_path, subjects=["sub-01"], steps=["rsa", "encode", "permute"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = pipeline.run(cfg)
        assert set(first.statuses.values()) == {"complete"}, first.statuses
        assert set(pipeline.run(cfg).statuses.values()) == {"done before"}
        monkeypatch.setitem(steps.METHOD_REVISIONS, "encode", steps.METHOD_REVISIONS["encode"] + 1)
        again = pipeline.run(cfg)
    assert again.statuses == {"rsa": "done before", "encode/sub-01": "complete", "permute/sub-01": "complete",
                              "task_similarity": "complete"}
