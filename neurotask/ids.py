"""Image ids and BOLD5000 sources: the names every other layer uses to label stimuli.

This module is the bottom layer: it imports nothing from the package.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["SOURCES", "IMAGENET_ID", "image_id", "image_source"]

#: The BOLD5000 stimulus sources.
SOURCES = ("coco", "imagenet", "scene")

#: An ImageNet image id: ``n<8-digit synset>_<number>``.
IMAGENET_ID = re.compile(r"^n\d{8}_\d+$")


def image_id(path: str | os.PathLike[str]) -> str:
    """The stimulus id of an image file: its name without directory and extension.

    Parameters
    ----------
    path : str or path-like
        An image file name or path.

    Returns
    -------
    str

    Examples
    --------
    >>> image_id("Scene_Stimuli/Presented_Stimuli/COCO/COCO_train2014_000000000584.jpg")
    'COCO_train2014_000000000584'
    """
    return Path(path).stem


def image_source(image: str) -> str:
    """The BOLD5000 source of an image id: ``"coco"``, ``"imagenet"`` or ``"scene"``.

    BOLD5000 names COCO images ``COCO_train2014_<12 digits>``, ImageNet images
    ``n<8-digit synset>_<number>``; every other name is a SUN scene image (``airplanecabin1``).

    Parameters
    ----------
    image : str
        An image id, or a file name or path (its id is used).

    Returns
    -------
    str

    Examples
    --------
    >>> [image_source(n) for n in ("COCO_train2014_000000000584", "n01440764_10110", "ATM1")]
    ['coco', 'imagenet', 'scene']
    """
    stem = image_id(image) if "." in image or "/" in image else image
    if stem.startswith("COCO_"):
        return "coco"
    if IMAGENET_ID.match(stem):
        return "imagenet"
    return "scene"
