"""The ``neurotask ingest`` command."""

from __future__ import annotations

from fmri_trees import write_bids, write_release2
from typer.testing import CliRunner

import neurotask as nt
from neurotask.cli import app


def test_ingest_command_writes_the_store(tmp_path):
    tree = write_release2(tmp_path / "t")
    out = tmp_path / "sub-CSI1.zarr"
    result = CliRunner().invoke(
        app, ["ingest", str(tree.root), "--subject", "CSI1", "--release", "2", "--out", str(out), "--normalize", "run"]
    )
    assert result.exit_code == 0, result.output
    assert "111 trials x" in result.output and "constant_in_run" in result.output
    resp = nt.open_responses(out)
    assert resp.attrs["normalization"] == "run" and resp.sizes["trial"] == 111


def test_ingest_command_on_a_flat_release2_folder_and_a_folder_above(tmp_path):
    tree = write_release2(tmp_path / "downloads" / "BOLD5000_GLMsingle")  # the figshare files, as downloaded
    assert sorted(p.name for p in tree.root.iterdir()) == [
        "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz", "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-02.nii.gz",
        "CSI1_brainmask.nii.gz", "CSI1_imgnames.txt",
    ]
    for root, out in ((tree.root, tmp_path / "a.zarr"), (tmp_path / "downloads", tmp_path / "b.zarr")):
        result = CliRunner().invoke(app, ["ingest", str(root), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "111 trials x" in result.output
        assert nt.open_responses(out).attrs["folder"] == str(tree.root)
    result = CliRunner().invoke(app, ["ingest", str(tree.root), "--out", str(tmp_path / "c.zarr"), "--mask", "finite"])
    assert result.exit_code == 0, result.output
    assert nt.open_responses(tmp_path / "c.zarr").attrs["mask_source"].startswith("finite:")


def test_ingest_command_reports_bad_options(tmp_path):
    tree = write_release2(tmp_path / "t")
    result = CliRunner().invoke(app, ["ingest", str(tree.root), "--out", str(tmp_path / "x.zarr"), "--betas", "TYPEQ"])
    assert result.exit_code == 2 and "unknown betas" in result.output


def test_ingest_command_reads_fmriprep_by_default_and_raw_on_request(tmp_path):
    write_bids(tmp_path / "t", fmriprep="1.x")
    for flag, expected in (([], "fmriprep-T1w"), (["--raw", "--mask", "finite"], "raw")):
        out = tmp_path / f"{expected}.zarr"
        result = CliRunner().invoke(
            app, ["ingest", str(tmp_path / "t"), "--subject", "CSI3", "--release", "bids", "--out", str(out), *flag]
        )
        assert result.exit_code == 0, result.output
        assert nt.open_responses(out).attrs["bids_runs"] == expected
