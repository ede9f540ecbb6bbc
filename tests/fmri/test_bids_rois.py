"""BIDS (OpenNeuro ds001499) ingestion labels voxels with the ``derivatives/spm`` ROI masks.

Two kinds of trees: the datasets helper's synthetic ones, whose planted ROI voxels are the truth,
and trees written here by hand with nibabel (runs, events.tsv, fmriprep derivatives, ROI masks),
whose every voxel is known to the test. Masks on another grid are checked against a nearest-
neighbour lookup computed here with numpy, independently of nilearn's resampling.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import neurotask as nt
from neurotask.datasets import bold5000_trials, make_synthetic_features, write_synthetic_bold5000

SYNTHETIC_SHAPE = (8, 8, 6)
#: ds001499's mask names (bold5000/LAYOUTS.md): CSI2 spells LHLO, RHLO and RHRRSC.
SPELLED = {
    "CSI1": ["LHEarlyVis", "RHEarlyVis", "LHLOC", "RHLOC", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC", "RHRSC"],
    "CSI2": ["LHEarlyVis", "RHEarlyVis", "LHLO", "RHLO", "LHOPA", "RHOPA", "LHPPA", "RHPPA", "LHRSC", "RHRRSC"],
}


def ingest(root: Path, store: Path, subject: str, **options) -> xr.DataArray:
    return nt.load_bold5000(root, subject, release="bids", store=store, normalize="none", progress=False, **options)


def labeled(resp: xr.DataArray) -> dict[str, set[tuple[int, int, int]]]:
    """The voxels carrying each ROI label."""
    ijk = zip(resp["i"].values.tolist(), resp["j"].values.tolist(), resp["k"].values.tolist())
    out: dict[str, set[tuple[int, int, int]]] = {}
    for voxel, roi in zip(ijk, resp["roi"].values.tolist()):
        if roi:
            out.setdefault(roi, set()).add(voxel)
    return out


def planted(truth: xr.Dataset) -> dict[str, set[tuple[int, int, int]]]:
    """The planted voxels of each ROI."""
    out: dict[str, set[tuple[int, int, int]]] = {}
    for i, j, k, roi in zip(truth.i.values.tolist(), truth.j.values.tolist(), truth.k.values.tolist(),
                            truth.roi.values.tolist()):  # fmt: skip
        if roi:
            out.setdefault(roi, set()).add((i, j, k))
    return out


def nearest_lookup(mask: Path, affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Whether the mask voxel nearest to each data voxel's centre is set (numpy, not nilearn).

    ``ijk`` (voxel, 3) on the data grid of ``affine``; a centre outside the mask's field of view is
    outside the mask. Nearest-neighbour resampling is ambiguous where a centre lies halfway between
    mask voxels: the test grids avoid that, which this checks.
    """
    img = nib.load(mask)
    world = affine @ np.column_stack([ijk, np.ones(len(ijk))]).T
    position = np.linalg.solve(img.affine, world)[:3]
    assert (np.abs(np.abs(position - np.floor(position)) - 0.5) > 1e-3).all(), "a centre lies halfway: ambiguous"
    nearest = np.rint(position).astype(int)
    within = ((nearest >= 0) & (nearest < np.array(img.shape[:3])[:, None])).all(axis=0)
    values = np.zeros(len(ijk), dtype=bool)
    values[within] = np.asarray(img.dataobj)[tuple(nearest[:, within])] > 0
    return values


def synthetic_tree(root: Path, subject: str, roi_grid: str = "same") -> xr.Dataset:
    images = bold5000_trials(subject, n_sessions=1).image.unique().tolist()
    features = make_synthetic_features(["normal"], images, n_features=8)
    return write_synthetic_bold5000(root, features, subject, n_sessions=1, volume_shape=SYNTHETIC_SHAPE,
                                    release="bids", roi_grid=roi_grid)  # fmt: skip


# --------------------------------------------------------------------------------------------
# synthetic trees: the planted ROI voxels


