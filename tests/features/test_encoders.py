"""Encoders: parity with visualpriors for every task, colorization's 1-channel fix, loading checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotask.features import encoders
from neurotask.features.encoders import save_random_checkpoint
from neurotask.features.extract import extract_features
from neurotask.features.registry import TASKS
from neurotask.features.weights import WeightsError, verify_checkpoint
from neurotask.stimuli import lightness_input, load_image, rgb_input

encoders.fix_visualpriors()
from visualpriors import representation_transform  # noqa: E402
from visualpriors.transforms import VisualPriorRepresentation  # noqa: E402

# With the NCHW layout neurotask runs the very same float32 operations as visualpriors: the
# acceptance bound is 1e-5 (the observed difference is 0).
PARITY_ATOL = 1e-5
# The fast mode (folded batch norms, channels-last) sums in another order: float32 rounding (~1e-6 relative on
# the raw outputs) is amplified by the GroupNorm's division by each channel's spatial std, up to
# ~3e-4 on noise inputs; 1e-3 bounds it with room.
FAST_ATOL = 1e-3


def _visualpriors_net(checkpoint: Path) -> torch.nn.Module:
    """visualpriors' own loader on a local file (load_url finds it in model_dir: no download)."""
    url = f"http://127.0.0.1:9/{checkpoint.name}"
    return VisualPriorRepresentation._load_encoder(url, model_dir=str(checkpoint.parent), progress=False)


@pytest.fixture(scope="module")
def rgb_batch(stimuli_dir: Path) -> np.ndarray:
    """Two decoded stimuli (one resized from 375x375, one grayscale 300x200) as uint8 NHWC."""
    paths = [stimuli_dir / "COCO_train2014_000000000584.jpg", stimuli_dir / "gray_scene1.png"]
    return np.stack([load_image(p)[0] for p in paths])


def _visualpriors_features(task: str, checkpoint: Path, inputs: np.ndarray) -> np.ndarray:
    VisualPriorRepresentation.feature_task_to_net[task] = _visualpriors_net(checkpoint)
    try:
        nchw = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
        return representation_transform(nchw, task, device="cpu").numpy()
    finally:
        VisualPriorRepresentation.feature_task_to_net.pop(task, None)


@pytest.mark.parametrize("task", [t for t in TASKS if t != "colorization"])
def test_parity_with_visualpriors(task: str, rgb_batch: np.ndarray, tmp_path: Path) -> None:
    # one image per task keeps 24 ResNet-50 checkpoints within the test budget; the batched path
    # is compared in test_default_extraction_equals_visualpriors_per_image
    checkpoint = save_random_checkpoint(task, tmp_path, seed=TASKS.index(task))
    inputs = rgb_input(rgb_batch[:1])
    try:
        ours = encoders.encode(encoders.load_encoder(task, tmp_path), inputs)  # default: exact mode
        reference = _visualpriors_features(task, checkpoint, inputs)
    finally:
        os.remove(checkpoint)
    assert reference.shape == (1, 8, 16, 16)
    assert ours.shape == (1, 2048)
    assert ours.std() > 0.1  # the random weights give non-degenerate features
    np.testing.assert_allclose(ours, reference.reshape(1, -1), rtol=0, atol=PARITY_ATOL)


def test_default_extraction_equals_visualpriors_per_image(make_checkpoint, stimuli_dir: Path) -> None:
    # what users compare: extract_features with every default (batched, all cores) against
    # visualpriors.representation_transform called image by image
    tasks = ["normal", "depth_euclidean"]
    checkpoints = {task: make_checkpoint(task) for task in tasks}
    ours = extract_features(stimuli_dir, tasks, weights=checkpoints["normal"].parent, device="cpu", image_chunk=3)
    assert ours.attrs["fast"] is False or ours.attrs["fast"] == 0
    for task in tasks:
        for image in ours["image"].values:
            (path,) = stimuli_dir.glob(f"{image}.*")
            reference = _visualpriors_features(task, checkpoints[task], rgb_input(load_image(path)[0][None]))
            np.testing.assert_allclose(ours.sel(model=task, image=image).values, reference.reshape(-1),
                                       rtol=0, atol=PARITY_ATOL)


def test_fast_mode_close_to_visualpriors(make_checkpoint, rgb_batch: np.ndarray) -> None:
    checkpoint = make_checkpoint("normal")
    noise = np.random.default_rng(0).integers(0, 256, rgb_batch.shape[1:], dtype=np.uint8)
    inputs = rgb_input(np.stack([rgb_batch[1], noise]))  # the grayscale stimulus and noise
    ours = encoders.encode(encoders.load_encoder("normal", checkpoint.parent, fast=True), inputs)
    reference = _visualpriors_features("normal", checkpoint, inputs).reshape(2, -1)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=FAST_ATOL)


