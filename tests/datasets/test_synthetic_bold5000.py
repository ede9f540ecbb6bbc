"""Synthetic release-2 (GLMsingle) trees, flat as downloaded: files, shapes, real sessions, NaNs, planted truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from neurotask.datasets import (
    ROI_FILE_NAMES,
    ROI_NAMES,
    bold5000_session_runs,
    bold5000_trial_order,
    bold5000_trials,
    groundtruth_path,
    make_synthetic_features,
    open_groundtruth,
    write_synthetic_bold5000,
)
from neurotask.datasets.synthetic_planted import plant

MODELS = ["normal", "class_object", "jigsaw"]
N_FEATURES = 32


def betas_path(root: Path, subject: str, session: int) -> Path:
    return root / f"{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{session:02d}.nii.gz"


def features_for(subject: str, n_sessions: int | None, seed: int = 0) -> xr.DataArray:
    images = bold5000_trials(subject, n_sessions=n_sessions).image.unique().tolist()
    return make_synthetic_features(MODELS, images, n_features=N_FEATURES, seed=seed)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.DataArray, xr.Dataset]:
    root = tmp_path_factory.mktemp("bold5000")
    features = features_for("CSI1", 3)
    truth = write_synthetic_bold5000(root, features, "CSI1", n_sessions=3, seed=0)
    return root, features, truth


def load_betas(root: Path, subject: str, n_sessions: int) -> np.ndarray:
    return np.concatenate([np.asarray(nib.load(betas_path(root, subject, s)).dataobj) for s in range(1, n_sessions + 1)], axis=3)


def test_files_names_and_shapes(tree: tuple[Path, xr.DataArray, xr.Dataset]) -> None:
    root, _, truth = tree
    folder = root  # the figshare files lie flat in one folder
    runs = bold5000_session_runs("CSI1")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-19.0, -23.0, -19.0]
    for session in (1, 2, 3):
        image = nib.load(betas_path(root, "CSI1", session))
        assert image.shape == (20, 24, 20, 37 * runs[session - 1])
        assert image.get_data_dtype() == np.float32
        assert b"percent signal change" in image.header["descrip"].item()
        np.testing.assert_array_equal(image.affine, affine)
        assert image.header.get_zooms()[:3] == (2.0, 2.0, 2.0)
    assert not betas_path(root, "CSI1", 4).exists()
    mask = nib.load(folder / "CSI1_brainmask.nii.gz")
    assert mask.shape == (20, 24, 20)
    np.testing.assert_array_equal(mask.affine, affine)
    assert set(np.unique(mask.get_fdata())) == {0.0, 1.0}
    spm = root / "derivatives" / "spm" / "sub-CSI1"  # OpenNeuro's ROI masks
    for roi in ROI_NAMES:
        roi_image = nib.load(spm / f"sub-CSI1_mask-{ROI_FILE_NAMES['CSI1'][roi]}.nii.gz")
        assert roi_image.shape == (20, 24, 20)
        assert roi_image.get_fdata().sum() == (truth.roi.values == roi).sum() > 0
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == sorted(
        [f"CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{s:02d}.nii.gz" for s in (1, 2, 3)]
        + ["CSI1_brainmask.nii.gz", "CSI1_imgnames.txt", "CSI1_groundtruth.nc"]
    )
    # the ground truth file is plain NetCDF-3 that xarray reads without extra dependencies
    on_disk = xr.open_dataset(groundtruth_path(root, "CSI1", 2), engine="scipy")
    assert on_disk.sizes["voxel"] == mask.get_fdata().sum() == truth.sizes["voxel"]
    xr.testing.assert_equal(open_groundtruth(root, "CSI1"), truth)
    assert set(json.loads(truth.attrs["files"])) >= {"CSI1_imgnames.txt", "derivatives/spm/sub-CSI1/sub-CSI1_mask-LHPPA.nii.gz"}


def test_real_trial_order(tree: tuple[Path, xr.DataArray, xr.Dataset]) -> None:
    root, _, _ = tree
    names = (root / "CSI1_imgnames.txt").read_text().splitlines()
    n = 37 * sum(bold5000_session_runs("CSI1")[:3])
    assert names == bold5000_trial_order("CSI1")[:n]
    assert sum(nib.load(betas_path(root, "CSI1", s)).shape[3] for s in (1, 2, 3)) == len(names) == 1110


def test_nans_where_documented(tree: tuple[Path, xr.DataArray, xr.Dataset]) -> None:
    root, _, truth = tree
    sessions = [np.asarray(nib.load(betas_path(root, "CSI1", s)).dataobj) for s in (1, 2, 3)]
    brain = nib.load(root / "CSI1_brainmask.nii.gz").get_fdata() > 0
    ijk = (truth.i.values, truth.j.values, truth.k.values)
    defect, defect_session = truth.defect.values, truth.defect_session.values
    assert {"nan", "nan_session", "constant_session"} <= set(defect)
    for s, betas in enumerate(sessions, start=1):
        assert np.isnan(betas[~brain]).all()
        inside = betas[ijk]  # (voxel, trial)
        nan_here = (defect == "nan") | ((defect == "nan_session") & (defect_session == s))
        assert np.isnan(inside[nan_here]).all()
        assert np.isfinite(inside[~nan_here]).all()
        constant_here = (defect == "constant_session") & (defect_session == s)
        assert (np.ptp(inside[constant_here], axis=1) == 0).all()
        assert (np.ptp(inside[~nan_here & ~constant_here], axis=1) > 0).all()


def heldout_r2(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Least-squares fit (with intercept) on ``train`` trials, R² per voxel on the others."""
    design = np.column_stack([x, np.ones(len(x))])
    coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
    test = ~train
    residual = y[test] - design[test] @ coef
    return 1 - (residual**2).sum(axis=0) / ((y[test] - y[test].mean(axis=0)) ** 2).sum(axis=0)


