"""Voxelwise ridge encoding models."""
