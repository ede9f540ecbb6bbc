"""Synthetic features with planted model groups, and the real BOLD5000 trial orders.

Everything here is deterministic per seed. The image ids are real BOLD5000 stimulus names (the
trial orders of CSI1–4 ship with the package), so synthetic data has the dataset's true source
mix and repeats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np
import xarray as xr

from neurotask.features.registry import TASKS
from neurotask.stimuli import image_id, image_source

__all__ = ["TASKONOMY_GROUPS", "bold5000_trial_order", "bold5000_images", "make_synthetic_features"]

SUBJECTS = ("CSI1", "CSI2", "CSI3", "CSI4")

#: A four-way grouping of the 25 tasks after the Taskonomy task-similarity tree (2D, 3D,
#: low-dimensional geometric, semantic), used as the default planted structure.
TASKONOMY_GROUPS: dict[str, tuple[str, ...]] = {
    "2d": (
        "autoencoding", "colorization", "denoising", "edge_texture", "inpainting", "keypoints2d",
        "segment_unsup2d",
    ),
    "3d": (
        "curvature", "depth_euclidean", "depth_zbuffer", "edge_occlusion", "keypoints3d", "normal",
        "reshading", "segment_unsup25d",
    ),
    "geometric": (
        "egomotion", "fixated_pose", "nonfixated_pose", "point_matching", "room_layout",
        "vanishing_point", "jigsaw",
    ),
    "semantic": ("class_object", "class_scene", "segment_semantic"),
}


def bold5000_trial_order(subject: str = "CSI1") -> list[str]:
    """The real BOLD5000 trial order of a subject: one stimulus file name per trial.

    Parameters
    ----------
    subject : {"CSI1", "CSI2", "CSI3", "CSI4"}
        The subject (5254 trials for CSI1–3, 3108 for CSI4).

    Returns
    -------
    list of str
        File names (with extension), repeated presentations included, in beta order.
    """
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}; expected one of {list(SUBJECTS)}")
    text = resources.files("neurotask.datasets").joinpath("data", f"sub-{subject}_imgnames.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def bold5000_images(n_images: int | None = None, subject: str = "CSI1") -> list[str]:
    """Unique BOLD5000 image ids (file stems) in first-presentation order.

    Parameters
    ----------
    n_images : int, optional
        How many; the first ``n_images`` in presentation order keep the real source mix. All when None.
    subject : str
        Whose trial order to draw from.
    """
    seen: dict[str, None] = {}
    for name in bold5000_trial_order(subject):
        seen.setdefault(image_id(name), None)
    ids = list(seen)
    if n_images is not None:
        if not 0 < n_images <= len(ids):
            raise ValueError(f"n_images must be in 1..{len(ids)} for {subject}; got {n_images}")
        ids = ids[:n_images]
    return ids


def _groups_of(models: Sequence[str], groups: Mapping[str, Sequence[str]] | int | None) -> dict[str, str]:
    if groups is None:
        membership = {m: g for g, members in TASKONOMY_GROUPS.items() for m in members}
        unknown = [m for m in models if m not in membership]
        if unknown:
            raise ValueError(
                f"models {unknown} are not Taskonomy tasks, so they have no default group; pass groups="
            )
        return {m: membership[m] for m in models}
    if isinstance(groups, int):
        if groups < 1:
            raise ValueError(f"groups must be >= 1; got {groups}")
        return {m: f"group{i % groups}" for i, m in enumerate(models)}
    membership = {m: str(g) for g, members in groups.items() for m in members}
    missing = [m for m in models if m not in membership]
    if missing:
        raise ValueError(f"groups does not assign models {missing} to any group")
    return {m: membership[m] for m in models}


def make_synthetic_features(
    models: Sequence[str] | None = None,
    images: int | Sequence[str] = 200,
    *,
    n_features: int = 2048,
    groups: Mapping[str, Sequence[str]] | int | None = None,
    n_latent: int = 16,
    noise: float = 0.5,
    seed: int = 0,
) -> xr.DataArray:
    """Features whose models fall into planted groups that share latent factors.

    Each group ``g`` has latent image factors ``Z_g`` (images × ``n_latent``), independent across
    groups; model ``m`` of group ``g`` has ``features_m = relu(Z_g W_m + noise · E_m)`` with its own
    random loadings ``W_m``. Models of one group therefore have similar representational
    geometry, models of different groups do not, and the model-similarity dendrogram recovers
    the groups.

    Parameters
    ----------
    models : sequence of str, optional
        Model names; default the 25 Taskonomy tasks.
    images : int or sequence of str
        A number of BOLD5000 image ids (drawn in presentation order), or the ids themselves.
    n_features : int
        Features per model (2048 for Taskonomy encoders).
    groups : mapping of group to models, int, or None
        The planted grouping; an int assigns models round-robin to that many groups; None uses
        :data:`TASKONOMY_GROUPS`.
    n_latent : int
        Latent factors per group.
    noise : float
        Standard deviation of each model's private noise relative to its signal.
    seed : int
        Seed; equal seeds give identical arrays.

    Returns
    -------
    xarray.DataArray, dims (model, image, feature), float32
        With ``model``, ``image``, ``source`` and ``group`` (on model) coordinates.

    Examples
    --------
    >>> feats = make_synthetic_features(["normal", "depth_zbuffer", "class_object"], 50, n_features=64)
    >>> feats.sizes["image"], str(feats.group.sel(model="normal").values)
    (50, '3d')
    """
    models = list(TASKS if models is None else models)
    ids = bold5000_images(images) if isinstance(images, int) else [str(i) for i in images]
    membership = _groups_of(models, groups)
    rng = np.random.default_rng(seed)
    latents = {g: rng.standard_normal((len(ids), n_latent)) for g in dict.fromkeys(membership.values())}
    values = np.empty((len(models), len(ids), n_features), dtype=np.float32)
    for m, model in enumerate(models):
        loadings = rng.standard_normal((n_latent, n_features)) / np.sqrt(n_latent)
        signal = latents[membership[model]] @ loadings
        values[m] = np.maximum(signal + noise * rng.standard_normal(signal.shape), 0.0)
    return xr.DataArray(
        values,
        dims=("model", "image", "feature"),
        coords={
            "model": models,
            "image": ids,
            "source": ("image", [image_source(i) for i in ids]),
            "group": ("model", [membership[m] for m in models]),
        },
        name="features",
        attrs={"long_name": "synthetic Taskonomy features", "seed": seed, "planted_groups": "group coord"},
    )
