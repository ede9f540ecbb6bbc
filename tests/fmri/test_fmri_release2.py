"""Release-2 ingestion on tiny trees whose every value is known."""

from __future__ import annotations

import json
from pathlib import Path
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import scipy.stats
from nilearn.masking import compute_epi_mask
from fmri_trees import AFFINE, TPR, write_release2

import neurotask as nt
from neurotask.datasets.synthetic import bold5000_trial_order
from neurotask.fmri import GridMismatchError, ingest
from neurotask.fmri.bold5000 import read_volumes
from neurotask.stores import StoreError


def kept_voxels(tree, by_run: bool = False) -> tuple[np.ndarray, ...]:
    keep = tree.brain & ~tree.nonfinite & ~tree.constant
    if by_run:
        keep &= ~tree.run_constant
    return np.nonzero(keep)


def raw(tree) -> np.ndarray:
    return np.concatenate(tree.betas, axis=3)


def test_values_labels_and_dropped_counts(release2_tree, tmp_path):
    tree = release2_tree
    resp = nt.load_bold5000(tree.root, "CSI1", store=tmp_path / "r.zarr", normalize="none", progress=False)
    i, j, k = kept_voxels(tree)
    assert resp.dims == ("trial", "voxel") and resp.dtype == np.float32
    np.testing.assert_array_equal(resp["i"], i)
    np.testing.assert_array_equal(resp["j"], j)
    np.testing.assert_array_equal(resp["k"], k)
    # raw values pass through untouched (float32 in, float32 out: exact)
    np.testing.assert_array_equal(resp.values, raw(tree)[i, j, k].T)
    assert resp["image"].values.tolist() == [Path(n).stem for n in tree.names]
    np.testing.assert_array_equal(resp["session"], [1] * 2 * TPR + [2] * TPR)
    np.testing.assert_array_equal(resp["run"], [1] * TPR + [2] * TPR + [1] * TPR)
    dropped = json.loads(resp.attrs["dropped_voxels"])
    assert dropped == {
        "outside_mask": int((~tree.brain).sum()),  # mask values 0.7 are binarized as inside
        "nonfinite_in_session": 2,
        "constant_in_session": 1,
    }
    assert resp.attrs["subject"] == "CSI1" and resp.attrs["release"] == "2"
    np.testing.assert_allclose(json.loads(resp.attrs["affine"]), AFFINE)
    assert resp.attrs["volume_shape"] == list(tree.brain.shape)
    assert resp.attrs["normalization"] == "none" and resp.attrs["betas"] == "TYPED"
    assert not (tmp_path / "r.zarr.staging").exists()


@pytest.mark.parametrize("normalize", ["session", "run"])
def test_zscore_matches_scipy(release2_tree, tmp_path, normalize):
    tree = release2_tree
    resp = nt.load_bold5000(tree.root, "CSI1", store=tmp_path / "r.zarr", normalize=normalize, progress=False)
    by_run = normalize == "run"
    i, j, k = kept_voxels(tree, by_run=by_run)
    values = raw(tree)[i, j, k].T.astype(np.float64)
    groups = resp["session"].values * 10 + (resp["run"].values if by_run else 0)
    expected = np.empty_like(values)
    for g in np.unique(groups):
        expected[groups == g] = scipy.stats.zscore(values[groups == g], axis=0)
    # float32 storage of a float64 z-score: relative error ≤ 2^-24 of |z| ≲ 4
    np.testing.assert_allclose(resp.values, expected, rtol=1e-6, atol=1e-6)
    dropped = json.loads(resp.attrs["dropped_voxels"])
    assert dropped.get("constant_in_run", 0) == (2 if by_run else 0)
    assert resp.attrs["normalization"] == normalize


def test_repeats_are_kept_and_labeled(release2_tree, tmp_path):
    resp = nt.load_bold5000(release2_tree.root, "CSI1", store=tmp_path / "r.zarr", progress=False)
    images = resp["image"].values.tolist()
    seen: dict[str, int] = {}
    presentation = [seen.__setitem__(x, seen.get(x, 0) + 1) or seen[x] for x in images]
    np.testing.assert_array_equal(resp["presentation"], presentation)
    np.testing.assert_array_equal(resp["repeat"], [images.count(x) > 1 for x in images])
    assert resp.sizes["trial"] == 3 * TPR and resp["repeat"].values.sum() == 4 * 3


