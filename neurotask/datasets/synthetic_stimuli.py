"""Synthetic BOLD5000 stimulus images: real file names, procedurally drawn pictures.

The tree mirrors ``Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/<real file name>``.
Each picture is drawn with statistics typical of its source, so that encoders see structured
images rather than noise:

- **Scene** (SUN): a sky gradient over a horizon with hills, textured ground whose texture
  compresses towards the horizon, and sometimes buildings on the skyline;
- **COCO**: several overlapping objects (ellipses, boxes, polygons, some shaded) on clutter;
- **ImageNet**: one large, centered, textured object on a blurred background.

Every picture is deterministic in ``(seed, file name)``, independent of which other images are
written. About 2% of the files are single-channel (``'L'`` mode) JPEGs, as in BOLD5000.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from neurotask.datasets.synthetic import bold5000_trial_order
from neurotask.stimuli import image_source

__all__ = ["GRAYSCALE_FRACTION", "STIMULUS_DIRS", "IMAGE_SIZE", "write_synthetic_stimuli", "stimulus_path"]

#: Side of the square BOLD5000 stimuli, in pixels.
IMAGE_SIZE = 375
#: Fraction of single-channel files (BOLD5000 has a few dozen grayscale images among ~5000).
GRAYSCALE_FRACTION = 0.02
#: Folder of each source under ``Scene_Stimuli/Presented_Stimuli``.
STIMULUS_DIRS = {"coco": "COCO", "imagenet": "ImageNet", "scene": "Scene"}


def stimulus_path(root: str | os.PathLike[str], name: str) -> Path:
    """Where BOLD5000 keeps the stimulus file ``name`` under ``root``.

    Examples
    --------
    >>> stimulus_path("/data", "n01440764_10110.JPEG").as_posix()
    '/data/Scene_Stimuli/Presented_Stimuli/ImageNet/n01440764_10110.JPEG'
    """
    return Path(root) / "Scene_Stimuli" / "Presented_Stimuli" / STIMULUS_DIRS[image_source(name)] / name


def _stimulus_names(n_images: int | None, subject: str) -> list[str]:
    """Unique file names in first-presentation order, with at least one repeated image."""
    order = bold5000_trial_order(subject)
    counts = Counter(order)
    names = list(dict.fromkeys(order))
    if n_images is None:
        return names
    if not 0 < n_images <= len(names):
        raise ValueError(f"n_images must be in 1..{len(names)} for {subject}, or None for all; got {n_images}")
    chosen = names[:n_images]
    if not any(counts[n] > 1 for n in chosen):
        # BOLD5000's 113 repeated images are what noise ceilings are computed from: keep one.
        chosen[-1] = next(n for n in names if counts[n] > 1)
    return chosen


# ----------------------------------------------------------------------------- drawing kernels


def _smooth_field(rng: np.random.Generator, grid: int, channels: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A smooth random field in [0, 1], shape (size, size, channels): bicubic upsampling of a coarse grid."""
    coarse = rng.integers(0, 256, size=(grid, grid, channels), dtype=np.uint8)
    image = Image.fromarray(coarse.squeeze(-1) if channels == 1 else coarse)
    field = np.asarray(image.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    return field.reshape(size, size, channels)


def _random_color(rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return rng.uniform(low, high, 3).astype(np.float32)


def _draw_scene(rng: np.random.Generator) -> np.ndarray:
    """Sky gradient, a hilly horizon, perspective-textured ground, sometimes a skyline."""
    s = IMAGE_SIZE
    rows = np.arange(s, dtype=np.float32)[:, None]
    cols = np.arange(s, dtype=np.float32)[None, :]
    horizon = rng.uniform(0.35, 0.65) * s
    hills = sum(
        rng.uniform(3, 25) * np.sin(2 * np.pi * rng.uniform(0.5, 4) * cols / s + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    ground_line = horizon - np.abs(hills)
    top, bottom = _random_color(rng, 0.3, 1.0), _random_color(rng, 0.5, 1.0)
    t = np.clip(rows / horizon, 0, 1)[..., None]
    sky = (1 - t) * top + t * bottom
    sky = sky + 0.08 * (_smooth_field(rng, 6, 1) - 0.5)  # clouds
    depth = np.clip(rows - ground_line, 1, None)[..., None]  # distance below the horizon, in pixels
    ground_color = _random_color(rng, 0.1, 0.7)
    stripes = 0.5 + 0.5 * np.sin(rng.uniform(200, 800) / depth + rng.uniform(0, 2 * np.pi))
    texture = 0.6 * _smooth_field(rng, 24, 3) + 0.4 * _smooth_field(rng, 60, 1)
    ground = ground_color * (0.55 + 0.3 * texture + 0.15 * stripes) * (0.6 + 0.4 * np.clip(depth / s * 3, 0, 1))
    image = np.where((rows >= ground_line)[..., None], ground, np.broadcast_to(sky, (s, s, 3)))
    if rng.random() < 0.5:
        pil = Image.fromarray(_to_uint8(image))
        draw = ImageDraw.Draw(pil)
        x = 0.0
        while x < s:
            width, height = rng.uniform(15, 60), rng.uniform(20, 0.5 * horizon)
            if rng.random() < 0.6:
                shade = tuple(int(v) for v in rng.integers(40, 200, 3))
                draw.rectangle([x, horizon - height, x + width, horizon + 2], fill=shade)
            x += width + rng.uniform(0, 30)
        image = np.asarray(pil, dtype=np.float32) / 255.0
    return image


def _draw_coco(rng: np.random.Generator) -> np.ndarray:
    """Several overlapping objects of varied shape, color and shading on a cluttered background."""
    s = IMAGE_SIZE
    clutter = 0.5 * _smooth_field(rng, 10, 3) + 0.3 * _smooth_field(rng, 40, 3) + 0.2 * _random_color(rng)
    clutter = 0.5 * clutter + 0.5 * clutter.mean(axis=-1, keepdims=True)  # real clutter is less saturated
    pil = Image.fromarray(_to_uint8(clutter))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, s, 2)
        w, h = rng.uniform(0.08, 0.35, 2) * s
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse(box, fill=color, outline=outline, width=2)
        elif kind == 1:
            draw.rectangle(box, fill=color, outline=outline, width=2)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            radius = rng.uniform(0.5, 1.0, angles.size)
            points = [(cx + r * w / 2 * np.cos(a), cy + r * h / 2 * np.sin(a)) for r, a in zip(radius, angles)]
            draw.polygon(points, fill=color, outline=outline)
    image = np.asarray(pil, dtype=np.float32) / 255.0
    light = _smooth_field(rng, 3, 1)  # uneven illumination across the scene
    return image * (0.7 + 0.5 * light)


def _draw_imagenet(rng: np.random.Generator) -> np.ndarray:
    """One large textured object near the center on a blurred, low-contrast background."""
    s = IMAGE_SIZE
    background = 0.6 * _smooth_field(rng, 4, 3) + 0.4 * _random_color(rng)
    background = np.asarray(
        Image.fromarray(_to_uint8(background)).filter(ImageFilter.GaussianBlur(8)), dtype=np.float32
    ) / 255.0
    cx, cy = s / 2 + rng.normal(0, 0.05 * s, 2)
    radius = rng.uniform(0.2, 0.35) * s
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    wobble = 1 + 0.25 * sum(rng.normal() * np.sin(f * angles + rng.uniform(0, 2 * np.pi)) for f in (2, 3, 5))
    points = [(cx + radius * r * np.cos(a), cy + radius * r * np.sin(a)) for r, a in zip(wobble, angles)]
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    mask_arr = np.asarray(mask.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)[..., None] / 255.0
    rows, cols = np.mgrid[0:s, 0:s].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    pattern = np.sin((np.cos(theta) * cols + np.sin(theta) * rows) * rng.uniform(0.05, 0.4))[..., None]
    spots = _smooth_field(rng, 30, 1)
    shade = np.clip(1 - 0.5 * np.hypot(rows - cy + 0.3 * radius, cols - cx + 0.3 * radius) / radius, 0.3, 1)[..., None]
    obj = _random_color(rng, 0.1, 0.9) * (0.7 + 0.15 * pattern + 0.3 * spots) * shade
    return mask_arr * obj + (1 - mask_arr) * background


_DRAWERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "scene": _draw_scene,
    "coco": _draw_coco,
    "imagenet": _draw_imagenet,
}


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _draw(name: str, seed: int) -> np.ndarray:
    """The picture for one file name: uint8, (375, 375, 3)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return _to_uint8(_DRAWERS[image_source(name)](rng))


# ----------------------------------------------------------------------------- public writer


def write_synthetic_stimuli(
    root: str | os.PathLike[str],
    n_images: int | None = None,
    seed: int = 0,
    subject: str = "CSI1",
    *,
    names: list[str] | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write procedurally drawn stimulus images under BOLD5000's real names and layout.

    Parameters
    ----------
    root : path
        Dataset root; files go to ``root/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/``.
    n_images : int, optional
        How many images: the first ``n_images`` in ``subject``'s first-presentation order (this
        keeps the real source mix; at least one of the 113 repeated images is always included).
        None writes all of the subject's images (4916 for CSI1–3, 2952 for CSI4).
    seed : int
        Seed; the same seed writes byte-identical files. Each picture depends only on
        ``(seed, file name)``.
    subject : {"CSI1", "CSI2", "CSI3", "CSI4"}
        Whose trial order supplies the names.
    names : list of str, optional
        Explicit stimulus file names (with extension) instead of ``n_images``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of pathlib.Path
        The written files, in the order of the names. ``round(0.02 · n)`` of them (at least one
        when n ≥ 20) are single-channel (``'L'`` mode) JPEGs, chosen by ``seed``.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_synthetic_stimuli(tempfile.mkdtemp(), n_images=5)
    >>> [p.parent.name for p in paths]
    ['ImageNet', 'ImageNet', 'ImageNet', 'COCO', 'COCO']
    """
    if names is not None and n_images is not None:
        raise ValueError("pass either n_images or names to write_synthetic_stimuli, not both")
    chosen = list(names) if names is not None else _stimulus_names(n_images, subject)
    n_gray = round(GRAYSCALE_FRACTION * len(chosen))
    if len(chosen) >= 20:
        n_gray = max(n_gray, 1)
    gray = set(np.random.default_rng(seed).choice(len(chosen), size=n_gray, replace=False).tolist())
    paths = []
    with progress_bar(progress, len(chosen), "stimuli") as advance:
        for index, name in enumerate(chosen):
            path = stimulus_path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(_draw(name, seed))
            if index in gray:
                image = image.convert("L")
            image.save(path, format="JPEG", quality=90)
            paths.append(path)
            advance()
    return paths


@contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar yielding its ``advance()``; a no-op when not ``enabled``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
