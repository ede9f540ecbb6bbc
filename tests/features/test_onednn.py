"""The exact encoder on oneDNN tensors: the dense module's numbers bit for bit, and only where they are."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotask.features import encoders, onednn
from neurotask.stimuli import lightness_input, load_image, rgb_input


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pixels(stimuli_dir: Path) -> np.ndarray:
    """The four stimuli (one grayscale) and a noise image, uint8 NHWC."""
    images = [load_image(p)[0] for p in sorted(stimuli_dir.iterdir())]
    noise = np.random.default_rng(0).integers(0, 256, images[0].shape, dtype=np.uint8)
    return np.stack([*images, noise])


def _bits(features: np.ndarray) -> np.ndarray:
    return features.view(np.uint32)  # -0.0 and 0.0, or two NaNs, differ here


def test_this_machine_runs_the_onednn_path() -> None:
    # the other tests would prove nothing if the plan were never used here
    assert onednn.batch_norm_matches()
    with _threads(2):
        assert onednn.applies(1) and onednn.applies(2)


@pytest.mark.parametrize("normalize_outputs", [True, False])
@pytest.mark.parametrize(("task", "prepare"), [("normal", rgb_input), ("colorization", lightness_input)])
def test_bitwise_equal_to_the_dense_module(make_checkpoint, pixels, task, prepare, normalize_outputs) -> None:
    """Every batch size, both input kinds, with and without the final GroupNorm: the same bits."""
    directory = make_checkpoint(task).parent
    encoder = encoders.load_encoder(task, directory, normalize_outputs=normalize_outputs)
    assert encoder.onednn_plan is not None
    inputs = prepare(pixels)
    with _threads(2), torch.inference_mode():
        x = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
        dense = np.concatenate([encoder(x[i:i + 1]).reshape(1, -1).numpy() for i in range(len(x))])
        for batch in (1, 2, 3, 5):
            ours = np.concatenate([
                onednn.forward(encoder.onednn_plan, x[i:i + batch]).reshape(-1, encoders.N_FEATURES).numpy()
                for i in range(0, len(x), batch)
            ])
            np.testing.assert_array_equal(_bits(ours), _bits(dense), err_msg=f"batch {batch}")
    assert dense.std() > 0.1


def test_one_thread_runs_the_dense_module(make_checkpoint, pixels, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one thread torch's small-batch 1x1 convolutions are its own (other sums): the plan stays unused."""
    encoder = encoders.load_encoder("normal", make_checkpoint("normal").parent)
    with _threads(1):
        assert not onednn.applies(2) and onednn.applies(16)

        def fail(*args):
            raise AssertionError("the oneDNN plan ran with one thread")

        monkeypatch.setattr(onednn, "forward", fail)
        ours = encoders.encode(encoder, rgb_input(pixels[:2]))
        encoder.onednn_plan = None
        dense = encoders.encode(encoder, rgb_input(pixels[:2]))
    np.testing.assert_array_equal(_bits(ours), _bits(dense))


def test_encode_uses_the_plan_in_exact_mode_only(make_checkpoint, pixels, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = make_checkpoint("normal").parent
    assert encoders.load_encoder("normal", directory, fast=True).onednn_plan is None
    encoder = encoders.load_encoder("normal", directory)
    calls = []
    real = onednn.forward
    monkeypatch.setattr(onednn, "forward", lambda plan, x: calls.append(len(x)) or real(plan, x))
    with _threads(2):
        encoders.encode(encoder, rgb_input(pixels[:2]))
    assert calls == [2]


def test_plan_shares_the_weights(make_checkpoint) -> None:
    encoder = encoders.load_encoder("normal", make_checkpoint("normal").parent)
    conv, _ = encoder.onednn_plan.stem
    assert conv.weight.data_ptr() == encoder.conv1.weight.data_ptr()  # no second copy of ~95 MB