def test_planted_truth_recovered_by_least_squares(tree: tuple[Path, xr.DataArray, xr.Dataset]) -> None:
    root, features, truth = tree
    trials = bold5000_trials("CSI1", n_sessions=3)
    betas = load_betas(root, "CSI1", 3)
    train = trials.session.to_numpy() < 3
    clean = truth.defect.values == ""
    for model in MODELS:
        voxels = (truth.driver.values == model) & clean
        y = betas[truth.i.values[voxels], truth.j.values[voxels], truth.k.values[voxels]].T
        x = features.sel(model=model, image=trials.image.to_numpy()).values.astype(np.float64)
        r2 = heldout_r2(x, y, train)
        true_r2 = truth.true_r2.values[voxels]
        assert 0.1 - 1e-6 <= true_r2.min() and true_r2.max() <= 0.6 + 1e-6
        # A fit of 33 parameters on 740 trials loses about p/n·(1−R²) ≈ 0.035 of held-out R²;
        # the rest of the 0.07 tolerance covers sampling error of the mean over ~200 voxels.
        assert abs(r2.mean() - true_r2.mean()) < 0.07, model
        assert np.corrcoef(r2, true_r2)[0, 1] > 0.8, model
    noise = (truth.driver.values == "") & clean
    y = betas[truth.i.values[noise], truth.j.values[noise], truth.k.values[noise]].T
    r2 = heldout_r2(features.sel(model="normal", image=trials.image.to_numpy()).values.astype(np.float64), y, train)
    assert abs(r2.mean()) < 0.08  # pure noise: expected ≈ −p/n ≈ −0.045
    assert np.quantile(r2, 0.99) < 0.1


def test_repeated_images_share_signal(tree: tuple[Path, xr.DataArray, xr.Dataset]) -> None:
    root, features, truth = tree
    brain = plant(features, "CSI1", n_sessions=3, seed=0)
    trials = brain.trials
    first = {img: n for n, (img, p) in enumerate(zip(trials.image, trials.presentation)) if p == 1}
    pairs = np.array([(first[img], n) for n, (img, p) in enumerate(zip(trials.image, trials.presentation)) if p == 2])
    signal = brain.signal(np.arange(len(trials)))
    np.testing.assert_array_equal(signal[:, pairs[:, 0]], signal[:, pairs[:, 1]])
    # In the files, presentations of one image correlate by the voxel's reliability = true R².
    betas = load_betas(root, "CSI1", 3)
    voxels = (truth.driver.values != "") & (truth.defect.values == "")
    y = betas[truth.i.values[voxels], truth.j.values[voxels], truth.k.values[voxels]]
    a, b = y[:, pairs[:, 0]], y[:, pairs[:, 1]]
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    # ~23 image pairs: each voxel's correlation is noisy (SE ≈ 0.2) but voxels average it out.
    assert abs(r.mean() - truth.true_r2.values[voxels].mean()) < 0.1


