"""Release 2 as users have it on disk: flat, a folder above, older trees, published names, ROI masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fmri_trees import AFFINE, TPR, write_release2

import neurotask as nt
from neurotask.datasets.synthetic import bold5000_trial_order
from neurotask.fmri import SESSION_RUNS, available_sessions, input_files, read_layout

SHARED = Path("/work/shared/bold5000/sessions.tsv")


def kept(tree) -> tuple[np.ndarray, ...]:
    return np.nonzero(tree.brain & ~tree.nonfinite & ~tree.constant)


def raw_values(tree) -> np.ndarray:
    i, j, k = kept(tree)
    return np.concatenate(tree.betas, axis=3)[i, j, k].T


def load(root: Path, store: Path, **options):
    return nt.load_bold5000(root, "CSI1", store=store, normalize="none", progress=False, **options)


@pytest.mark.parametrize("folder", ["", "a", "a/b/c", "derivatives/GLMsingle/CSI1"])
def test_flat_files_found_in_root_or_up_to_three_levels_below(tmp_path, folder):
    tree = write_release2(tmp_path / "root", folder=folder)
    resp = load(tmp_path / "root", tmp_path / "r.zarr")
    np.testing.assert_array_equal(resp.values, raw_values(tree))
    assert resp.attrs["folder"] == str(tmp_path / "root" / folder).rstrip("/")
    assert resp.attrs["mask_source"] == "tree:CSI1_brainmask.nii.gz"


def test_four_levels_down_is_not_searched_and_the_error_says_where_it_looked(tmp_path):
    write_release2(tmp_path / "root", folder="a/b/c/d")
    with pytest.raises(FileNotFoundError) as error:
        load(tmp_path / "root", tmp_path / "r.zarr")
    message = str(error.value)
    assert str(tmp_path / "root") in message and "3 levels" in message and "['a/']" in message


def test_trial_order_from_the_stimulus_archive(tmp_path):
    lists = "BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI1"
    tree = write_release2(tmp_path / "root", folder="betas", names_folder=lists)
    resp = load(tmp_path / "root", tmp_path / "r.zarr")
    assert resp["image"].values.tolist() == [Path(n).stem for n in tree.names]
    assert input_files(tmp_path / "root")[2] == tmp_path / "root" / lists / "CSI1_imgnames.txt"
    (tmp_path / "root" / lists / "CSI1_imgnames.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"CSI1_imgnames.txt is neither beside the betas in .*betas"):
        load(tmp_path / "root", tmp_path / "r2.zarr")


@pytest.mark.parametrize(("written", "betas"), [
    ("TYBEB-FITHRF", "TYPEB"), ("TYPEB-FITHRF", "TYPEB"), ("TYPEA-ASSUMEHRF", "TYPEA"),
    ("TYPEC-FITHRF-GLMDENOISE", "TYPEC"), ("TYPED-FITHRF-GLMDENOISE-RR", "TYPED-FITHRF-GLMDENOISE-RR"),
])  # fmt: skip
def test_published_beta_names(tmp_path, written, betas):
    tree = write_release2(tmp_path / "root", betas_name=written)
    resp = load(tmp_path / "root", tmp_path / "r.zarr", betas=betas)
    np.testing.assert_array_equal(resp.values, raw_values(tree))
    assert resp.attrs["betas"] == written[:5].replace("TYBEB", "TYPEB")


def test_two_candidate_trees_are_an_error_listing_both(tmp_path):
    write_release2(tmp_path / "root", folder="download")
    write_release2(tmp_path / "root", folder="derivatives/GLMsingle/CSI1")
    with pytest.raises(ValueError) as error:
        load(tmp_path / "root", tmp_path / "r.zarr")
    message = str(error.value)
    assert str(tmp_path / "root" / "download") in message
    assert str(tmp_path / "root" / "derivatives" / "GLMsingle" / "CSI1") in message and "(2 sessions)" in message
    # each copy on its own is fine
    assert load(tmp_path / "root" / "download", tmp_path / "r.zarr").sizes["trial"] == 3 * TPR


def test_a_missing_session_is_named(tmp_path):
    real = bold5000_trial_order("CSI1")
    write_release2(tmp_path / "root", sessions=(10,), shape=(3, 3, 2), names=real[:370])
    (tmp_path / "root" / "CSI1_imgnames.txt").write_text("\n".join(real[:740]) + "\n")
    with pytest.raises(ValueError, match=r"imgnames.txt lists 740 trials but betas for ses-02 are missing"):
        load(tmp_path / "root", tmp_path / "r.zarr")


def test_a_gap_in_the_sessions_is_named(tmp_path):
    write_release2(tmp_path / "root", sessions=(1, 1, 1))
    (tmp_path / "root" / "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-02.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"lists 111 trials but betas for ses-02 are missing .*ses-01, ses-03"):
        load(tmp_path / "root", tmp_path / "r.zarr")
    assert available_sessions(tmp_path / "root", "CSI1") == [1, 3]


def test_openneuro_roi_masks_with_aliases(tmp_path):
    shape = (5, 4, 3)
    lo, rsc = np.zeros(shape, bool), np.zeros(shape, bool)
    lo[1, 2, :] = True
    rsc[3, 3, :] = True
    tree = write_release2(tmp_path / "t", rois={"LHLO": lo, "RHRRSC": rsc})
    assert (tmp_path / "t" / "derivatives" / "spm" / "sub-CSI1" / "sub-CSI1_mask-LHLO.nii.gz").exists()
    resp = load(tmp_path / "t", tmp_path / "r.zarr")
    i, j, k = kept(tree)
    assert resp["roi"].values.tolist() == np.where(lo[i, j, k], "LHLOC", np.where(rsc[i, j, k], "RHRSC", "")).tolist()
    write_release2(tmp_path / "t", rois={"LHLO": lo}, roi_folder="rois")  # a second copy elsewhere
    with pytest.raises(ValueError, match=r"two or more folders .* ROI masks"):
        load(tmp_path / "t", tmp_path / "r2.zarr")


def test_available_sessions_and_input_files_read_no_nifti(tmp_path, monkeypatch):
    tree = write_release2(tmp_path / "t", sessions=(1, 2, 1), rois={"LHPPA": np.ones((5, 4, 3), bool)})
    layout_files = read_layout(tree.root, "CSI1").files
    monkeypatch.setattr(nib, "load", lambda *a, **k: pytest.fail("a NIfTI file was opened"))
    assert available_sessions(tree.root, "CSI1") == [1, 2, 3]
    files = input_files(tree.root, "sub-CSI1")
    assert files == layout_files
    root = tree.root
    assert [f.relative_to(root).as_posix() for f in files] == [
        *(f"CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-0{s}.nii.gz" for s in (1, 2, 3)),
        "CSI1_imgnames.txt", "CSI1_brainmask.nii.gz", "derivatives/spm/sub-CSI1/sub-CSI1_mask-LHPPA.nii.gz",
    ]


def test_session_runs_are_the_real_ones():
    for subject, runs in SESSION_RUNS.items():
        assert TPR * sum(runs) == len(bold5000_trial_order(subject)) and set(runs) == {9, 10}
    table_file = SHARED if SHARED.exists() else Path(__file__).parent / "data" / "sessions.tsv"  # a copy for CI clones
    with table_file.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    table = {s: tuple(int(r["runs"]) for r in rows if r["subject"] == s) for s in SESSION_RUNS}
    assert table == SESSION_RUNS


# ------------------------------------------------------------------------------------------------
# mask choice


def test_mask_finite_ignores_a_misaligned_brain_mask(tmp_path):
    tree = write_release2(tmp_path / "t")
    shifted = np.roll(tree.brain, 1, axis=0) & ~tree.brain  # a shipped mask that misses the betas
    nib.save(nib.Nifti1Image(shifted.astype(np.float32), AFFINE), tmp_path / "t" / "CSI1_brainmask.nii.gz")
    with pytest.raises(ValueError) as error:
        load(tree.root, tmp_path / "a.zarr")
    message = str(error.value)
    assert f"no voxel of CSI1 survives the voxel screens: {int(shifted.sum())} candidates (mask tree:" in message
    assert f"nonfinite in session: {int(shifted.sum())}" in message and "mask='finite'" in message
    assert not (tmp_path / "a.zarr.staging").exists()
    resp = load(tree.root, tmp_path / "b.zarr", mask="finite")
    np.testing.assert_array_equal(np.stack([resp["i"], resp["j"], resp["k"]]), np.stack(kept(tree)))
    np.testing.assert_array_equal(resp.values, raw_values(tree))
    assert resp.attrs["mask_source"].startswith("finite:CSI1_GLMbetas-TYPED")
    dropped = json.loads(resp.attrs["dropped_voxels"])
    assert dropped == {"outside_mask": 0, "nonfinite_in_session": int((~tree.brain).sum()) + 2, "constant_in_session": 1}


def test_mask_as_a_path_or_a_boolean_array(tmp_path):
    tree = write_release2(tmp_path / "t")
    smaller = tree.brain.copy()
    smaller[:, :, 0] = False
    path = tmp_path / "smaller.nii.gz"
    nib.save(nib.Nifti1Image(smaller.astype(np.uint8), AFFINE), path)
    by_path = load(tree.root, tmp_path / "p.zarr", mask=path)
    by_array = load(tree.root, tmp_path / "a.zarr", mask=smaller)
    by_numbers = load(tree.root, tmp_path / "n.zarr", mask=smaller.astype(np.float32) * 0.5)
    expected = np.nonzero(smaller & ~tree.nonfinite & ~tree.constant)
    for resp in (by_path, by_array, by_numbers):
        np.testing.assert_array_equal(np.stack([resp["i"], resp["j"], resp["k"]]), np.stack(expected))
    assert by_path.attrs["mask_source"].startswith("given:") and by_array.attrs["mask_source"].startswith("given:array:")
    with pytest.raises(ValueError, match=r"shape \(5, 4\); expected the betas' grid shape \(5, 4, 3\)"):
        load(tree.root, tmp_path / "x.zarr", mask=smaller[:, :, 0])
    with pytest.raises(FileNotFoundError, match="'finite'"):
        load(tree.root, tmp_path / "y.zarr", mask=str(tmp_path / "nothing.nii.gz"))
