"""Extraction: values, store schema and attrs, resume after interruption, bad input, Dask, CLI."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import distributed
import numpy as np
import pytest
import xarray as xr
from worker_faults import KillAtFirstTask

from neurotask.features import encoders
from neurotask.features.extract import extract_features
from neurotask.stimuli import ImageError, lightness_input, load_image, rgb_input
from neurotask.stores import StoreError, open_features

MODELS = ["normal", "colorization"]
# every run here encodes the same batches (images 0-1, 2-3), so values are bit-identical
RUN = {"batch_size": 2, "image_chunk": 2}


@pytest.fixture(scope="module")
def weights_dir(make_checkpoint) -> Path:
    for task in MODELS:
        make_checkpoint(task)
    return make_checkpoint(MODELS[0]).parent


@pytest.fixture(scope="module")
def in_memory(stimuli_dir: Path, weights_dir: Path) -> xr.DataArray:
    return extract_features(stimuli_dir, MODELS, weights=weights_dir, **RUN)


@pytest.fixture(scope="module")
def full_store(stimuli_dir: Path, weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stores") / "full.zarr"
    extract_features(stimuli_dir, MODELS, path, weights=weights_dir, **RUN)
    return path


def _same_store(a: xr.DataArray, b: xr.DataArray) -> None:
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    skip = {"created"}  # the only attr that depends on when a run started
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}


def test_features_equal_per_image_encoding(in_memory: xr.DataArray, stimuli_dir: Path, weights_dir: Path) -> None:
    """Batched extraction equals encoding each image on its own."""
    assert in_memory.dims == ("model", "image", "feature")
    assert in_memory.shape == (2, 4, 2048) and in_memory.dtype == np.float32
    for task, prepare in (("normal", rgb_input), ("colorization", lightness_input)):
        encoder = encoders.load_encoder(task, weights_dir)
        for image in in_memory["image"].values[[0, 3]]:
            (path,) = stimuli_dir.glob(f"{image}.*")
            expected = encoders.encode(encoder, prepare(load_image(path)[0][None]))[0]
            # a batch of 1 and of 2 may pick other CPU kernels: float32 rounding only
            np.testing.assert_allclose(in_memory.sel(model=task, image=image).values, expected, atol=1e-5)


def test_coords_and_attrs(in_memory: xr.DataArray, weights_dir: Path) -> None:
    assert list(in_memory["model"].values) == MODELS
    assert list(in_memory["image"].values) == [
        "COCO_train2014_000000000584", "airplanecabin1", "gray_scene1", "n01440764_10110",
    ]
    assert list(in_memory["source"].values) == ["coco", "scene", "scene", "imagenet"]
    attrs = in_memory.attrs
    assert json.loads(attrs["grayscale_images"]) == ["gray_scene1"]
    assert json.loads(attrs["skipped_files"]) == []
    assert attrs["weights_kind"] == "custom"
    shas = json.loads(attrs["weights_sha256"])
    assert {t: f"{t}_encoder-{s}.pth" for t, s in shas.items()} == {
        t: next(weights_dir.glob(f"{t}_encoder-*.pth")).name for t in MODELS
    }
    assert attrs["input_size"] == 256 and attrs["normalize_outputs"] is True
    assert "256x256" in attrs["resize_policy"] and "C order" in attrs["feature_layout"]


def test_store_equals_in_memory_and_validates(in_memory, full_store, stimuli_dir, weights_dir) -> None:
    stored = open_features(full_store)
    assert stored.chunks is not None  # lazy
    np.testing.assert_array_equal(stored.values, in_memory.values)
    assert json.loads(stored.attrs["weights_sha256"]) == json.loads(in_memory.attrs["weights_sha256"])
    # a complete store is left as it is
    again = extract_features(stimuli_dir, MODELS, full_store, weights=weights_dir, **RUN)
    assert again.attrs["created"] == stored.attrs["created"]


_KILLED_RUN = """
import os, signal, sys
from neurotask.features import encoders
from neurotask.features.extract import extract_features