def test_colorization_one_channel(make_checkpoint, rgb_batch: np.ndarray) -> None:
    checkpoint = make_checkpoint("colorization")
    encoder = encoders.load_encoder("colorization", checkpoint.parent)
    assert tuple(encoder.conv1.weight.shape) == (64, 1, 7, 7)
    features = encoders.encode(encoder, lightness_input(rgb_batch))
    assert features.shape == (2, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.std() > 0.1


def test_colorization_fails_through_visualpriors(make_checkpoint) -> None:
    checkpoint = make_checkpoint("colorization")
    with pytest.raises(RuntimeError, match=r"size mismatch for conv1\.weight.*\[64, 1, 7, 7\].*\[64, 3, 7, 7\]"):
        _visualpriors_net(checkpoint)


def test_shape_mismatch_names_task_and_shape(tmp_path: Path) -> None:
    # a colorization state dict saved under the name of a normal checkpoint
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": encoders.random_state_dict("colorization", 0)}, buffer)
    data = buffer.getvalue()
    (tmp_path / f"normal_encoder-{hashlib.sha256(data).hexdigest()}.pth").write_bytes(data)
    with pytest.raises(WeightsError, match=r"'normal' encoder.*conv1\.weight.*\(64, 3, 7, 7\)"):
        encoders.load_encoder("normal", tmp_path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": [1, 2, 3]}, buffer)
    data = buffer.getvalue()
    (tmp_path / f"normal_encoder-{hashlib.sha256(data).hexdigest()}.pth").write_bytes(data)
    with pytest.raises(WeightsError, match="holds no state dict"):
        encoders.load_encoder("normal", tmp_path)


def test_normalize_outputs(make_checkpoint, rgb_batch: np.ndarray) -> None:
    directory = make_checkpoint("normal").parent
    inputs = rgb_input(rgb_batch[:1])
    raw = encoders.encode(encoders.load_encoder("normal", directory, normalize_outputs=False), inputs)
    normed = encoders.encode(encoders.load_encoder("normal", directory), inputs)
    # GroupNorm(8 groups, 8 channels, no affine) standardizes each channel's 16x16 map; float64
    # reference vs float32 GroupNorm on O(10) raw values: 1e-4
    raw = raw.reshape(1, 8, 256).astype(np.float64)
    expected = (raw - raw.mean(-1, keepdims=True)) / np.sqrt(raw.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(normed.reshape(1, 8, 256), expected, atol=1e-4)


def test_cached_encoder_loads_once(make_checkpoint) -> None:
    encoders.clear_cache()
    checkpoint = verify_checkpoint(make_checkpoint("normal"))
    first = encoders.cached_encoder(checkpoint)
    second = encoders.cached_encoder(checkpoint)
    assert first is second
    assert encoders.cache_info() == {"loads": 1, "hits": 1, "size": 1}
    encoders.clear_cache()


def test_random_state_dict_matches_architecture() -> None:
    for task, channels in (("normal", 3), ("colorization", 1)):
        state = encoders.random_state_dict(task, seed=0)
        assert state["conv1.weight"].shape == (64, channels, 7, 7)
        assert set(state) == set(encoders.build_encoder(task).state_dict())
        assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())
    np.testing.assert_array_equal(
        encoders.random_state_dict("normal", 3)["layer1.0.conv1.weight"],
        encoders.random_state_dict("normal", 3)["layer1.0.conv1.weight"],
    )


def test_resolve_device() -> None:
    assert encoders.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert encoders.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        encoders.resolve_device("tpu-7")


def test_fix_visualpriors_imports_model_zoo() -> None:
    encoders.fix_visualpriors()
    assert hasattr(torch.utils, "model_zoo")


def test_fast_mode_folds_batch_norms_exact_mode_keeps_them(make_checkpoint) -> None:
    # the exact mode must stay visualpriors' modules (parity at 0 above); the fast one folds
    checkpoint = make_checkpoint("normal")
    fast = encoders.load_encoder("normal", checkpoint.parent, fast=True)
    exact = encoders.load_encoder("normal", checkpoint.parent)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in exact.modules()) == 54


def test_default_batch_size() -> None:
    assert encoders.default_batch_size("cpu") == encoders.DEFAULT_BATCH_SIZE["cpu"] == 2
    assert encoders.default_batch_size("auto") == encoders.DEFAULT_BATCH_SIZE["cuda" if torch.cuda.is_available() else "cpu"]