@pytest.mark.parametrize("subject", ["CSI1", "CSI2"])
def test_bids_roi_labels_are_the_planted_voxels(tmp_path, subject):
    truth = synthetic_tree(tmp_path, subject)
    files = sorted((tmp_path / "derivatives" / "spm" / f"sub-{subject}").glob("*_mask-*.nii.gz"))
    assert [f.name for f in files] == sorted(f"sub-{subject}_mask-{name}.nii.gz" for name in SPELLED[subject])
    assert set(files) <= set(nt.fmri.input_files(tmp_path, subject, "bids"))
    resp = ingest(tmp_path, tmp_path / "r.zarr", subject)
    assert resp.attrs["bids_runs"] == "fmriprep-T1w"
    assert labeled(resp) == planted(truth)  # every ROI, under its canonical name, exactly its voxels
    assert set(labeled(resp)) == set(nt.fmri.ROIS)
    # Raw runs lie on the same grid here: the masks are used as they are.
    mask = next((tmp_path / "derivatives" / "fmriprep" / f"sub-{subject}").rglob("*_brainmask.nii.gz"))
    raw = ingest(tmp_path, tmp_path / "raw.zarr", subject, preprocessed=False, mask=mask)
    assert raw.attrs["bids_runs"] == "raw" and labeled(raw) == planted(truth)


def test_bids_rois_on_a_finer_grid_are_refused_then_resampled_on_request(tmp_path):
    truth = synthetic_tree(tmp_path, "CSI1", roi_grid="fine")
    mask = tmp_path / "derivatives" / "spm" / "sub-CSI1" / "sub-CSI1_mask-LHEarlyVis.nii.gz"
    fine_shape = tuple(2 * n + 2 * 3 for n in SYNTHETIC_SHAPE)
    assert nib.load(mask).shape == fine_shape
    with pytest.raises(nt.fmri.GridMismatchError) as error:
        ingest(tmp_path, tmp_path / "a.zarr", "CSI1")
    message = str(error.value)
    for part in (str(mask), "_bold_space-T1w_preproc.nii.gz", str(fine_shape), str(SYNTHETIC_SHAPE),
                 "resample_mask=True", "--resample-mask"):  # fmt: skip
        assert part in message, part
    resp = ingest(tmp_path, tmp_path / "b.zarr", "CSI1", resample_mask=True)
    ijk = np.column_stack([resp["i"].values, resp["j"].values, resp["k"].values])
    affine = nib.load(next((tmp_path / "derivatives" / "fmriprep").rglob("*_preproc.nii.gz"))).affine
    spm = tmp_path / "derivatives" / "spm" / "sub-CSI1"
    for roi in nt.fmri.ROIS:
        expected = nearest_lookup(spm / f"sub-CSI1_mask-{roi}.nii.gz", affine, ijk)
        np.testing.assert_array_equal(resp["roi"].values == roi, expected, err_msg=roi)
    assert labeled(resp) == planted(truth)  # the fine grid is built to resample back exactly


# --------------------------------------------------------------------------------------------
# trees written by hand

SHAPE = (6, 5, 4)
#: 2 mm voxels, LAS like BOLD5000's functional grids, an arbitrary origin.
AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, 2.0, 0, -8.0], [0, 0, 2.0, -6.0], [0, 0, 0, 1.0]])
BRAIN = np.zeros(SHAPE, dtype=bool)
BRAIN[1:5, 1:4, 1:3] = True  # 24 voxels
TR_S, N_VOLUMES = 2.0, 24
ONSETS = (6.0268, 16.0020, 25.9851, 36.0310)  # TR 1 = volumes 3, 8, 13, 18
EVENT_COLUMNS = "onset duration Subj Sess Run Trial ImgName ImgType StimOn(s) StimOff(s) Response RT stim_file"


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, tr: float | None = None) -> Path:
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((2.0, 2.0, 2.0, tr))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def volume_of(voxels: list[tuple[int, int, int]], dtype: type = np.uint8) -> np.ndarray:
    volume = np.zeros(SHAPE, dtype=dtype)
    for voxel in voxels:
        volume[voxel] = 1
    return volume


