"""Synthetic release-1 ROI files and BIDS runs: files, shapes, labels, TR model, planted truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io
import xarray as xr

from neurotask.datasets import (
    ROI_NAMES,
    bold5000_session_runs,
    bold5000_trials,
    make_synthetic_features,
    open_groundtruth,
    write_synthetic_bold5000,
)

MODELS = ["normal", "class_object", "jigsaw"]
TR_FILES = ("1", "2", "3", "4", "5", "34")


@pytest.fixture(scope="module")
def features() -> xr.DataArray:
    images = bold5000_trials("CSI1", n_sessions=3).image.unique().tolist()
    return make_synthetic_features(MODELS, images, n_features=32, seed=1)


def heldout_r2(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Least-squares fit (with intercept) on ``train`` trials, R² per voxel on the others."""
    design = np.column_stack([x, np.ones(len(x))])
    coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
    residual = y[~train] - design[~train] @ coef
    return 1 - (residual**2).sum(axis=0) / ((y[~train] - y[~train].mean(axis=0)) ** 2).sum(axis=0)


def check_recovery(features: xr.DataArray, truth: xr.Dataset, responses: np.ndarray, voxels: np.ndarray) -> None:
    """Held-out least-squares R² of each driver's voxels (columns of ``responses``) ≈ planted."""
    trials = bold5000_trials("CSI1", n_sessions=3)
    train = trials.session.to_numpy() < 3
    for model in MODELS:
        mine = truth.driver.values[voxels] == model
        if mine.sum() < 10:
            continue
        x = features.sel(model=model, image=trials.image.to_numpy()).values.astype(np.float64)
        r2 = heldout_r2(x, responses[:, mine], train)
        # p/n ≈ 33/740 costs ≈ 0.035 of held-out R²; the rest covers sampling error over voxels.
        assert abs(r2.mean() - truth.true_r2.values[voxels][mine].mean()) < 0.08, model


def test_release1_files_labels_and_truth(tmp_path: Path, features: xr.DataArray) -> None:
    truth = write_synthetic_bold5000(tmp_path, features, n_sessions=3, release=1)
    assert truth.equals(open_groundtruth(tmp_path, "CSI1", release=1))
    assert (truth.defect.values == "").all()  # ROI files have no NaN voxels
    trials = bold5000_trials("CSI1", n_sessions=3)
    mats = {tr: scipy.io.loadmat(tmp_path / "ROIs" / "CSI1" / "mat" / f"CSI1_ROIs_TR{tr}.mat") for tr in TR_FILES}
    for tr, mat in mats.items():
        assert sorted(k for k in mat if not k.startswith("__")) == sorted(ROI_NAMES)
        for roi in ROI_NAMES:
            assert mat[roi].shape == (len(trials), (truth.roi.values == roi).sum())
    for roi in ROI_NAMES:
        np.testing.assert_allclose(mats["34"][roi], (mats["3"][roi] + mats["4"][roi]) / 2, rtol=1e-6, atol=1e-6)
    names = (tmp_path / "ROIs" / "stim_lists" / "CSI01_stim_lists.txt").read_text().splitlines()
    expected = [("rep_" if p > 1 else "") + n for n, p in zip(trials.name, trials.presentation)]
    assert names == expected and sum(n.startswith("rep_") for n in names) == (trials.presentation > 1).sum() > 0

    # Columns of each ROI array are its voxels in roi_index order; planted truth holds on TR34.
    order = [np.flatnonzero(truth.roi.values == roi)[np.argsort(truth.roi_index.values[truth.roi.values == roi])] for roi in ROI_NAMES]
    voxels = np.concatenate(order)
    tr34 = np.concatenate([mats["34"][roi] for roi in ROI_NAMES], axis=1).astype(np.float64)
    check_recovery(features, truth, tr34, voxels)
    # TR1 precedes the response: no signal there.
    tr1 = np.concatenate([mats["1"][roi] for roi in ROI_NAMES], axis=1).astype(np.float64)
    signal = truth.driver.values[voxels] != ""
    x = features.sel(model="normal", image=trials.image.to_numpy()).values.astype(np.float64)
    assert heldout_r2(x, tr1[:, signal], trials.session.to_numpy() < 3).mean() < 0.02