real_encode, calls = encoders.encode, []

def encode_then_die(encoder, inputs):
    calls.append(1)
    if len(calls) == 3:  # two regions are written: the process dies without any cleanup
        os.kill(os.getpid(), signal.SIGKILL)
    return real_encode(encoder, inputs)

encoders.encode = encode_then_die
images, store, weights = sys.argv[1:]
extract_features(images, {models}, store, weights=weights, **{run})
"""


def test_resume_after_kill(full_store, stimuli_dir, weights_dir, tmp_path, monkeypatch) -> None:
    """SIGKILL the extracting process after 2 of 4 regions, re-run: only the 2 missing regions
    are computed, and the store is identical to an uninterrupted run's."""
    store = tmp_path / "resumed.zarr"
    script = _KILLED_RUN.format(models=MODELS, run=RUN)
    killed = subprocess.run([sys.executable, "-c", script, str(stimuli_dir), str(store), str(weights_dir)])
    assert killed.returncode == -signal.SIGKILL
    with pytest.raises(StoreError, match="incomplete.*2 of 4 regions"):
        open_features(store)

    calls = []
    real_encode = encoders.encode
    monkeypatch.setattr(encoders, "encode", lambda encoder, inputs: calls.append(len(inputs)) or real_encode(encoder, inputs))
    resumed = extract_features(stimuli_dir, MODELS, store, weights=weights_dir, **RUN)
    assert calls == [2, 2]  # one batch per missing region
    _same_store(resumed.load(), open_features(full_store).load())


def test_other_parameters_refuse_existing_store(stimuli_dir, weights_dir, tmp_path) -> None:
    path = tmp_path / "f.zarr"
    extract_features(stimuli_dir / "gray_scene1.png", ["normal"], path, weights=weights_dir)
    with pytest.raises(StoreError, match="other parameters"):
        extract_features(stimuli_dir / "gray_scene1.png", ["normal"], path, weights=weights_dir, normalize_outputs=False)