def test_roi_labels_map_bold5000_names(tmp_path):
    shape = (5, 4, 3)
    lo = np.zeros(shape, bool)
    lo[1, 2, :] = True
    rsc = np.zeros(shape, bool)
    rsc[3, 3, :] = True
    tree = write_release2(tmp_path / "t", rois={"LHLO": lo, "RHRRSC": rsc, "lhppa": np.zeros(shape, bool)})
    with pytest.warns(UserWarning, match=r"LHPPA has no voxel on the grid \(sub-CSI1_mask-lhppa.nii.gz\)"):
        resp = nt.load_bold5000(tree.root, "CSI1", store=tmp_path / "r.zarr", progress=False)
    i, j, k = kept_voxels(tree)
    expected = np.where(lo[i, j, k], "LHLOC", np.where(rsc[i, j, k], "RHRSC", ""))
    assert resp["roi"].values.tolist() == expected.tolist()


def test_grid_mismatch_error_and_opt_in_resampling(release2_tree, tmp_path):
    tree = release2_tree
    # the same brain on a 1 mm grid (twice as many voxels per axis), shifted by half a coarse voxel
    fine = np.repeat(np.repeat(np.repeat(tree.brain, 2, 0), 2, 1), 2, 2).astype(np.float32)
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_affine[:3, 3] = -0.5
    path = tmp_path / "mask_1mm.nii.gz"
    nib.save(nib.Nifti1Image(fine, fine_affine), path)
    with pytest.raises(GridMismatchError) as error:
        nt.load_bold5000(tree.root, store=tmp_path / "a.zarr", mask=path, progress=False)
    message = str(error.value)
    assert "(10, 8, 6)" in message and "(5, 4, 3)" in message and "resample_mask=True" in message
    resp = nt.load_bold5000(tree.root, store=tmp_path / "b.zarr", mask=path, resample_mask=True, progress=False)
    i, j, k = kept_voxels(tree)
    np.testing.assert_array_equal(resp["i"], i)
    np.testing.assert_array_equal(resp["k"], k)


def test_mask_derived_when_absent(tmp_path):
    shape = (14, 14, 12)
    tree = write_release2(tmp_path / "t", sessions=(1,), shape=shape, mask=False)
    resp = nt.load_bold5000(tree.root, store=tmp_path / "r.zarr", progress=False)
    assert resp.attrs["mask_source"].startswith("derived:compute_epi_mask")
    mean_abs = np.nanmean(np.abs(np.where(np.isfinite(tree.betas[0]), tree.betas[0], 0)), axis=3)
    derived = compute_epi_mask(nib.Nifti1Image(mean_abs.astype(np.float32), AFFINE)).get_fdata() > 0
    expected = np.nonzero(derived & ~tree.nonfinite & ~tree.constant)
    np.testing.assert_array_equal(np.stack([resp["i"], resp["j"], resp["k"]]), np.stack(expected))
    assert tree.brain[expected].all() and expected[0].size > 100