def test_bids_runs_events_fmriprep_and_tr_average(tmp_path: Path, features: xr.DataArray) -> None:
    truth = write_synthetic_bold5000(tmp_path, features, n_sessions=3, release="bids", volume_shape=(14, 16, 14))
    trials = bold5000_trials("CSI1", n_sessions=3)
    runs = bold5000_session_runs("CSI1")[:3]
    averaged = []
    columns = ["onset", "duration", "Subj", "Sess", "Run", "Trial", "ImgName", "ImgType", "StimOn(s)", "StimOff(s)",
               "Response", "RT", "stim_file"]  # fmt: skip
    mask = nib.load(tmp_path / "derivatives" / "fmriprep" / "sub-CSI1" / "ses-01" / "func"
                    / "sub-CSI1_ses-01_task-5000scenes_run-01_bold_space-T1w_brainmask.nii.gz").get_fdata() > 0
    for session, n_runs in enumerate(runs, start=1):
        func = tmp_path / "sub-CSI1" / f"ses-{session:02d}" / "func"
        prep = tmp_path / "derivatives" / "fmriprep" / "sub-CSI1" / f"ses-{session:02d}" / "func"
        assert len(sorted(func.glob("*_task-5000scenes_run-*_bold.nii.gz"))) == n_runs
        assert len(sorted(prep.glob("*_task-5000scenes_run-*_bold_space-T1w_preproc.nii.gz"))) == n_runs
        for run in range(1, n_runs + 1):
            stem = f"sub-CSI1_ses-{session:02d}_task-5000scenes_run-{run:02d}"
            image = nib.load(prep / f"{stem}_bold_space-T1w_preproc.nii.gz")
            assert image.shape == (14, 16, 14, 194) and image.header.get_zooms() == (2.0, 2.0, 2.0, 2.0)
            run_mask = nib.load(prep / f"{stem}_bold_space-T1w_brainmask.nii.gz").get_fdata() > 0
            np.testing.assert_array_equal(run_mask, mask)
            assert b"\r\n" in (func / f"{stem}_events.tsv").read_bytes()  # CRLF, as reported for OpenNeuro
            events = pd.read_csv(func / f"{stem}_events.tsv", sep="\t")
            assert list(events.columns) == columns
            expected = trials[(trials.session == session) & (trials.run == run)]
            assert events.ImgName.tolist() == expected.name.tolist()
            assert not events.ImgName.str.startswith("rep_").any()
            assert (events.ImgType.str.startswith("rep_") == (expected.presentation > 1).to_numpy()).all()
            assert set(events.ImgType.str.replace("rep_", "")) <= {"coco", "imagenet", "scenes"}
            onset_tr = events.onset.to_numpy() / 2.0
            assert np.abs(onset_tr - np.round(onset_tr)).max() > 0.001  # not whole TRs …
            nearest = np.round(onset_tr).astype(int)
            np.testing.assert_array_equal(nearest, 3 + 5 * np.arange(len(events)))  # … but nearest to them
            data = np.asarray(image.dataobj)
            averaged.append((data[..., nearest + 2] + data[..., nearest + 3]) / 2)  # TR3 and TR4 after onset
            raw = np.asarray(nib.load(func / f"{stem}_bold.nii.gz").dataobj)
            np.testing.assert_array_equal(raw, np.roll(data, (session + run) % 2, axis=0))  # head motion
    assert (tmp_path / "sub-CSI1" / "ses-01" / "func" / "sub-CSI1_ses-01_task-localizer_run-01_bold.nii.gz").exists()
    assert (tmp_path / "dataset_description.json").exists()
    assert mask.sum() == truth.sizes["voxel"]
    volume = np.concatenate(averaged, axis=3)
    responses = volume[truth.i.values, truth.j.values, truth.k.values].T.astype(np.float64)
    check_recovery(features, truth, responses, np.arange(truth.sizes["voxel"]))
    assert truth.equals(open_groundtruth(tmp_path, "CSI1", release="bids"))


