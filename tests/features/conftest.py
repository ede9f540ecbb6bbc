"""Shared fixtures for the feature tests: tiny stimuli and seeded random-weight checkpoints.

Checkpoints are ResNet-50 sized (~95 MB, ~0.5 s each to write): the session shares one
directory, and each test asks for the tasks it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurotask.features.encoders import save_random_checkpoint


@pytest.fixture(autouse=True)
def _no_internet_weights(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test off the real weights cache and the internet.

    The torch hub cache points to a fresh directory and downloads go to a closed loopback port
    unless a test starts its own server.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.delenv("NEUROTASK_WEIGHTS", raising=False)
    monkeypatch.setenv("NEUROTASK_WEIGHTS_URL", "http://127.0.0.1:9/closed")


@pytest.fixture(scope="session")
def stimuli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four stimuli: three 375x375 RGB JPEGs (BOLD5000's size) and a 300x200 grayscale PNG."""
    root = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    names = ["COCO_train2014_000000000584.jpg", "n01440764_10110.jpg", "airplanecabin1.jpg"]
    for name in names:
        # smooth random images (not white noise): JPEG keeps them close to the array
        small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(small).resize((375, 375), Image.Resampling.BICUBIC).save(root / name, quality=95)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray).resize((300, 200), Image.Resampling.BICUBIC).save(root / "gray_scene1.png")
    return root


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def make_checkpoint(checkpoint_dir: Path) -> Callable[[str], Path]:
    """Write (once per session) the seeded random checkpoint of a task; seed = its TASKS index."""
    from neurotask.features.registry import TASKS

    def make(task: str) -> Path:
        return save_random_checkpoint(task, checkpoint_dir, seed=TASKS.index(task))

    return make
