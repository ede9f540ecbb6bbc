"""Asking for one BOLD5000 layout in a folder that holds another: the error names the one it holds.

The folders are hand-built with only the names that mark each layout (no data): the hint is
read from names, and the original message is kept in front of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurotask.cli import app
from neurotask.fmri import available_sessions, input_files, read_layout


def _bids(root: Path) -> Path:
    (root / "sub-CSI2" / "ses-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "BOLD5000", "BIDSVersion": "1.0.2"}')
    return root


def _release1(root: Path) -> Path:
    (root / "ROIs" / "CSI2" / "mat").mkdir(parents=True)
    return root


def _release2(root: Path) -> Path:
    (root / "download").mkdir(parents=True)
    (root / "download" / "CSI2_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz").write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("make", "asked", "hint"),
    [
        (_bids, 2, "looks like OpenNeuro BIDS (ds001499): pass release='bids' (command line: --release bids)"),
        (_release1, 2, "looks like release 1 (ROI files): pass release=1 (command line: --release 1)"),
        (_release1, "bids", "looks like release 1 (ROI files): pass release=1"),
        (_release2, "bids", "looks like release 2 (GLMsingle betas): pass release=2"),
        (_bids, 1, "pass release='bids'"),
    ],
)
@pytest.mark.parametrize("ask", [read_layout, available_sessions, input_files])
def test_the_error_names_the_layout_the_folder_holds(tmp_path: Path, make, asked, hint, ask) -> None:
    root = make(tmp_path / "tree")
    with pytest.raises(FileNotFoundError) as error:
        ask(root, "CSI2", release=asked)
    message = str(error.value)
    assert hint in message
    assert message.index(hint) > 0  # after the layout's own message


def test_a_folder_holding_no_layout_gets_the_plain_message(tmp_path: Path) -> None:
    (tmp_path / "tree" / "something").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as error:
        read_layout(tmp_path / "tree", "CSI2", release=2)
    assert "looks like" not in str(error.value) and "no release-2 betas" in str(error.value)


def test_another_subjects_files_are_no_hint(tmp_path: Path) -> None:
    root = _bids(tmp_path / "tree")  # sub-CSI2 only
    (root / "dataset_description.json").unlink()
    with pytest.raises(FileNotFoundError) as error:
        read_layout(root, "CSI1", release=2)
    assert "looks like" not in str(error.value)


def test_the_ingest_command_says_to_pass_release_bids(tmp_path: Path) -> None:
    root = _bids(tmp_path / "tree")
    result = CliRunner().invoke(app, ["ingest", str(root), "--subject", "CSI2", "--out", str(tmp_path / "r.zarr")])
    assert result.exit_code == 2
    assert "--release bids" in result.stderr.replace("\n", " ")