def test_corrupt_image(stimuli_dir, weights_dir, tmp_path) -> None:
    images = tmp_path / "images"
    shutil.copytree(stimuli_dir, images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        extract_features(images, ["normal"], weights=weights_dir)
    skipped = extract_features(images, ["normal"], weights=weights_dir, on_error="skip")
    assert "broken" not in skipped["image"].values and skipped.sizes["image"] == 4
    (entry,) = json.loads(skipped.attrs["skipped_files"])
    assert entry["file"].endswith("broken.jpg") and "cannot decode" in entry["error"]


def test_bad_input(stimuli_dir, weights_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        extract_features(tmp_path, ["normal"], weights=weights_dir)
    with pytest.raises(ValueError, match="images is empty"):
        extract_features([], ["normal"], weights=weights_dir)
    copy = tmp_path / "COCO_train2014_000000000584.png"
    shutil.copy(stimuli_dir / "gray_scene1.png", copy)
    with pytest.raises(ValueError, match="more than once"):
        extract_features([stimuli_dir / "COCO_train2014_000000000584.jpg", copy], ["normal"], weights=weights_dir)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        extract_features(stimuli_dir, ["nope"], weights=weights_dir)
    with pytest.raises(ValueError, match="'batch_size' parameter of extract_features must be an int >= 1"):
        extract_features(stimuli_dir, ["normal"], weights=weights_dir, batch_size=0)
    with pytest.raises(ValueError, match="unknown on_error 'ignore'"):
        extract_features(stimuli_dir, ["normal"], weights=weights_dir, on_error="ignore")
    broken = tmp_path / "only.jpg"
    broken.write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 files could be decoded"):
        extract_features([broken], ["normal"], weights=weights_dir, on_error="skip")


@pytest.mark.cluster
def test_dask_client_loads_each_model_once(in_memory, stimuli_dir, weights_dir, tmp_path) -> None:
    from distributed import Client, LocalCluster

    encoders.clear_cache()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        stored = extract_features(stimuli_dir, MODELS, tmp_path / "f.zarr", weights=weights_dir, client=client, **RUN)
        # 2 image chunks x 2 models, but the worker loads each model once
        assert encoders.cache_info()["loads"] == 2
        in_memory_on_cluster = extract_features(stimuli_dir, ["normal"], weights=weights_dir, client=client, **RUN)
    encoders.clear_cache()
    np.testing.assert_array_equal(stored.values, in_memory.values)
    np.testing.assert_array_equal(in_memory_on_cluster.values, in_memory.sel(model=["normal"]).values)


def test_cli_extract(stimuli_dir, weights_dir, tmp_path, in_memory) -> None:
    from typer.testing import CliRunner

    from neurotask.cli import app

    out = tmp_path / "cli.zarr"
    result = CliRunner().invoke(
        app, ["extract", str(stimuli_dir), "--out", str(out), "--models", "rgb2sfnorm,colorization",
              "--weights", str(weights_dir), "--batch-size", "2", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "2 models x 4 images" in result.output
    np.testing.assert_array_equal(open_features(out).values, in_memory.values)



@pytest.mark.cluster
def test_worker_lost_mid_extraction_gives_identical_store(stimuli_dir, weights_dir, tmp_path) -> None:
    """A worker killed at its first unit: the unit's inputs travel in its task, so Dask re-runs it
    on another worker and the store equals an undisturbed run's on the same cluster (workers run
    torch on one thread, whose float32 sums differ from an in-process run's on all cores)."""
    marker = tmp_path / "killed"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        undisturbed = extract_features(stimuli_dir, MODELS, weights=weights_dir, client=client, **RUN)
        client.register_plugin(KillAtFirstTask("_run_unit", str(marker)))
        stored = extract_features(stimuli_dir, MODELS, tmp_path / "f.zarr", weights=weights_dir, client=client, **RUN)
        values = stored.values
    assert marker.exists(), "no worker was killed"
    np.testing.assert_array_equal(values, undisturbed.values)


def test_scan_checks_without_resizing_and_each_chunk_decodes_once(stimuli_dir, weights_dir, monkeypatch) -> None:
    """Every file is checked once (decoded, not resized) and loaded once for all models of its chunk."""
    import neurotask.features.extract as extract

    checked, loaded = [], []
    real_check, real_load = extract.check_image, extract.load_image
    monkeypatch.setattr(extract, "check_image", lambda path: checked.append(Path(path).name) or real_check(path))
    monkeypatch.setattr(extract, "load_image", lambda path: loaded.append(Path(path).name) or real_load(path))
    extract_features(stimuli_dir, MODELS, weights=weights_dir, **RUN)
    names = sorted(p.name for p in stimuli_dir.iterdir())
    assert sorted(checked) == names and sorted(loaded) == names  # 2 models, yet one load per file


def test_truncated_image_skipped_leaves_no_hole(in_memory, stimuli_dir, weights_dir, tmp_path) -> None:
    """A JPEG with a valid header cut short, sorted between good files: the cheap check finds it, and
    with on_error="skip" the store holds exactly the good images, values as a run without the file."""
    images = tmp_path / "images"
    shutil.copytree(stimuli_dir, images)
    truncated = images / "b_truncated.jpg"
    truncated.write_bytes((stimuli_dir / "airplanecabin1.jpg").read_bytes()[:3000])
    with pytest.raises(ImageError, match=r"b_truncated\.jpg"):
        extract_features(images, MODELS, tmp_path / "raised.zarr", weights=weights_dir, **RUN)
    stored = extract_features(images, MODELS, tmp_path / "skipped.zarr", weights=weights_dir, on_error="skip", **RUN)
    assert list(stored["image"].values) == list(in_memory["image"].values)
    np.testing.assert_array_equal(stored.values, in_memory.values)
    (entry,) = json.loads(stored.attrs["skipped_files"])
    assert entry["file"].endswith("b_truncated.jpg") and "image file is truncated" in entry["error"]
