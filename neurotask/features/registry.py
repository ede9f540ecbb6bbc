"""The 25 Taskonomy tasks whose encoders ``visualpriors`` ships, spelled as it spells them.

Users know the tasks under several names: the TF taskbank names used by Neural Taskonomy
(Wang, Tarr & Wehbe 2019; ``autoencoder``, ``rgb2sfnorm``, ``class_1000`` …) and the display
names of the Taskonomy paper (``Z-Depth``, ``Distance``, ``2D Segm.`` …). :func:`resolve_task`
accepts all of them and returns the ``visualpriors`` spelling, which is what stores record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["TASKS", "ALIASES", "INPUTS", "resolve_task", "resolve_models", "task_input"]

TASKS: tuple[str, ...] = (
    "autoencoding",
    "colorization",
    "curvature",
    "denoising",
    "edge_texture",
    "edge_occlusion",
    "egomotion",
    "fixated_pose",
    "jigsaw",
    "keypoints2d",
    "keypoints3d",
    "nonfixated_pose",
    "point_matching",
    "reshading",
    "depth_zbuffer",
    "depth_euclidean",
    "normal",
    "room_layout",
    "segment_unsup25d",
    "segment_unsup2d",
    "segment_semantic",
    "class_object",
    "class_scene",
    "inpainting",
    "vanishing_point",
)

# TF taskbank names (visualpriors' own ``task_mapping``) and Taskonomy display names, after
# :func:`_normalize` (lower case, runs of non-alphanumerics as one underscore).
ALIASES: dict[str, str] = {
    # TF taskbank / Neural Taskonomy
    "autoencoder": "autoencoding",
    "denoise": "denoising",
    "edge2d": "edge_texture",
    "edge3d": "edge_occlusion",
    "ego_motion": "egomotion",
    "fix_pose": "fixated_pose",
    "keypoint2d": "keypoints2d",
    "keypoint3d": "keypoints3d",
    "non_fixated_pose": "nonfixated_pose",
    "point_match": "point_matching",
    "reshade": "reshading",
    "rgb2depth": "depth_zbuffer",
    "rgb2mist": "depth_euclidean",
    "rgb2sfnorm": "normal",
    "segment25d": "segment_unsup25d",
    "segment2d": "segment_unsup2d",
    "segmentsemantic": "segment_semantic",
    "class_1000": "class_object",
    "class_places": "class_scene",
    "inpainting_whole": "inpainting",
    # Taskonomy paper display names
    "edge_2d": "edge_texture",
    "edge_3d": "edge_occlusion",
    "keypoint_2d": "keypoints2d",
    "keypoint_3d": "keypoints3d",
    "z_depth": "depth_zbuffer",
    "distance": "depth_euclidean",
    "normals": "normal",
    "surface_normals": "normal",
    "layout": "room_layout",
    "2_5d_segm": "segment_unsup25d",
    "2d_segm": "segment_unsup2d",
    "semantic_segm": "segment_semantic",
    "object_class": "class_object",
    "scene_class": "class_scene",
    "vanishing_pts": "vanishing_point",
    "camera_pose_fix": "fixated_pose",
    "camera_pose_nonfix": "nonfixated_pose",
}

# What each encoder is fed: RGB in [-1, 1], or (colorization) the CIE-Lab L* channel in [-1, 1].
INPUTS: dict[str, str] = {task: ("lightness" if task == "colorization" else "rgb") for task in TASKS}


def _normalize(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def resolve_task(name: str) -> str:
    """The ``visualpriors`` spelling of a task name or alias.

    Parameters
    ----------
    name : str
        A task as ``visualpriors`` spells it (``"normal"``), a TF taskbank name
        (``"rgb2sfnorm"``) or a Taskonomy display name (``"Surface Normals"``); case and
        punctuation are ignored.

    Returns
    -------
    str
        One of :data:`TASKS`.

    Raises
    ------
    ValueError
        If the name is not a task or alias; the message lists the valid names.

    Examples
    --------
    >>> resolve_task("rgb2sfnorm"), resolve_task("Z-Depth"), resolve_task("class_1000")
    ('normal', 'depth_zbuffer', 'class_object')
    """
    if not isinstance(name, str):
        raise TypeError(f"a task name must be a str; got {type(name).__name__} {name!r}")
    key = _normalize(name)
    if key in TASKS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise ValueError(
        f"unknown task {name!r}; expected one of {list(TASKS)} "
        f"(aliases accepted: {sorted(ALIASES)})"
    )


def resolve_models(models: str | Iterable[str] = "all") -> tuple[str, ...]:
    """Resolve a ``models`` argument to a tuple of distinct task names.

    Parameters
    ----------
    models : "all", str or iterable of str
        ``"all"`` (the 25 tasks in :data:`TASKS` order), one name, a comma-separated list
        (``"normal,rgb2depth"``) or an iterable of names/aliases.

    Returns
    -------
    tuple of str
        ``visualpriors`` spellings, in the order given.

    Raises
    ------
    ValueError
        On an unknown name, an empty selection, or a task named twice (e.g. by two aliases).

    Examples
    --------
    >>> resolve_models("autoencoder, rgb2sfnorm")
    ('autoencoding', 'normal')
    """
    if isinstance(models, str):
        if _normalize(models) == "all":
            return TASKS
        names = [m for m in models.split(",") if m.strip()]
    else:
        names = list(models)
    resolved = tuple(resolve_task(name) for name in names)
    if not resolved:
        raise ValueError(f"models selects no task (got {models!r}); pass 'all' or names from {list(TASKS)}")
    repeated = sorted({t for t in resolved if resolved.count(t) > 1})
    if repeated:
        raise ValueError(
            f"models names the tasks {repeated} more than once (aliases included: {names}); name each task once"
        )
    return resolved


def task_input(task: str) -> str:
    """The input an encoder takes: ``"rgb"`` (3 channels) or ``"lightness"`` (CIE-Lab L*, 1 channel)."""
    return INPUTS[resolve_task(task)]
