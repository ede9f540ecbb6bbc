"""Image subsets for RSA: a query, a mapping of coordinate values, a mask or a list of ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neurotask.rsa._labels import plain
from neurotask.stores import validate_features

__all__ = ["select_images"]


def _image_table(features: xr.DataArray) -> pd.DataFrame:
    coords = {str(name): plain(coord.values) for name, coord in features.coords.items() if coord.dims == ("image",)}
    return pd.DataFrame(coords)


def _query_mask(table: pd.DataFrame, subset: str) -> np.ndarray:
    try:
        return np.asarray(table.eval(subset, engine="python"), dtype=bool)
    except Exception as error:  # pandas raises many types for a bad expression
        raise ValueError(
            f"subset {subset!r} is not a valid query on the image coordinates {sorted(table)} ({error}); "
            f"write e.g. 'source == \"scene\"'"
        ) from error


def _mapping_mask(table: pd.DataFrame, subset: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    mask = np.ones(len(table), dtype=bool)
    parts = []
    for coord, wanted in subset.items():
        if coord not in table:
            raise ValueError(
                f"subset names the coordinate {coord!r}, which is not on the image dim; "
                f"image coordinates: {sorted(table)}"
            )
        values = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else list(wanted)
        mask &= table[coord].isin(values).to_numpy()
        parts.append(f"{coord} == {values[0]!r}" if len(values) == 1 else f"{coord} in {values!r}")
    return mask, " and ".join(parts)


def _array_mask(features: xr.DataArray, subset: Any) -> tuple[np.ndarray, str]:
    n = features.sizes["image"]
    values = np.asarray(subset.values if isinstance(subset, xr.DataArray) else subset)
    if values.dtype == bool:
        if values.shape != (n,):
            raise ValueError(f"a boolean subset must have one entry per image ({n}); got shape {values.shape}")
        return values, f"boolean mask ({int(values.sum())} of {n} images)"
    ids = [str(v) for v in values.ravel()]
    known = pd.Index(plain(features["image"].values))
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"subset names {len(missing)} image ids that are not in features, e.g. {missing[:5]}")
    return known.isin(ids), f"{len(set(ids))} listed image ids"


def select_images(features: xr.DataArray, subset: Any = None) -> tuple[xr.DataArray, str]:
    """Restrict features to an image subset.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features with ``model`` and ``image`` coordinates; a missing ``source`` is derived from
        BOLD5000-style image ids (else ``"unknown"``) by :func:`neurotask.stores.validate_features`.
    subset : None, str, mapping, boolean array or sequence of str
        None: all images. A str: a query on the image coordinates (pandas syntax), e.g.
        ``'source == "scene"'``. A mapping: coordinate → value or list of values, e.g.
        ``{"source": "scene"}``. A boolean mask over images (array or DataArray on ``image``).
        A sequence of image ids.

    Returns
    -------
    features : xarray.DataArray, dims (model, image, feature)
        The validated features on the selected images, in their original order (lazy if the
        input was).
    description : str
        The subset in words, for attrs and titles.

    Raises
    ------
    ValueError
        For a subset naming an unknown coordinate or image id, a bad query or mask, or fewer
        than 3 selected images.

    Examples
    --------
    >>> from neurotask.datasets.synthetic import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "jigsaw"], 100, n_features=8)
    >>> scenes, text = select_images(feats, {"source": "scene"})
    >>> text
    "source == 'scene'"
    """
    features = validate_features(features)
    if subset is None:
        return features, "all images"
    if isinstance(subset, str):
        mask, description = _query_mask(_image_table(features), subset), subset
    elif isinstance(subset, Mapping):
        mask, description = _mapping_mask(_image_table(features), subset)
    else:
        mask, description = _array_mask(features, subset)
    count = int(mask.sum())
    if count < 3:
        raise ValueError(_too_few(description, count, features, by_label=isinstance(subset, (str, Mapping))))
    return features.isel(image=np.flatnonzero(mask)), description


def _too_few(description: str, count: int, features: xr.DataArray, *, by_label: bool) -> str:
    """Why a subset of fewer than 3 images is refused; for a selection by label, the sources there are."""
    noun = "image" if count == 1 else "images"
    text = (f"subset {description!r} selects {count} {noun} of {features.sizes['image']}; an RDM comparison needs "
            "at least 3 images (3 image pairs to rank). ")
    if by_label:
        sources, counts = np.unique(plain(features["source"].values).astype(str), return_counts=True)
        text += f"The images' sources: {dict(zip(sources.tolist(), counts.tolist()))}"
        text += " (ids that are not BOLD5000's have source 'unknown'). " if "unknown" in sources else ". "
    return text + "Choose a larger subset."
