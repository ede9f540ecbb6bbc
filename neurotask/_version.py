"""The package version (the lowest layer: every writer stamps it)."""

__version__ = "0.1.0"
