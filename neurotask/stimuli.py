"""Stimuli: image discovery, decoding and preprocessing (ids and sources re-exported from :mod:`neurotask.ids`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from neurotask.ids import SOURCES, image_id, image_source

__all__ = [
    "image_id",
    "image_source",
    "SOURCES",
    "IMAGE_EXTENSIONS",
    "INPUT_SIZE",
    "RESIZE_POLICY",
    "GRAYSCALE_MODES",
    "MODEL_INPUTS",
    "SRGB_TO_LINEAR",
    "LUMINANCE_FROM_LINEAR_RGB",
    "LIGHTNESS_KNEE",
    "ImageError",
    "find_images",
    "check_unique_ids",
    "check_image",
    "load_image",
    "rgb_input",
    "lightness_input",
]

# Discovery, decoding and preprocessing (DESIGN §3, "Stimulus preprocessing").

#: File name suffixes treated as images when a directory is searched.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: Side of the square model input, in pixels.
INPUT_SIZE = 256

#: How every image is brought to INPUT_SIZE x INPUT_SIZE (stored in the features attrs).
RESIZE_POLICY = (
    "whole image resized to 256x256 without cropping (aspect ratio not kept, as Taskonomy's "
    "resize_rescale_image; BOLD5000's presented stimuli are square), PIL bilinear with antialiasing, "
    "after conversion to 8-bit RGB"
)

#: PIL modes with one band of luminance: such files are converted to RGB and listed as grayscale.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})

# BOLD5000 stimuli roots: the presented stimuli, not the other folders of the release.
_BOLD5000_STIMULI = ("Scene_Stimuli/Presented_Stimuli", "BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli")


class ImageError(ValueError):
    """An image file cannot be read or decoded."""


def find_images(images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files from a directory tree, a BOLD5000 stimuli root, one file or a list of paths.

    Parameters
    ----------
    images : path-like or iterable of path-like
        A directory (searched recursively for :data:`IMAGE_EXTENSIONS`, hidden files skipped,
        sorted by path), a BOLD5000 root holding ``Scene_Stimuli/Presented_Stimuli`` (only that
        folder is searched), a single image file, or a list of image files (kept in order).

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    ValueError
        If nothing is found, a listed file does not exist, or two files share an image id.

    Examples
    --------
    >>> find_images(["a/COCO_train2014_000000000584.jpg"])  # doctest: +SKIP
    """
    if isinstance(images, (str, os.PathLike)):
        root = Path(images)
        if root.is_dir():
            for sub in _BOLD5000_STIMULI:
                if (root / sub).is_dir():
                    root = root / sub
                    break
            paths = sorted(
                p
                for p in root.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
                and p.is_file()
            )
            if not paths:
                raise ValueError(
                    f"images: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; "
                    f"pass a directory of stimuli, a BOLD5000 root or a list of image files"
                )
        elif root.is_file():
            paths = [root]
        else:
            raise ValueError(f"images: {str(root)!r} does not exist; pass an existing directory or image file")
    else:
        paths = [Path(p) for p in images]
        if not paths:
            raise ValueError("images is empty; pass a directory of stimuli or a non-empty list of image files")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"images: {len(missing)} listed files do not exist, e.g. {missing[:5]}")
    check_unique_ids(paths)
    return paths