def test_resumes_after_interruption_without_rereading(release2_tree, tmp_path, monkeypatch):
    tree = release2_tree
    store = tmp_path / "r.zarr"
    original_write = ingest.RegionWriter.write
    calls = {"write": 0, "read": 0}

    def failing_write(self, data, region):
        calls["write"] += 1
        if calls["write"] == 4:  # stage session 1 (2 runs) and session 2 (1 run), then die on the first voxel chunk
            raise KeyboardInterrupt
        original_write(self, data, region)

    monkeypatch.setattr(ingest.RegionWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        nt.load_bold5000(tree.root, store=store, voxel_chunk=8, progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        nt.open_responses(store)
    monkeypatch.setattr(ingest.RegionWriter, "write", original_write)
    monkeypatch.setattr(
        "neurotask.fmri.bold5000.read_volumes", lambda *a, **k: calls.__setitem__("read", calls["read"] + 1)
    )
    resumed = nt.load_bold5000(tree.root, store=store, voxel_chunk=8, progress=False)
    assert calls["read"] == 0  # every session came from the staging store
    monkeypatch.undo()
    fresh = nt.load_bold5000(tree.root, store=tmp_path / "fresh.zarr", voxel_chunk=8, progress=False)
    np.testing.assert_array_equal(resumed.values, fresh.values)
    # complete: reopened as is; other parameters on the same path: refused
    assert nt.load_bold5000(tree.root, store=store, voxel_chunk=8, progress=False).shape == fresh.shape
    with pytest.raises(StoreError, match="other parameters"):
        nt.load_bold5000(tree.root, store=store, voxel_chunk=8, normalize="run", progress=False)
    replaced = nt.load_bold5000(tree.root, store=store, voxel_chunk=8, normalize="run", overwrite=True, progress=False)
    assert replaced.attrs["normalization"] == "run" and nt.open_responses(store).attrs["normalization"] == "run"


def test_csi4_shape_and_real_order(tmp_path):
    names = bold5000_trial_order("CSI4")
    runs = [10, 10, 10, 9, 9, 9, 9, 9, 9]
    tree = write_release2(tmp_path / "t", subject="CSI4", sessions=tuple(runs), shape=(4, 3, 2), names=names)
    resp = nt.load_bold5000(tree.root, "sub-CSI4", store=tmp_path / "r.zarr", progress=False)
    assert resp.sizes["trial"] == 3108
    np.testing.assert_array_equal(np.unique(resp["session"]), np.arange(1, 10))
    per_session = [int((resp["session"] == s).sum()) for s in range(1, 10)]
    assert per_session == [r * TPR for r in runs]
    assert int(resp["run"].max()) == 10 and int(resp["run"].min()) == 1
    assert resp["image"].values.tolist() == [Path(n).stem for n in names]


def test_unknown_betas_and_missing_files(release2_tree, tmp_path):
    with pytest.raises(ValueError, match="TYPEA"):
        nt.load_bold5000(release2_tree.root, betas="TYPEZ", store=tmp_path / "r.zarr", progress=False)
    with pytest.raises(FileNotFoundError, match=r"TYPEA-ASSUMEHRF.*other versions: TYPED in .*betas= one of \['TYPED'\]"):
        nt.load_bold5000(release2_tree.root, betas="TYPEA", store=tmp_path / "r.zarr", progress=False)


def test_read_volumes_matches_nibabel_with_scaling(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(-300, 300, (3, 4, 5, 6)).astype(np.int16)
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_slope_inter(0.5, 2.0)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    expected = nib.load(path).get_fdata()
    voxels = np.array([0, 7, 59, 13])
    ijk = np.unravel_index(voxels, (3, 4, 5), order="F")
    got = read_volumes(path, voxels, volumes=[4, 1, 4])
    np.testing.assert_allclose(got, expected[ijk][:, [4, 1, 4]].T, rtol=1e-6)


def test_read_volumes_holds_the_output_and_one_volume_not_a_copy_per_volume(tmp_path):
    # structural, not timed: numpy reports its buffers to tracemalloc; a reader that kept every
    # volume's voxels and then copied them into the output would peak at twice the output
    rng = np.random.default_rng(4)
    data = rng.standard_normal((20, 20, 20, 200)).astype(np.float32)  # output 6.4 MB
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    voxels = np.arange(20 * 20 * 20)
    tracemalloc.start()
    got = read_volumes(path, voxels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(got, data.reshape(-1, 200, order="F").T)
    one_volume = voxels.size * 4
    assert peak < got.nbytes + 16 * one_volume + 2**20


def test_store_none_writes_a_temporary_store(release2_tree):
    resp = nt.load_bold5000(release2_tree.root, progress=False)
    assert resp.sizes["trial"] == 3 * TPR


def test_mask_given_as_an_image_overrides_the_tree_mask(release2_tree, tmp_path):
    tree = release2_tree
    smaller = tree.brain.copy()
    smaller[:, :, 0] = False
    resp = nt.load_bold5000(tree.root, store=tmp_path / "r.zarr", mask=nib.Nifti1Image(smaller.astype(np.uint8), AFFINE),
                            progress=False)
    assert resp.attrs["mask_source"] == "given:image"
    assert (resp["k"] > 0).all() and resp.sizes["voxel"] == int((smaller & ~tree.nonfinite & ~tree.constant).sum())
