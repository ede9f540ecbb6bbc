"""The 25 Taskonomy tasks whose encoders ``visualpriors`` ships, spelled as it spells them."""

from __future__ import annotations

__all__ = ["TASKS"]

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
