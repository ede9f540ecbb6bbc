"""Align features to trials by image id: the per-trial design matrix (DESIGN §2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from neurotask.ids import image_id
from neurotask.stores import validate_features

__all__ = ["align"]


def align(features: xr.DataArray, responses: xr.DataArray) -> xr.DataArray:
    """The design ``(model, trial, feature)``: each trial's row is its image's features.

    Trials are matched to images by id (the ``image`` coord), never by position; repeated
    presentations repeat their image's row.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features (e.g. from :func:`neurotask.open_features`).
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with an ``image`` coord on trial (only the trial coords are used).

    Returns
    -------
    xarray.DataArray, dims (model, trial, feature)
        Lazy when ``features`` is dask-backed; carries the trial coords of ``responses``
        (image, session, run, …) and the ``model`` coord.

    Raises
    ------
    ValueError
        If trials show images that ``features`` lacks: the message gives their count and some ids.

    Examples
    --------
    >>> import numpy as np
    >>> from neurotask.datasets import make_synthetic_features
    >>> feats = make_synthetic_features(models=["normal"], images=4, n_features=3)
    >>> trials = xr.DataArray(np.zeros((2, 1)), dims=("trial", "voxel"),
    ...                       coords={"image": ("trial", [feats.image.values[1]] * 2)})
    >>> align(feats, trials).sizes
    Frozen({'model': 1, 'trial': 2, 'feature': 3})
    """
    features = validate_features(features)
    if "image" not in responses.coords or responses["image"].dims != ("trial",):
        raise ValueError("responses must carry an 'image' coord on the 'trial' dim (stimulus ids, file stems)")
    images = responses["image"].values.astype(str)
    index = pd.Index(features["image"].values.astype(str)).get_indexer(images)
    if (index < 0).any():
        missing = pd.unique(images[index < 0])
        raise ValueError(
            f"{missing.size} image ids of the responses' trials are missing from features "
            f"({int((index < 0).sum())} trials), e.g. {[str(m) for m in missing[:5]]}. "
            + (_extension_hint(features["image"].values.astype(str), missing)
               or "Extract features for these images, or select the trials whose images have features.")
        )
    design = features.isel(image=xr.DataArray(index, dims="trial")).drop_vars(["image", "source"], errors="ignore")
    trial_coords = {str(c): responses[c] for c in responses.coords if responses[c].dims == ("trial",)}
    design = design.assign_coords(trial_coords).transpose("model", "trial", "feature")
    design.name = "design"
    return design


def _extension_hint(feature_ids: np.ndarray, missing: np.ndarray) -> str:
    """Advice when the ids differ only by a file extension on one side (``a.jpg`` against ``a``)."""
    stems = pd.Index([image_id(i) for i in feature_ids])
    if (stems.get_indexer([image_id(m) for m in missing]) >= 0).all():
        return ("They match the features' ids once file extensions are removed: image ids are file stems; relabel "
                "with neurotask.ids.image_id, e.g. x.assign_coords(image=[image_id(i) for i in x.image.values]).")
    return ""
