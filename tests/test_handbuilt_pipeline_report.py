"""The pipeline, its config, the stores and the report on inputs an outside user builds by hand.

Stores are written with plain ``xr.Dataset({...}).to_zarr(path)`` (no neurotask writer): features
(model, image, feature) float64 with only ``model`` and ``image``, responses (trial, voxel) with
only ``image`` and ``session`` on trial (no run, no i/j/k). The config points at them with
``extract.store`` and ``ingest.store``; one model has features unrelated to the responses, so it
has no significant voxel.
"""

from __future__ import annotations

import copy
import html
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurotask import pipeline, stores
from neurotask.pipeline.config import ConfigError
from neurotask.pipeline.steps import default_subsets
from neurotask.pipeline.validate import validate

MODELS = ["alexnet", "vgg16", "noise_net"]  # not Taskonomy names: a store the user brings
BOLD5000_IDS = ([f"COCO_train2014_{i:012d}" for i in range(8)] + [f"n014407{i:02d}_{i}" for i in range(8)]
                + [f"scene{i}" for i in range(8)])
PLAIN_IDS = [f"img_{i:04d}" for i in range(24)]


def write_features(path: Path, ids: list[str], seed: int = 0) -> np.ndarray:
    """Two models share the latent that drives the voxels; ``noise_net`` is pure noise. Returns the latent."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((len(ids), 10))
    values = np.stack([latent + 0.3 * rng.standard_normal(latent.shape), latent + 0.3 * rng.standard_normal(latent.shape),
                       rng.standard_normal(latent.shape)])
    features = xr.DataArray(values, dims=("model", "image", "feature"), coords={"model": MODELS, "image": ids})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: fixed-width strings have no v3 spec yet
        xr.Dataset({"features": features}).to_zarr(path)
    return latent


def write_responses(path: Path, ids: list[str], latent: np.ndarray, seed: int = 1) -> None:
    """3 sessions of 8 images each, the first 3 of each shown twice; half the voxels driven."""
    rng = np.random.default_rng(seed)
    shown = [i for s in range(3) for i in list(range(8 * s, 8 * s + 8)) + list(range(8 * s, 8 * s + 3))]
    values = latent[shown] @ rng.standard_normal((10, 30)) + 0.5 * rng.standard_normal((len(shown), 30))
    values[:, 15:] = rng.standard_normal((len(shown), 15))
    responses = xr.DataArray(values, dims=("trial", "voxel"),
                             coords={"image": ("trial", [ids[i] for i in shown]), "session": ("trial", np.repeat([1, 2, 3], 11))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"responses": responses}).to_zarr(path)


@pytest.fixture(scope="module")
def handbuilt(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("handbuilt")
    for name, ids in (("bold5000", BOLD5000_IDS), ("plain", PLAIN_IDS)):
        latent = write_features(root / f"features-{name}.zarr", ids)
        write_responses(root / f"responses-{name}-CSI1.zarr", ids, latent)
    return {"root": root}


def config(root: Path, ids: str, out: Path, **sections) -> dict:
    cfg = {
        "out": str(out),
        "subjects": ["CSI1"],
        "extract": {"store": str(root / f"features-{ids}.zarr")},
        "ingest": {"store": str(root / f"responses-{ids}-{{subject}}.zarr")},
        "encode": {"test_sessions": [3], "alphas": [1.0, 10.0, 100.0], "cv": 2},
        "permute": {"n_permutations": 100, "seed": 0},
        "partition": {"pairs": [["alexnet", "noise_net"]]},
        "cluster": {"workers": 1, "processes": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def text_of(page: Path) -> str:
    """The report's visible text (figures and styles dropped)."""
    raw = re.sub(r"<style.*?</style>|<img[^>]*>", " ", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", raw)))


# --------------------------------------------------------------------------------------------
# stores written with xarray alone


def test_plain_zarr_stores_open_as_complete(handbuilt):
    root = handbuilt["root"]
    assert stores.is_complete(root / "features-plain.zarr")
    features = stores.open_features(root / "features-plain.zarr")
    assert features.dims == ("model", "image", "feature")
    assert set(stores.validate_features(features)["source"].values) == {"unknown"}
    responses = stores.open_responses(root / "responses-plain-CSI1.zarr")
    assert (stores.validate_responses(responses)["run"].values == 1).all() and not stores.has_voxel_grid(responses)


def test_an_interrupted_neurotask_store_is_still_refused(tmp_path):
    template = xr.Dataset({"x": (("voxel",), np.zeros(8, dtype=np.float32))})
    writer = stores.RegionWriter(tmp_path / "partial.zarr", template, region_dims=["voxel"], chunks={"voxel": 4})
    writer.write(template.isel(voxel=slice(0, 4)), writer.pending()[0])
    assert not stores.is_complete(tmp_path / "partial.zarr")
    with pytest.raises(stores.StoreError, match="incomplete"):
        stores.open_store(tmp_path / "partial.zarr")


# --------------------------------------------------------------------------------------------
# the config on a store the user brings


def test_models_all_means_the_stores_models_and_their_names_are_kept(handbuilt, tmp_path):
    cfg = validate(config(handbuilt["root"], "plain", tmp_path / "out"))
    assert cfg["models"] == MODELS and cfg["partition"]["pairs"] == [["alexnet", "noise_net"]]
    assert validate({**config(handbuilt["root"], "plain", tmp_path / "out"), "models": ["vgg16"]})["models"] == ["vgg16"]
    # a Taskonomy alias still resolves, and is then reported missing from the store
    with pytest.raises(ConfigError, match=r"models: \['normal'\] are not in the features store"):
        validate({**config(handbuilt["root"], "plain", tmp_path / "out"), "models": ["vgg16", "rgb2sfnorm"]})


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("ingest", "subject", "CSI2", "ingest.subject: set by the pipeline"),
        ("rsa", "subset", {"source": "scene"}, "rsa.subset: set by the pipeline"),
        ("encode", "store", "fit.zarr", "encode.store: set by the pipeline"),
        ("rsa", "compare", "kendall", "rsa.compare: expected"),
        ("rsa", "device_batch", -1, "rsa.device_batch: expected a positive int"),
        ("rsa", "subsets", {}, "rsa.subsets: expected at least one"),
        ("rsa", "subsets", {"s": {"source": 1}}, "rsa.subsets.s.source: expected a string"),
        ("rsa", "subsets", {"scenes": {"source": "scene"}}, r"rsa.subsets.scenes: .*selects 0 images of 24.*'unknown'"),
        ("rsa", "subsets", {"one": {"image": "img_0003"}}, "rsa.subsets.one: .*selects 1 image of 24"),
        ("encode", "standardize", "false", "encode.standardize: expected true or false"),
        ("encode", "test_sessions", [4], r"encode.test_sessions: sessions \[4\] are out of range"),
        ("permute", "bogus", 1, "unknown key permute.bogus"),
        ("", "models", ["alexnet", "resnet"], "models: unknown model 'resnet'; expected the features store's models"),
    ],
)
def test_wrong_keys_fail_in_validate_naming_the_key(handbuilt, tmp_path, section, key, value, message):
    cfg = copy.deepcopy(config(handbuilt["root"], "plain", tmp_path / "out"))
    (cfg if section == "" else cfg.setdefault(section, {}))[key] = value
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_default_subsets_have_scenes_only_where_there_are_scene_images(handbuilt):
    root = handbuilt["root"]
    assert default_subsets(stores.open_features(root / "features-plain.zarr")) == {"all": {}}
    assert default_subsets(stores.open_features(root / "features-bold5000.zarr")) == {"all": {}, "scenes": {"source": "scene"}}