def write_tree(root: Path, subject: str, rois: dict[str, np.ndarray]) -> Path:
    """One session of two 5000scenes runs (4 trials each) with fmriprep 1.x derivatives, and ROI masks.

    ``rois``: mask volume by the ``<ROI>`` of its file name ``sub-CSIX_mask-<ROI>.nii.gz``.
    """
    rng = np.random.default_rng(0)
    for run in (1, 2):
        stem = f"sub-{subject}_ses-01_task-5000scenes_run-{run:02d}"
        func = root / f"sub-{subject}" / "ses-01" / "func"
        prep = root / "derivatives" / "fmriprep" / f"sub-{subject}" / "ses-01" / "func"
        series = (1000 + 10 * rng.standard_normal((*SHAPE, N_VOLUMES))).astype(np.float32)
        save(func / f"{stem}_bold.nii.gz", series, tr=TR_S)
        save(prep / f"{stem}_bold_space-T1w_preproc.nii.gz", 0.5 * series + 1.0, tr=TR_S)
        save(prep / f"{stem}_bold_space-T1w_brainmask.nii.gz", BRAIN.astype(np.uint8))
        rows = [EVENT_COLUMNS.replace(" ", "\t")]
        for t, onset in enumerate(ONSETS, start=1):
            name = f"COCO_train2014_{run:06d}{t:06d}.jpg"
            rows.append("\t".join(map(str, [onset, 1, subject[-1], 1, run, t, name, "coco", onset, onset + 1, 0, 0,
                                            name])))  # fmt: skip
        newline = "\r\n" if run == 2 else "\n"
        (func / f"{stem}_events.tsv").write_bytes((newline.join(rows) + newline).encode())
    (root / "dataset_description.json").write_text('{"Name": "BOLD5000", "BIDSVersion": "1.0.2"}')
    for name, volume in rois.items():
        save(root / "derivatives" / "spm" / f"sub-{subject}" / f"sub-{subject}_mask-{name}.nii.gz", volume)
    return root


LO = [(1, 1, 1), (2, 1, 1), (1, 2, 1)]
RSC = [(4, 3, 2), (3, 3, 2)]


@pytest.mark.parametrize("preprocessed", [True, False])
def test_handbuilt_bids_tree_with_csi2_spellings(tmp_path, preprocessed):
    root = write_tree(tmp_path / "ds001499", "CSI2", {"LHLO": volume_of(LO), "RHRRSC": volume_of(RSC, np.float32)})
    options = {} if preprocessed else {"preprocessed": False, "mask": BRAIN}
    resp = ingest(root, tmp_path / "r.zarr", "CSI2", **options)
    assert resp.sizes == {"trial": 8, "voxel": int(BRAIN.sum())}
    assert labeled(resp) == {"LHLOC": set(LO), "RHRSC": set(RSC)}
    spm = root / "derivatives" / "spm" / "sub-CSI2"
    assert {spm / "sub-CSI2_mask-LHLO.nii.gz", spm / "sub-CSI2_mask-RHRRSC.nii.gz"} <= set(
        nt.fmri.input_files(root, "CSI2", "bids", preprocessed=preprocessed)
    )


def rotated_fine_affine() -> np.ndarray:
    """A T1w-like grid: 1.2 mm voxels, turned 10° about z, another origin (no centre lies halfway)."""
    angle = np.deg2rad(10.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.2, 1.2, 1.2])
    affine[:3, 3] = [14.3, -12.1, -9.7]
    return affine


def ball(affine: np.ndarray, shape: tuple[int, int, int], centre_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """A ball in world coordinates, drawn on the grid of ``affine``."""
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:]
    inside = np.linalg.norm(world - centre_mm[:, None], axis=0) <= radius_mm
    return inside.reshape(shape).astype(np.uint8)