def check_unique_ids(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise a ValueError naming the files whose image ids (file stems) collide."""
    by_id: dict[str, list[str]] = {}
    for path in paths:
        by_id.setdefault(image_id(path), []).append(str(path))
    duplicated = {i: files for i, files in by_id.items() if len(files) > 1}
    if duplicated:
        examples = dict(list(duplicated.items())[:5])
        raise ValueError(
            f"images: {len(duplicated)} image ids occur more than once (ids are file names without "
            f"extension), e.g. {examples}; remove or rename the duplicates"
        )


def _open_rgb(path: str | os.PathLike[str]) -> tuple[Image.Image, bool]:
    """Decode a whole file and convert it to 8-bit RGB; the ImageError of a bad file names it."""
    try:
        with Image.open(path) as image:
            image.load()
            grayscale = image.mode in GRAYSCALE_MODES
            # convert() of an RGB image is a plain copy: skipped, the pixels are the same
            rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"cannot decode image file {str(path)!r}: {error}") from error
    return rgb, grayscale


def check_image(path: str | os.PathLike[str]) -> bool:
    """Decode an image file as :func:`load_image` does, without resizing: whether it is grayscale.

    The same decode and conversion, so the same files fail, with the same error; the resize,
    two thirds of :func:`load_image`'s time on a 375x375 JPEG (1.3 of 1.9 ms), is left out.

    Parameters
    ----------
    path : path-like
        The image file.

    Returns
    -------
    bool
        Whether the file holds a single luminance channel.

    Raises
    ------
    ImageError
        If the file cannot be opened or decoded (truncated, corrupt, not an image); the message
        names the file.
    """
    return _open_rgb(path)[1]


def load_image(path: str | os.PathLike[str], size: int = INPUT_SIZE) -> tuple[np.ndarray, bool]:
    """Decode an image file to 8-bit RGB at ``size`` x ``size`` (see :data:`RESIZE_POLICY`).

    Parameters
    ----------
    path : path-like
        The image file.
    size : int
        Output side in pixels.

    Returns
    -------
    image : numpy.ndarray of uint8, shape (size, size, 3)
        Rows, columns, RGB channels.
    grayscale : bool
        Whether the file holds a single luminance channel (converted by replicating it).

    Raises
    ------
    ImageError
        If the file cannot be opened or decoded (truncated, corrupt, not an image); the message
        names the file.
    """
    rgb, grayscale = _open_rgb(path)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), grayscale


def rgb_input(images: np.ndarray) -> np.ndarray:
    """Scale 8-bit RGB images to float32 in [-1, 1] (``x / 255 * 2 - 1``, as ``to_tensor(x) * 2 - 1``).

    Parameters
    ----------
    images : numpy.ndarray of uint8, shape (n, height, width, 3)

    Returns
    -------
    numpy.ndarray of float32, shape (n, height, width, 3)
    """
    return np.asarray(images, dtype=np.float32) / np.float32(255) * np.float32(2) - np.float32(1)


def _srgb_to_linear_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


#: Linear-light value (float64) of each 8-bit sRGB level.
SRGB_TO_LINEAR = _srgb_to_linear_table()
#: The D65 relative luminance row of the sRGB -> XYZ matrix (the one skimage.color uses).
LUMINANCE_FROM_LINEAR_RGB = np.array([0.212671, 0.715160, 0.072169])
#: L* switches from its cube-root branch to its linear branch below this luminance (CIE).
LIGHTNESS_KNEE = 0.008856


def lightness_input(images: np.ndarray) -> np.ndarray:
    """CIE-Lab L* of 8-bit sRGB images (D65), rescaled from [0, 100] to [-1, 1] as ``L / 50 - 1``.

    This is the one-channel input of the ``colorization`` encoder.

    Parameters
    ----------
    images : numpy.ndarray of uint8, shape (n, height, width, 3)

    Returns
    -------
    numpy.ndarray of float32, shape (n, height, width, 1)
    """
    y = SRGB_TO_LINEAR[np.asarray(images, dtype=np.uint8)] @ LUMINANCE_FROM_LINEAR_RGB
    f = np.where(y > LIGHTNESS_KNEE, np.cbrt(y), 7.787 * y + 16 / 116)
    lightness = 116 * f - 16
    return (lightness / 50 - 1).astype(np.float32)[..., None]


#: Model input kinds (see :data:`neurotask.features.registry.INPUTS`) and their preprocessing.
MODEL_INPUTS = {"rgb": rgb_input, "lightness": lightness_input}