# --------------------------------------------------------------------------------------------
# a whole run on the hand-built stores, and its report


@pytest.fixture(scope="module")
def run(handbuilt, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = pipeline.run(config(handbuilt["root"], "bold5000", out))
    return out, summary


def test_run_on_handbuilt_stores_completes_every_step(run):
    out, summary = run
    assert set(summary.statuses.values()) == {"complete"}, summary.statuses
    rsa = stores.open_results(out / "rsa.zarr")
    assert list(rsa["subset"].values) == ["all", "scenes"] and list(rsa["n_images"].values) == [24, 8]


def test_a_model_without_significant_voxels_is_unrelated_and_flagged(run):
    out, _ = run
    significant = stores.open_results(out / "permutation-CSI1.zarr")["significant"].sum("voxel")
    assert int(significant.sel(model="noise_net")) == 0 < int(significant.sel(model="alexnet"))
    mean = stores.open_results(out / "task_similarity.zarr")["mean"]
    assert list(mean.attrs["models_without_significant"]) == ["noise_net"]
    values = mean.sel(model=MODELS, model_=MODELS).values
    assert np.isfinite(values).all() and values[2, 2] == 1.0 and (values[2, :2] == 0).all() and (values[:2, 2] == 0).all()


def test_the_report_says_what_is_missing_and_draws_the_rest(run):
    out, summary = run
    text = text_of(Path(summary.report))
    assert "the voxels carry no i, j, k coordinates" in text and "no brain map" in text
    assert "Models without any significant voxel (in at least one subject): noise_net" in text
    assert "scenes (8 images)" in text and "all (24 images)" in text
    assert "failed" not in text, re.findall(r".{80}failed.{120}", text)


def test_an_edited_user_store_invalidates_the_run(handbuilt, tmp_path):
    """A store without neurotask's stamp is fingerprinted by its files: an edit in place recomputes."""
    root = tmp_path / "inputs"
    shutil.copytree(handbuilt["root"], root)
    cfg = config(root, "plain", tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pipeline.run(cfg, steps=["extract", "rsa"]).statuses["rsa"] == "complete"
        assert pipeline.run(cfg, steps=["extract", "rsa"]).statuses["rsa"] != "complete"  # reused
        features = xr.open_zarr(root / "features-plain.zarr").load()
        features["features"] = features["features"] * -1.0
        features.to_zarr(root / "features-plain.zarr", mode="w")
        assert pipeline.run(cfg, steps=["extract", "rsa"]).statuses["rsa"] == "complete"


# --------------------------------------------------------------------------------------------
# brain-derived task similarity on hand-built fits: a model without significant voxels


def handbuilt_fit(seed: int, dead: tuple[str, ...]) -> tuple[xr.Dataset, xr.Dataset]:
    """An encoding fit (r per model × voxel) and its significance, ``dead`` models with none."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(-0.2, 0.6, (len(MODELS), 40))
    significant = r > 0.3
    significant[[MODELS.index(m) for m in dead]] = False
    fit = xr.Dataset({"r": (("model", "voxel"), r)}, coords={"model": MODELS})
    return fit, xr.Dataset({"significant": (("model", "voxel"), significant)}, coords={"model": MODELS})


@pytest.mark.parametrize("dead", [("noise_net",), tuple(MODELS)], ids=["one-model", "every-model"])
def test_task_similarity_without_significant_voxels_stays_finite_and_drawable(dead):
    import matplotlib.pyplot as plt

    from neurotask import plotting, rsa, stats

    subjects = [handbuilt_fit(1, dead), handbuilt_fit(2, ())]
    with pytest.warns(RuntimeWarning, match="no significant voxel"):
        single = stats.task_similarity(*subjects[0])
    with pytest.warns(RuntimeWarning, match="no significant voxel"):
        mean = stats.task_similarity(subjects)
    for sim in (single, mean):
        assert list(sim.attrs["models_without_significant"]) == list(dead)
        assert np.isfinite(sim.values).all() and (np.diag(sim.values) == 1).all()
        assert np.isfinite(rsa.linkage(sim).matrix).all()
        for figure in (plotting.plot_similarity(sim), plotting.plot_dendrogram(sim), plotting.compare_trees(sim, mean)):
            assert figure is not None
    dead_rows = single.sel(model=list(dead)).values
    expected = np.eye(len(MODELS))[[MODELS.index(m) for m in dead]]
    np.testing.assert_array_equal(dead_rows, expected)  # 0 to the others, 1 to itself
    plt.close("all")