def test_handbuilt_roi_on_another_grid(tmp_path):
    fine, fine_shape = rotated_fine_affine(), (22, 20, 16)
    centre = AFFINE[:3, :3] @ np.array([2.0, 2.0, 1.5]) + AFFINE[:3, 3]  # between four brain voxels
    root = write_tree(tmp_path / "ds001499", "CSI1", {"LHPPA": volume_of(RSC)})
    path = save(root / "derivatives" / "spm" / "sub-CSI1" / "sub-CSI1_mask-RHPPA.nii.gz",
                ball(fine, fine_shape, centre, 2.6), affine=fine)  # fmt: skip
    with pytest.raises(nt.fmri.GridMismatchError) as error:
        ingest(root, tmp_path / "a.zarr", "CSI1")
    message = str(error.value)
    assert f"ROI mask RHPPA ({path})" in message and str(fine_shape) in message and str(SHAPE) in message
    assert np.array2string(fine, precision=3) in message and np.array2string(AFFINE, precision=3) in message
    resp = ingest(root, tmp_path / "b.zarr", "CSI1", resample_mask=True)
    ijk = np.column_stack([resp["i"].values, resp["j"].values, resp["k"].values])
    expected = nearest_lookup(path, AFFINE, ijk)
    assert expected.sum() >= 4  # the ball reaches several data voxels
    assert resp.attrs["roi_overlaps"] == 0
    np.testing.assert_array_equal(resp["roi"].values == "RHPPA", expected)
    assert labeled(resp)["LHPPA"] == set(RSC)  # on the runs' grid: used as it is


def test_handbuilt_rois_outside_the_brain_are_reported(tmp_path):
    outside = [(0, 0, 0), (5, 4, 3), (0, 2, 1)]
    mostly_inside = [(1, 1, 1), (2, 2, 2), (3, 3, 1), (0, 1, 1)]  # 3 of 4 in the brain
    far = np.eye(4)
    far[:3, 3] = [200.0, 0.0, 0.0]  # another space: beside the runs' field of view
    root = write_tree(tmp_path / "ds001499", "CSI1", {
        "LHPPA": volume_of(outside), "RHPPA": volume_of([]), "LHOPA": volume_of(mostly_inside),
    })  # fmt: skip
    save(root / "derivatives" / "spm" / "sub-CSI1" / "sub-CSI1_mask-RHOPA.nii.gz", np.ones((4, 4, 4), np.uint8), far)
    with pytest.warns(UserWarning, match="ROI masks empty or lying mostly outside the brain mask") as caught:
        resp = ingest(root, tmp_path / "r.zarr", "CSI1", resample_mask=True)
    message = " ".join(str(w.message) for w in caught)
    assert "LHPPA has 0 of its 3 voxels inside (sub-CSI1_mask-LHPPA.nii.gz)" in message
    assert "RHPPA has no voxel on the grid (sub-CSI1_mask-RHPPA.nii.gz)" in message
    assert "RHOPA has no voxel on the grid (sub-CSI1_mask-RHOPA.nii.gz)" in message  # resampled to nothing
    assert "LHOPA" not in message
    assert labeled(resp) == {"LHOPA": {v for v in mostly_inside if BRAIN[v]}}


def test_handbuilt_unknown_roi_names_are_kept_and_reported(tmp_path):
    root = write_tree(tmp_path / "ds001499", "CSI1", {"lhppa": volume_of(LO), "LHFFA": volume_of(RSC)})
    with pytest.warns(UserWarning, match=r"\['sub-CSI1_mask-LHFFA.nii.gz'\] name none of BOLD5000's ROIs"):
        resp = ingest(root, tmp_path / "r.zarr", "CSI1")
    assert labeled(resp) == {"LHPPA": set(LO), "LHFFA": set(RSC)}  # case-insensitive names; others as spelled


def test_handbuilt_two_masks_of_one_roi_are_refused(tmp_path):
    root = write_tree(tmp_path / "ds001499", "CSI3", {"LHLO": volume_of(LO), "LHLOC": volume_of(RSC)})
    match = r"two masks of ROI LHLOC: \['sub-CSI3_mask-LHLO.nii.gz', 'sub-CSI3_mask-LHLOC.nii.gz'\]"
    with pytest.raises(ValueError, match=match):
        nt.fmri.input_files(root, "CSI3", "bids")
    with pytest.raises(ValueError, match=match):
        ingest(root, tmp_path / "r.zarr", "CSI3")