def test_deterministic_per_seed(tmp_path: Path) -> None:
    features = features_for("CSI1", 1)
    a = write_synthetic_bold5000(tmp_path / "a", features, n_sessions=1, seed=5)
    b = write_synthetic_bold5000(tmp_path / "b", features, n_sessions=1, seed=5)
    c = write_synthetic_bold5000(tmp_path / "c", features, n_sessions=1, seed=6)
    xr.testing.assert_equal(a.drop_attrs(), b.drop_attrs())
    assert betas_path(tmp_path / "a", "CSI1", 1).read_bytes() == betas_path(tmp_path / "b", "CSI1", 1).read_bytes()
    va = np.asarray(nib.load(betas_path(tmp_path / "a", "CSI1", 1)).dataobj)
    vc = np.asarray(nib.load(betas_path(tmp_path / "c", "CSI1", 1)).dataobj)
    assert va.shape == vc.shape and not np.array_equal(np.nan_to_num(va), np.nan_to_num(vc))
    assert not np.array_equal(a.driver.values, c.driver.values)


def test_csi4_all_nine_sessions(tmp_path: Path) -> None:
    features = features_for("CSI4", None)
    truth = write_synthetic_bold5000(tmp_path, features, "CSI4", n_sessions=None, volume_shape=(12, 14, 12))
    names = (tmp_path / "CSI4_imgnames.txt").read_text().splitlines()
    assert names == bold5000_trial_order("CSI4") and len(names) == 3108
    counts = [nib.load(betas_path(tmp_path, "CSI4", s)).shape[3] for s in range(1, 10)]
    assert counts == [37 * r for r in bold5000_session_runs("CSI4")] and sum(counts) == 3108
    assert not betas_path(tmp_path, "CSI4", 10).exists()
    assert truth.attrs["n_sessions"] == 9 and truth.attrs["subject"] == "CSI4"


