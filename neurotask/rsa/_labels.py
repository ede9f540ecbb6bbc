"""Labels and argument checks shared by the RSA modules (no numerics here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr


def plain(values: np.ndarray) -> np.ndarray:
    """Coordinate values with numpy's variable-width strings (as zarr v3 returns them) as ``str``."""
    values = np.asarray(values)
    return np.array(values.tolist(), dtype=str) if values.dtype.kind in "TO" else values


def check_choice(name: str, value: str, choices: Sequence[str] | Mapping[str, str]) -> None:
    """Raise the registry error for an unknown method name."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")


def pair_coords(images: np.ndarray) -> xr.Coordinates:
    """The ``pair`` MultiIndex (``image_i``, ``image_j``; ``i < j``, scipy ``squareform`` order)."""
    n = len(images)
    codes_dtype = np.int16 if n < 2**15 else np.int32
    i, j = np.triu_indices(n, 1)
    index = pd.MultiIndex(
        levels=[pd.Index(images, name="image_i"), pd.Index(images, name="image_j")],
        codes=[i.astype(codes_dtype), j.astype(codes_dtype)],
        names=["image_i", "image_j"],
        verify_integrity=False,
    )
    return xr.Coordinates.from_pandas_multiindex(index, "pair")


def rsa_attrs(method: str, subset: str, n_images: int, **more: Any) -> dict[str, Any]:
    """The attrs every RSA result carries."""
    return {"rdm_method": method, "subset": subset, "n_images": n_images, **more}
