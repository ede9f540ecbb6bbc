"""Synthetic stimuli: BOLD5000 names and layout, grayscale share, determinism, structured pictures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurotask.datasets import bold5000_trial_order, stimulus_path, write_synthetic_stimuli
from neurotask.datasets.synthetic_stimuli import _stimulus_names
from neurotask.stimuli import image_source


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("stimuli")
    return root, write_synthetic_stimuli(root, n_images=150, seed=0)


def test_names_layout_and_format(stimuli: tuple[Path, list[Path]]) -> None:
    root, paths = stimuli
    first_shown = list(dict.fromkeys(bold5000_trial_order("CSI1")))[:150]
    assert [p.name for p in paths] == first_shown
    folders = {"coco": "COCO", "imagenet": "ImageNet", "scene": "Scene"}
    for path in paths:
        assert path == root / "Scene_Stimuli" / "Presented_Stimuli" / folders[image_source(path.name)] / path.name
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (375, 375) and image.mode in ("RGB", "L")
    # the real source mix of the first presentations is kept
    assert Counter(image_source(p.name) for p in paths) == Counter(image_source(n) for n in first_shown)


def test_grayscale_fraction(stimuli: tuple[Path, list[Path]]) -> None:
    _, paths = stimuli
    modes = Counter(Image.open(p).mode for p in paths)
    assert modes["L"] == round(0.02 * 150) == 3


def test_repeated_images_included_even_when_few() -> None:
    order = bold5000_trial_order("CSI1")
    repeated = {n for n, c in Counter(order).items() if c > 1}
    for n in (1, 2, 4):
        assert repeated & set(_stimulus_names(n, "CSI1"))
    assert len(repeated & set(_stimulus_names(None, "CSI1"))) == 113


def test_deterministic_per_seed(tmp_path: Path) -> None:
    names = ["COCO_train2014_000000000584.jpg", "n01440764_10110.JPEG", "airplanecabin1.jpg"]
    a = write_synthetic_stimuli(tmp_path / "a", names=names, seed=3)
    b = write_synthetic_stimuli(tmp_path / "b", names=names, seed=3)
    c = write_synthetic_stimuli(tmp_path / "c", names=names, seed=4)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert all(x.read_bytes() != y.read_bytes() for x, y in zip(a, c))
    assert stimulus_path(tmp_path / "a", names[2]) == a[2]


def _statistics(path: Path) -> tuple[float, float, float, float]:
    """Lag-1 autocorrelation, row/column layering, center–border contrast, edge density."""
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    autocorrelation = np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]
    layering = a.mean(axis=1).var() / (a.mean(axis=0).var() + 1e-9)
    border = np.concatenate([a[:40].ravel(), a[-40:].ravel(), a[:, :40].ravel(), a[:, -40:].ravel()])
    contrast = abs(a[125:250, 125:250].mean() - border.mean())
    edges = np.abs(np.diff(a, axis=1)).mean()
    return autocorrelation, layering, contrast, edges


def test_pictures_have_source_specific_structure(stimuli: tuple[Path, list[Path]]) -> None:
    _, paths = stimuli
    stats: dict[str, np.ndarray] = {}
    for source in ("coco", "imagenet", "scene"):
        stats[source] = np.array([_statistics(p) for p in paths if image_source(p.name) == source])
    # Drawn pictures are smooth (white noise would give ~0 autocorrelation).
    assert all(s[:, 0].min() > 0.9 for s in stats.values())
    # Scenes are layered horizontally: sky over horizon over ground.
    assert stats["scene"][:, 1].min() > 5
    # ImageNet: one centered object stands out from the border; COCO: clutter has more edges.
    assert np.median(stats["imagenet"][:, 2]) > np.median(stats["coco"][:, 2])
    assert np.median(stats["coco"][:, 3]) > np.median(stats["imagenet"][:, 3])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_images must be in 1..4916"):
        write_synthetic_stimuli(tmp_path, n_images=0)
    with pytest.raises(ValueError, match="not both"):
        write_synthetic_stimuli(tmp_path, n_images=2, names=["ATM1.jpg"])