def test_truncation_nonbinary_mask_and_model_subset(tmp_path: Path) -> None:
    features = features_for("CSI1", 1)
    truth = write_synthetic_bold5000(tmp_path, features, n_sessions=1, n_trials=50, models=["jigsaw"], nonbinary_mask=True)
    assert nib.load(betas_path(tmp_path, "CSI1", 1)).shape[3] == 50
    assert set(truth.driver.values) == {"", "jigsaw"}
    mask = nib.load(tmp_path / "CSI1_brainmask.nii.gz").get_fdata()
    inside = mask[truth.i.values, truth.j.values, truth.k.values]
    assert (inside > 0.5).all() and (inside <= 1).all() and len(np.unique(inside)) > 2
    assert (mask > 0).sum() == truth.sizes["voxel"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    features = make_synthetic_features(MODELS, 10, n_features=4)
    with pytest.raises(ValueError, match=r"features lack \d+ of the \d+ images"):
        write_synthetic_bold5000(tmp_path, features, n_sessions=1)
    with pytest.raises(TypeError, match="features must be an xarray.DataArray"):
        write_synthetic_bold5000(tmp_path, features.values, n_sessions=1)  # type: ignore[arg-type]
    full = features_for("CSI1", 1)
    with pytest.raises(ValueError, match="n_sessions must be in 1..15"):
        write_synthetic_bold5000(tmp_path, full, n_sessions=16)
    with pytest.raises(ValueError, match=r"models \['depth'\] are not in features"):
        write_synthetic_bold5000(tmp_path, full, n_sessions=1, models=["depth"])
    with pytest.raises(ValueError, match="unknown release"):
        write_synthetic_bold5000(tmp_path, full, n_sessions=1, release=3)
    with pytest.raises(ValueError, match="snr must be"):
        write_synthetic_bold5000(tmp_path, full, n_sessions=1, snr=(1.0, 0.5))


def test_defaults_are_a_ridge_test_bed(tmp_path: Path) -> None:
    """With more features than a least-squares fit can take, ridge still recovers the planted R²."""
    from sklearn.linear_model import RidgeCV

    trials = bold5000_trials("CSI1", n_sessions=3)
    features = make_synthetic_features(["normal", "jigsaw"], trials.image.unique().tolist(), n_features=256, seed=2)
    truth = write_synthetic_bold5000(tmp_path, features, seed=2)
    betas = load_betas(tmp_path, "CSI1", 3)
    train, test = trials.session.to_numpy() < 3, trials.session.to_numpy() == 3
    for model in ("normal", "jigsaw", ""):
        voxels = (truth.driver.values == model) & (truth.defect.values == "")
        y = betas[truth.i.values[voxels], truth.j.values[voxels], truth.k.values[voxels]].T
        x = features.sel(model=model or "normal", image=trials.image.to_numpy()).values.astype(np.float64)
        ridge = RidgeCV(alphas=np.logspace(-2, 7, 19), alpha_per_target=True).fit(x[train], y[train])
        residual = y[test] - ridge.predict(x[test])
        r2 = 1 - (residual**2).sum(axis=0) / ((y[test] - y[test].mean(axis=0)) ** 2).sum(axis=0)
        # Ridge shrinkage and 740 training trials cost ~0.03 of held-out R² (measured 0.166 vs 0.201).
        assert abs(r2.mean() - truth.true_r2.values[voxels].mean()) < 0.07, model or "noise"
        if model:
            assert np.corrcoef(r2, truth.true_r2.values[voxels])[0, 1] > 0.85


def test_lazy_features_give_the_same_tree(tmp_path: Path) -> None:
    features = features_for("CSI1", 1)
    eager = write_synthetic_bold5000(tmp_path / "eager", features, n_sessions=1, n_trials=74)
    lazy = write_synthetic_bold5000(tmp_path / "lazy", features.chunk({"image": 50}), n_sessions=1, n_trials=74)
    xr.testing.assert_equal(eager.drop_attrs(), lazy.drop_attrs())
    assert betas_path(tmp_path / "eager", "CSI1", 1).read_bytes() == betas_path(tmp_path / "lazy", "CSI1", 1).read_bytes()


def test_real_sessions_aliases_and_groundtruth_path(tmp_path: Path) -> None:
    """CSI2's first four real sessions (10, 9, 10, 10 runs), its OpenNeuro ROI spellings, the truth beside the betas."""
    features = features_for("CSI2", 4)
    truth = write_synthetic_bold5000(tmp_path, features, "CSI2", n_sessions=4, volume_shape=(8, 8, 6))
    counts = [nib.load(betas_path(tmp_path, "CSI2", s)).shape[3] for s in (1, 2, 3, 4)]
    assert counts == [370, 333, 370, 370]  # bold5000/sessions.tsv
    spm = tmp_path / "derivatives" / "spm" / "sub-CSI2"
    names = sorted(p.name.split("_mask-")[1].split(".")[0] for p in spm.glob("sub-CSI2_mask-*.nii.gz"))
    assert names == sorted(["LHEarlyVis", "RHEarlyVis", "LHLO", "RHLO", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC",
                            "RHRRSC"])  # fmt: skip
    assert groundtruth_path(tmp_path, "CSI2") == tmp_path / "CSI2_groundtruth.nc"
    xr.testing.assert_equal(open_groundtruth(tmp_path, "CSI2"), truth)
    # a tree written by earlier versions keeps its truth under derivatives/GLMsingle/<SUBJ>/
    earlier = tmp_path / "earlier" / "derivatives" / "GLMsingle" / "CSI2"
    earlier.mkdir(parents=True)
    (tmp_path / "CSI2_groundtruth.nc").rename(earlier / "CSI2_groundtruth.nc")
    assert groundtruth_path(tmp_path / "earlier", "CSI2") == earlier / "CSI2_groundtruth.nc"
    xr.testing.assert_equal(open_groundtruth(tmp_path / "earlier", "CSI2"), truth)


def test_demo_call_cuts_the_real_session(tmp_path: Path) -> None:
    """What the demo writes: one session cut to n_trials, flat; the loader reads it back."""
    from neurotask.fmri import available_sessions, input_files

    features = features_for("CSI1", 1)
    write_synthetic_bold5000(tmp_path, features, "CSI1", n_sessions=1, n_trials=74, snr=(1.0, 4.0))
    assert nib.load(betas_path(tmp_path, "CSI1", 1)).shape[3] == 74
    assert available_sessions(tmp_path, "CSI1") == [1]
    assert input_files(tmp_path, "CSI1")[:3] == [betas_path(tmp_path, "CSI1", 1), tmp_path / "CSI1_imgnames.txt",
                                                 tmp_path / "CSI1_brainmask.nii.gz"]  # fmt: skip