#: OpenNeuro's mask names per subject (bold5000/LAYOUTS.md): CSI2/CSI3 spell LHLO/RHLO, CSI2 RHRRSC.
SPELLINGS = {"CSI1": {}, "CSI2": {"LHLOC": "LHLO", "RHLOC": "RHLO", "RHRSC": "RHRRSC"},
             "CSI3": {"LHLOC": "LHLO", "RHLOC": "RHLO"}}  # fmt: skip


@pytest.mark.parametrize("release", ["bids", 2])
@pytest.mark.parametrize("subject", ["CSI2", "CSI3"])
def test_roi_masks_hold_the_planted_rois_on_the_data_grid_or_a_fine_one(tmp_path: Path, release, subject) -> None:
    shape = (8, 8, 6)
    images = bold5000_trials(subject, n_sessions=1).image.unique().tolist()
    feats = make_synthetic_features(["normal"], images, n_features=4)
    same = write_synthetic_bold5000(tmp_path / "same", feats, subject, n_sessions=1, volume_shape=shape, release=release)
    fine = write_synthetic_bold5000(tmp_path / "fine", feats, subject, n_sessions=1, volume_shape=shape, release=release,
                                    roi_grid="fine")  # fmt: skip
    assert same.attrs["roi_grid"] == "same" and fine.attrs["roi_grid"] == "fine"
    affine = np.array(json.loads(same.attrs["affine"]))
    ijk = np.stack([same.i.values, same.j.values, same.k.values])
    for roi in ROI_NAMES:
        name = f"sub-{subject}_mask-{SPELLINGS[subject].get(roi, roi)}.nii.gz"
        on_grid = nib.load(tmp_path / "same" / "derivatives" / "spm" / f"sub-{subject}" / name)
        assert on_grid.shape == shape and np.allclose(on_grid.affine, affine)
        planted = np.zeros(shape, dtype=bool)
        planted[tuple(ijk[:, same.roi.values == roi])] = True
        assert planted.any()
        np.testing.assert_array_equal(np.asarray(on_grid.dataobj) > 0, planted)
        # The fine grid: 1 mm voxels, a 3-voxel margin; the nearest fine voxel to each data voxel's centre
        # (numpy, not nilearn) is set exactly where the ROI was planted.
        img = nib.load(tmp_path / "fine" / "derivatives" / "spm" / f"sub-{subject}" / name)
        assert img.shape == tuple(2 * n + 6 for n in shape) and np.allclose(np.abs(np.diag(img.affine)[:3]), 1.0)
        centres = np.indices(shape).reshape(3, -1)
        position = np.linalg.solve(img.affine, affine @ np.vstack([centres, np.ones(centres.shape[1])]))[:3]
        assert (np.abs(position - np.round(position)) < 0.4).all()  # no centre halfway between fine voxels
        nearest = np.asarray(img.dataobj)[tuple(np.round(position).astype(int))] > 0
        np.testing.assert_array_equal(nearest.reshape(shape), planted)
        assert np.asarray(img.dataobj).sum() == 8 * planted.sum()


def test_roi_grid_is_refused_for_release1_and_unknown_grids(tmp_path: Path, features: xr.DataArray) -> None:
    with pytest.raises(ValueError, match="release 1 does not have"):
        write_synthetic_bold5000(tmp_path, features, n_sessions=1, release=1, roi_grid="fine")
    with pytest.raises(ValueError, match=r"unknown roi_grid 'T1w'; expected one of \['same', 'fine'\]"):
        write_synthetic_bold5000(tmp_path, features, n_sessions=1, release="bids", roi_grid="T1w")
    assert not any(tmp_path.iterdir())  # refused before writing anything
