"""Ingestion of the datasets helper's synthetic BOLD5000 trees (contract A), checked against their ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import neurotask as nt
from neurotask.datasets import (
    bold5000_session_runs,
    bold5000_trials,
    make_synthetic_features,
    write_synthetic_bold5000,
)

SHAPE = (8, 8, 6)
REAL_ORDERS = Path("/work/shared/bold5000")


def real_stems(subject: str) -> list[str]:
    """The real trial order, from the shared folder when present, else the copy shipped in the package."""
    path = REAL_ORDERS / f"sub-{subject}_imgnames.txt"
    if not path.exists():
        path = Path(nt.datasets.__file__).parent / "data" / f"sub-{subject}_imgnames.txt"
    return [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]


def features_for(subject: str, n_sessions: int | None):
    images = bold5000_trials(subject, n_sessions=n_sessions).image.unique().tolist()
    return make_synthetic_features(["normal", "class_object"], images, n_features=8)


def kept_truth(truth):
    """Truth voxels without defects, in the loader's voxel order (C order of i, j, k)."""
    clean = truth.isel(voxel=np.flatnonzero(truth.defect.values == ""))
    return clean.isel(voxel=np.lexsort((clean.k.values, clean.j.values, clean.i.values)))


@pytest.fixture(scope="module")
def csi1(tmp_path_factory):
    root = tmp_path_factory.mktemp("csi1")
    truth = write_synthetic_bold5000(root, features_for("CSI1", None), "CSI1", n_sessions=None, volume_shape=SHAPE)
    resp = nt.load_bold5000(root, "CSI1", store=root / "r.zarr", progress=False)
    return truth, resp


def test_real_csi1_order_gives_identical_image_ids(csi1):
    _, resp = csi1
    assert resp.sizes["trial"] == 5254
    assert resp["image"].values.tolist() == real_stems("CSI1")


def test_sessions_runs_voxels_and_dropped_counts_follow_the_ground_truth(csi1):
    truth, resp = csi1
    runs = bold5000_session_runs("CSI1")
    sessions = resp["session"].values
    assert [int((sessions == s).sum()) for s in range(1, 16)] == [37 * n for n in runs]
    assert [int(resp["run"].values[sessions == s].max()) for s in range(1, 16)] == runs
    clean = kept_truth(truth)
    np.testing.assert_array_equal(np.stack([resp["i"], resp["j"], resp["k"]]), np.stack([clean.i, clean.j, clean.k]))
    assert resp["roi"].values.tolist() == clean.roi.values.tolist()  # LHLO/RHRRSC files mapped to canonical names
    defect = truth.defect.values
    dropped = json.loads(resp.attrs["dropped_voxels"])
    assert dropped["nonfinite_in_session"] == int(np.isin(defect, ["nan", "nan_session"]).sum())
    assert dropped["constant_in_session"] == int((defect == "constant_session").sum())
    assert dropped["outside_mask"] == int(np.prod(SHAPE)) - truth.sizes["voxel"]
    assert np.isfinite(resp.values).all()


def test_noise_ceiling_separates_driven_from_noise_voxels(csi1):
    truth, resp = csi1
    ceiling = nt.fmri.noise_ceiling(resp).values
    driven = kept_truth(truth).driver.values != ""
    assert ceiling[driven].mean() > ceiling[~driven].mean() + 0.2


def test_release1_tree(tmp_path):
    truth = write_synthetic_bold5000(tmp_path, features_for("CSI2", 2), "CSI2", n_sessions=2, volume_shape=SHAPE, release=1)
    runs = bold5000_session_runs("CSI2")[:2]
    resp = nt.load_bold5000(tmp_path, "CSI2", release=1, store=tmp_path / "r.zarr", session_trials=[37 * n for n in runs],
                            progress=False)
    assert resp["image"].values.tolist() == real_stems("CSI2")[: 37 * sum(runs)]
    np.testing.assert_array_equal(np.unique(resp["session"]), [1, 2])
    rois, counts = np.unique(truth.roi.values[truth.roi.values != ""], return_counts=True)
    got = dict(zip(*np.unique(resp["roi"].values, return_counts=True)))
    assert got == dict(zip(rois.tolist(), counts.tolist()))


def test_bids_tree_reads_fmriprep_by_default_and_raw_on_request(tmp_path):
    truth = write_synthetic_bold5000(tmp_path, features_for("CSI3", 2), "CSI3", n_sessions=2, volume_shape=SHAPE, release="bids")
    resp = nt.load_bold5000(tmp_path, "CSI3", release="bids", store=tmp_path / "r.zarr", normalize="none", progress=False)
    trials = bold5000_trials("CSI3", n_sessions=2)
    n_runs = trials.groupby(["session", "run"]).ngroups
    assert resp.attrs["bids_runs"] == "fmriprep-T1w"
    assert resp.attrs["mask_source"] == f"tree:intersection of {n_runs} run masks"  # fmriprep's run brain masks
    assert resp["image"].values.tolist() == trials.image.tolist()
    np.testing.assert_array_equal(resp["session"], trials.session)
    np.testing.assert_array_equal(resp["run"], trials.run)
    clean = kept_truth(truth)
    np.testing.assert_array_equal(np.stack([resp["i"], resp["j"], resp["k"]]), np.stack([clean.i, clean.j, clean.k]))
    # Raw runs: the same series, but runs with (session + run) odd are moved one voxel along i.
    mask = tmp_path / "derivatives" / "fmriprep" / "sub-CSI3" / "ses-01" / "func"
    mask = next(mask.glob("*_run-01_bold_space-T1w_brainmask.nii.gz"))
    raw = nt.load_bold5000(tmp_path, "CSI3", release="bids", store=tmp_path / "raw.zarr", normalize="none", mask=mask,
                           preprocessed=False, progress=False)
    assert raw.attrs["bids_runs"] == "raw" and raw.sizes["voxel"] == resp.sizes["voxel"]
    first = (trials.session.to_numpy() == 1) & (trials.run.to_numpy() == 1)
    second = (trials.session.to_numpy() == 1) & (trials.run.to_numpy() == 2)
    np.testing.assert_array_equal(raw.values[first], resp.values[first])
    assert not np.allclose(raw.values[second], resp.values[second])
