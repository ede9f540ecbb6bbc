"""``neurotask synth``: writes a tree nibabel opens, with the documented names and shapes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from neurotask.cli import app
from neurotask.datasets import bold5000_trial_order, open_groundtruth


def test_synth_release2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["synth", str(tmp_path), "--sessions", "1", "--images", "12", "--models", "normal,class_object",
         "--n-features", "16", "--seed", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "370 trials in 1 sessions" in " ".join(result.output.split())  # rich wraps lines
    folder = tmp_path  # flat, as downloaded
    betas = nib.load(folder / "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz")
    assert betas.shape == (20, 24, 20, 370)
    assert nib.load(folder / "CSI1_brainmask.nii.gz").shape == (20, 24, 20)
    assert (folder / "CSI1_imgnames.txt").read_text().splitlines() == bold5000_trial_order("CSI1")[:370]
    stimuli = sorted((tmp_path / "Scene_Stimuli" / "Presented_Stimuli").rglob("*.*"))
    assert len(stimuli) == 12
    truth = open_groundtruth(tmp_path)
    assert set(truth.driver.values) == {"", "normal", "class_object"} and truth.attrs["seed"] == 2
    assert np.isnan(np.asarray(betas.dataobj)[0, 0, 0]).all()


def test_synth_release1_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["synth", str(tmp_path), "--release", "1", "--sessions", "1", "--models", "jigsaw", "--n-features", "8",
         "--no-stimuli"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ROIs" / "CSI1" / "mat" / "CSI1_ROIs_TR34.mat").exists()
    assert not (tmp_path / "Scene_Stimuli").exists()
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--release", "3"])
    assert bad.exit_code != 0 and "--release must be 2, 1 or bids" in bad.output
    bad = runner.invoke(app, ["synth", str(tmp_path / "y"), "--sessions", "16", "--no-stimuli"])
    assert bad.exit_code != 0 and "n_sessions must be in 1..15" in bad.output
