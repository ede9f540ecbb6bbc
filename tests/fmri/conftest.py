"""Fixtures of the fmri tests; the tree writers live in ``fmri_trees`` (a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fmri_trees import Tree, write_release2


@pytest.fixture
def release2_tree(tmp_path: Path) -> Tree:
    return write_release2(tmp_path / "bold5000")
