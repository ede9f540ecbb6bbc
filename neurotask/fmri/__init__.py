"""BOLD5000 ingestion: release layouts, masking, normalization, noise ceiling."""
