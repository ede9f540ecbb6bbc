"""Encoder inputs prepared in torch (the GPU path), against the numpy path, on CPU torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from neurotask.features import extract, inputs
from neurotask.features.extract import extract_features
from neurotask.stimuli import lightness_input, rgb_input

MODELS = ["normal", "colorization"]
RUN = {"batch_size": 2, "image_chunk": 2}


def _every_color() -> np.ndarray:
    codes = np.arange(2**24, dtype=np.uint32)
    rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
    return rgb.reshape(256, 256, 256, 3)


def test_lightness_in_torch_has_the_numpy_bits_for_every_8bit_color() -> None:
    pixels = _every_color()
    ours = inputs.lightness_input(torch.from_numpy(pixels))
    assert ours.dtype == torch.float32 and ours.shape == (256, 256, 256, 1)
    np.testing.assert_array_equal(ours.numpy().view(np.uint32), lightness_input(pixels).view(np.uint32))


def test_rgb_in_torch_has_the_numpy_bits_for_every_level() -> None:
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    ours = inputs.rgb_input(torch.from_numpy(pixels))
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy().view(np.uint32), rgb_input(pixels).view(np.uint32))


def test_chunk_pixels_copy_once_and_prepare_batches_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    host = inputs.ChunkPixels(pixels, torch.device("cpu"))
    assert not host.on_device and isinstance(host.batch("rgb", 0, 2), np.ndarray)
    monkeypatch.setattr(inputs, "HOST_DEVICE_TYPES", frozenset())  # CPU torch stands in for a GPU
    device = inputs.ChunkPixels(pixels, torch.device("cpu"))
    assert device.on_device and isinstance(device.pixels, torch.Tensor) and device.pixels.shape == (5, 8, 8, 3)
    for kind, reference in (("rgb", rgb_input), ("lightness", lightness_input)):
        batch = device.batch(kind, 1, 4)
        assert isinstance(batch, torch.Tensor)
        np.testing.assert_array_equal(batch.numpy(), reference(pixels[1:4]))


@pytest.fixture(scope="module")
def weights_dir(make_checkpoint) -> Path:
    for task in MODELS:
        make_checkpoint(task)
    return make_checkpoint(MODELS[0]).parent


def test_extraction_through_the_device_path_equals_the_host_path(
    stimuli_dir: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU code path (pixels copied once per unit, inputs made in torch), run on CPU torch."""
    host = extract_features(stimuli_dir, MODELS, weights=weights_dir, **RUN)
    made = []

    class Counting(inputs.ChunkPixels):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            made.append(self.on_device)

    monkeypatch.setattr(inputs, "HOST_DEVICE_TYPES", frozenset())
    monkeypatch.setattr(extract, "ChunkPixels", Counting)
    device = extract_features(stimuli_dir, MODELS, weights=weights_dir, **RUN)
    assert made == [True, True]  # 4 images in chunks of 2: once per chunk, for both models
    xr.testing.assert_identical(device.drop_attrs(), host.drop_attrs())
