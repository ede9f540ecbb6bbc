"""Taskonomy encoders and feature extraction."""

from neurotask.features.registry import TASKS

__all__ = ["TASKS"]
