"""Release-1 ROI files and BIDS runs on tiny trees whose every value is known."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from fmri_trees import AFFINE, BIDS_ONSET_VOLUMES, TPR, trial_names, write_bids, write_release1

import neurotask as nt
from neurotask.fmri.bold5000 import ROIS


@pytest.mark.parametrize(("tr", "files"), [((3, 4), ("TR3", "TR4")), (34, ("TR34",)), (2, ("TR2",))])
def test_release1_values_rois_and_tr_choice(tmp_path, tr, files):
    truth = write_release1(tmp_path / "t")
    resp = nt.load_bold5000(
        tmp_path / "t", "CSI2", release=1, tr=tr, store=tmp_path / "r.zarr", normalize="none",
        session_trials=[TPR, TPR], progress=False,
    )
    expected = np.concatenate(
        [np.mean([truth["data"][f][roi] for f in files], axis=0) for roi in ROIS], axis=1
    )
    # the .mat holds float64; the store float32
    np.testing.assert_allclose(resp.values, expected, rtol=1e-6, atol=1e-6)
    assert resp["roi"].values.tolist() == [roi for roi in ROIS for _ in range(truth["sizes"][roi])]
    assert (resp["i"] == -1).all() and (resp["j"] == -1).all() and (resp["k"] == -1).all()
    assert json.loads(resp.attrs["tr"]) == list(files)
    # rep_ stripped from the image ids, repeats labeled instead
    assert resp["image"].values.tolist() == [n.rsplit(".", 1)[0] for n in truth["names"]]
    names = truth["names"]
    np.testing.assert_array_equal(resp["repeat"], [names.count(n) > 1 for n in names])
    np.testing.assert_array_equal(resp["session"], [1] * TPR + [2] * TPR)
    assert json.loads(resp.attrs["dropped_voxels"])["outside_mask"] == 0


def test_release1_without_session_boundaries_is_one_session(tmp_path):
    write_release1(tmp_path / "t")
    resp = nt.load_bold5000(tmp_path / "t", "CSI2", release=1, store=tmp_path / "r.zarr", progress=False)
    assert (resp["session"] == 1).all() and resp.attrs["session_boundaries"] == "none"
    np.testing.assert_array_equal(resp["run"], [1] * TPR + [2] * TPR)


def test_bids_trials_average_chosen_trs_and_skip_localizer(tmp_path):
    truth = write_bids(tmp_path / "t")
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.uint8), AFFINE), mask)
    resp = nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "r.zarr", mask=mask,
                            normalize="none", progress=False)
    rows = []
    for (ses, run), (values, onsets) in sorted(truth["runs"].items()):
        for start in BIDS_ONSET_VOLUMES:  # nearest volume to onsets 0.0268, 6.002, 11.985, 20.031 s
            rows.append(values[..., [start + 2, start + 3]].mean(axis=-1).reshape(-1, order="C"))
    expected = np.array(rows)  # every voxel is finite and variable: all are kept, in C order
    np.testing.assert_allclose(resp.values, expected, rtol=1e-6, atol=1e-6)
    assert resp.sizes["trial"] == 16  # two localizer runs skipped
    np.testing.assert_array_equal(resp["session"], [1] * 8 + [2] * 8)
    np.testing.assert_array_equal(resp["run"], ([1] * 4 + [2] * 4) * 2)
    # the repeat is found from the plain ImgName (rep_ only in ImgType); CRLF runs read as LF ones
    assert resp["image"].values[12] == "img110" and resp["repeat"].values[[0, 12]].all()
    assert resp["repeat"].values.sum() == 2 and resp["presentation"].values[12] == 2
    assert resp["image"].values.tolist() == [n.removesuffix(".jpg") for n in truth["names"]]
    assert json.loads(resp.attrs["tr"]) == [3, 4] and resp.attrs["bids_runs"] == "raw"


@pytest.mark.filterwarnings("ignore:Computed an empty mask")
def test_bids_tr_out_of_range_is_an_error(tmp_path):
    write_bids(tmp_path / "t")
    with pytest.raises(ValueError, match="volumes"):
        nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", tr=(15,), store=tmp_path / "r.zarr", progress=False)
    with pytest.raises(ValueError, match="holds no voxel"):  # a derived mask on a 4x3x2 grid erodes away
        nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "r2.zarr", progress=False)


def test_unknown_release_and_subject(tmp_path):
    with pytest.raises(ValueError, match="release"):
        nt.load_bold5000(tmp_path, "CSI1", release=3, store=tmp_path / "r.zarr")
    with pytest.raises(ValueError, match="subject"):
        nt.load_bold5000(tmp_path, "CSI7", store=tmp_path / "r.zarr")


def test_trial_names_helper_has_repeats():
    names = trial_names(74)
    assert len(set(names)) < len(names)


def test_release1_hdf5_roi_files(tmp_path):
    import h5py
    truth = write_release1(tmp_path / "t")
    folder = tmp_path / "t" / "ROIs" / "CSI2" / "mat"
    for path in folder.glob("*.mat"):
        path.unlink()
    # MATLAB v7.3 / HDF5 stores each (trials, voxels) matrix transposed
    with h5py.File(folder / "CSI2_ROIs_TR34.h5", "w") as f:
        for roi, values in truth["data"]["TR34"].items():
            f[roi if roi != "LHLOC" else "LHLO"] = values.T
    resp = nt.load_bold5000(tmp_path / "t", "CSI2", release=1, tr=34, store=tmp_path / "r.zarr", normalize="none",
                            progress=False)
    expected = np.concatenate([truth["data"]["TR34"][roi] for roi in ROIS], axis=1)
    np.testing.assert_allclose(resp.values, expected, rtol=1e-6, atol=1e-6)
    assert "LHLOC" in resp["roi"].values.tolist()


@pytest.mark.parametrize("names", ["1.x", "new"])
def test_bids_reads_fmriprep_runs_by_default_with_their_brain_masks(tmp_path, names):
    truth = write_bids(tmp_path / "t", fmriprep=names)
    resp = nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "r.zarr", normalize="none",
                            progress=False)
    assert resp.attrs["bids_runs"] == "fmriprep-T1w"
    assert resp.attrs["mask_source"] == "tree:intersection of 4 run masks"
    keep = np.ones((4, 3, 2), bool)
    keep[0, 0, 0] = False  # outside session 1 run 1's brain mask
    rows = [truth["fmriprep"][key][..., [s + 2, s + 3]].mean(axis=-1)[keep] for key in sorted(truth["fmriprep"])
            for s in BIDS_ONSET_VOLUMES]
    np.testing.assert_allclose(resp.values, np.array(rows), rtol=1e-6)
    assert json.loads(resp.attrs["dropped_voxels"])["outside_mask"] == 1
    files = nt.fmri.input_files(tmp_path / "t", "CSI3", "bids")
    assert len(files) == 12 and all("fmriprep" in f.parts for f in files if f.name.endswith(".nii.gz"))
    assert nt.fmri.available_sessions(tmp_path / "t", "CSI3", "bids") == [1, 2]


def test_bids_raw_runs_on_request_and_errors_for_incomplete_fmriprep(tmp_path):
    truth = write_bids(tmp_path / "t", fmriprep="1.x")
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.uint8), AFFINE), mask)
    raw = nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "r.zarr", mask=mask,
                           normalize="none", preprocessed=False, progress=False)
    assert raw.attrs["bids_runs"] == "raw"
    values, _ = truth["runs"][(1, 1)]
    np.testing.assert_allclose(raw.values[0], values[..., [2, 3]].mean(axis=-1).reshape(-1), rtol=1e-6)
    prep = tmp_path / "t" / "derivatives" / "fmriprep" / "sub-CSI3" / "ses-02" / "func"
    for path in prep.glob("*_run-02_*"):
        path.unlink()
    with pytest.raises(ValueError, match=r"lacks the preprocessed runs of 1 raw runs \(ses-02 run-02\).*preprocessed=False"):
        nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "x.zarr", progress=False)
    shutil.rmtree(tmp_path / "t" / "derivatives")  # no fmriprep: the raw runs, by default too
    again = nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "y.zarr", mask=mask,
                             normalize="none", progress=False)
    assert again.attrs["bids_runs"] == "raw"
    np.testing.assert_array_equal(again.values, raw.values)
    events = tmp_path / "t" / "sub-CSI3" / "ses-01" / "func" / "sub-CSI3_ses-01_task-5000scenes_run-01_events.tsv"
    events.unlink()
    with pytest.raises(FileNotFoundError, match="the events of .*run-01_bold.nii.gz are missing"):
        nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "z.zarr", mask=mask, progress=False)
    with pytest.raises(FileNotFoundError, match=r"no BIDS runs .* nor preprocessed runs .*holding sub-CSI2/"):
        nt.load_bold5000(tmp_path / "t", "CSI2", release="bids", store=tmp_path / "w.zarr", progress=False)


def test_release1_sessions_from_the_real_bold5000_sessions(tmp_path):
    write_release1(tmp_path / "t", n_trials=370 + 333)  # CSI2's first two sessions: 10 and 9 runs
    resp = nt.load_bold5000(tmp_path / "t", "CSI2", release=1, store=tmp_path / "r.zarr", progress=False)
    assert resp.attrs["session_boundaries"] == "BOLD5000 sessions"
    assert [int((resp["session"] == s).sum()) for s in (1, 2)] == [370, 333] and int(resp["run"].max()) == 10
    assert nt.fmri.available_sessions(tmp_path / "t", "CSI2", 1) == [1, 2]
    assert nt.fmri.available_sessions(tmp_path / "t", "CSI2", 1, session_trials=[370, 111, 222]) == [1, 2, 3]
    assert nt.fmri.available_sessions(tmp_path / "t", "CSI2", 1, session_trials=[]) == [1, 2]  # a config's empty list
    assert [f.name for f in nt.fmri.input_files(tmp_path / "t", "CSI2", 1)] == [
        "CSI2_ROIs_TR3.mat", "CSI2_ROIs_TR4.mat", "CSI02_stim_lists.txt"]


@pytest.mark.parametrize(("zoom", "unit", "warns"), [(2000.0, "msec", False), (1.5, "sec", True), (2.0, "unknown", False)])
def test_bids_header_tr_in_its_time_unit_and_a_warning_when_not_bold5000s(tmp_path, zoom, unit, warns):
    import warnings

    truth = write_bids(tmp_path / "t")
    for bold in (tmp_path / "t").rglob("*5000scenes*_bold.nii.gz"):
        img = nib.load(bold)
        data = np.asarray(img.dataobj)
        img = nib.Nifti1Image(data, AFFINE)
        img.header.set_zooms((2.0, 2.0, 2.0, zoom))
        img.header.set_xyzt_units("mm", unit)
        nib.save(img, bold)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.uint8), AFFINE), mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resp = nt.load_bold5000(tmp_path / "t", "CSI3", release="bids", store=tmp_path / "r.zarr", mask=mask,
                                normalize="none", progress=False)
    told = [str(w.message) for w in caught if "BOLD5000's is 2 s" in str(w.message)]
    assert bool(told) == warns, told
    seconds = 1.5 if warns else 2.0
    assert json.loads(resp.attrs["repetition_time"]) == [seconds]
    values, onsets = truth["runs"][(1, 1)]
    first = int(np.floor(onsets[1] / seconds + 0.5))  # the second trial: volumes by the header's TR
    np.testing.assert_allclose(resp.values[1], values[..., [first + 2, first + 3]].mean(axis=-1).reshape(-1),
                               rtol=1e-6, atol=1e-6)
