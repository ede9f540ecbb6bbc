"""Acceptance audit of BOLD5000 ingestion on trees built by hand in the real layouts.

Every tree here is written with nibabel, numpy, scipy.io and h5py only, following
``bold5000/LAYOUTS.md`` and the real projects' file names (figshare release 2, release-1 ROI files
and their ``h5/`` copies, OpenNeuro ds001499 with fmriprep 1.x derivatives); nothing from
``neurotask.datasets`` or ``fmri_trees`` writes them. Expected values are computed here, from the
arrays written, with scipy (``scipy.stats.zscore`` per session, Pearson r for the noise ceiling).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import scipy.stats
import xarray as xr
from typer.testing import CliRunner

import neurotask as nt
from neurotask.cli import app

SHARED = Path(__file__).resolve().parents[3] / "shared" / "bold5000"
#: Copies of the real metadata for a checkout without ``shared/`` beside it (a CI clone): the trial
#: orders the package ships, and ``sessions.tsv`` (runs and trials per session) copied from shared/.
COPIES = (Path(nt.__file__).parent / "datasets" / "data", Path(__file__).parent / "data")
SHAPE = (6, 7, 5)
#: 2 mm voxels, LAS like the BOLD5000 betas, an arbitrary origin.
AFFINE = np.array([[-2.0, 0, 0, 72.0], [0, 2.0, 0, -104.0], [0, 0, 2.0, -62.0], [0, 0, 0, 1.0]])
TPR = 37
BRAIN = np.zeros(SHAPE, dtype=bool)
BRAIN[1:5, 1:6, 1:4] = True  # 60 voxels
NAN_VOXEL, CONSTANT_VOXEL = (2, 2, 2), (3, 3, 2)
TYPED = "TYPED-FITHRF-GLMDENOISE-RR"
PUBLISHED = {"TYPEA": "TYPEA-ASSUMEHRF", "TYPEB": "TYPEB-FITHRF", "TYPEC": "TYPEC-FITHRF-GLMDENOISE", "TYPED": TYPED}


def shared_file(name: str) -> Path:
    """A real BOLD5000 metadata file: from shared/ when beside the repository, else our copy of it."""
    for folder in (SHARED, *COPIES):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"the real BOLD5000 metadata {name} is neither in {SHARED} nor in {COPIES}")


def real_order(subject: str) -> list[str]:
    text = shared_file(f"sub-{subject}_imgnames.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def real_sessions(subject: str) -> list[tuple[int, int]]:
    """(runs, trials) per session from sessions.tsv."""
    with shared_file("sessions.tsv").open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["subject"] == subject]
    return [(int(r["runs"]), int(r["trials"])) for r in sorted(rows, key=lambda r: int(r["session"]))]


def hand_names(n: int) -> list[str]:
    """``n`` real CSI1 stimulus names; image 0 is shown 3 times, image 1 twice."""
    names = list(dict.fromkeys(real_order("CSI1")))[:n]
    names[n // 2], names[n - 1], names[n - 2] = names[0], names[0], names[1]
    return names


def stems(names: list[str]) -> list[str]:
    return [Path(n).stem for n in names]


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, tr: float | None = None) -> Path:
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((*np.abs(np.diag(affine)[:3]), tr))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


@dataclass
class Release2:
    folder: Path
    names: list[str]
    betas: dict[str, list[np.ndarray]]  # by version key: per session (x, y, z, trials) float32

    def raw(self, key: str = "TYPED") -> np.ndarray:
        return np.concatenate(self.betas[key], axis=3)


def write_release2(
    folder: Path, subject: str = "CSI1", sizes: tuple[int, ...] = (2 * TPR, TPR), *, names: list[str] | None = None,
    versions: dict[str, str] | None = None, names_beside: bool = True, seed: int = 0,
) -> Release2:
    """Figshare release-2 files flat in ``folder``: float32 % signal change, NaN outside the brain."""
    rng = np.random.default_rng(seed)
    names = hand_names(sum(sizes)) if names is None else names
    versions = {"TYPED": TYPED} if versions is None else versions
    offset = rng.uniform(-1, 1, SHAPE)
    betas: dict[str, list[np.ndarray]] = {}
    for v, (key, spelling) in enumerate(versions.items()):
        for s, n in enumerate(sizes, start=1):
            data = (offset[..., None] + 2.0 * rng.standard_normal((*SHAPE, n)) + 10 * v).astype(np.float32)
            data[~BRAIN] = np.nan
            if s == len(sizes):
                data[NAN_VOXEL + (n - 1,)] = np.nan  # NaN in one trial of the last session
            if s == 1:
                data[CONSTANT_VOXEL] = 0.0
            save(folder / f"{subject}_GLMbetas-{spelling}_ses-{s:02d}.nii.gz", data)
            betas.setdefault(key, []).append(data)
    save(folder / f"{subject}_brainmask.nii.gz", BRAIN.astype(np.int16))
    save(folder / f"{subject}_SPMResids_allsess_TR1.nii.gz", np.zeros((*SHAPE, 3), dtype=np.float32))
    if names_beside:
        (folder / f"{subject}_imgnames.txt").write_text("\n".join(names) + "\n")
    return Release2(folder, names, betas)


def kept(*, extra_outside: np.ndarray | None = None) -> np.ndarray:
    keep = BRAIN.copy()
    keep[NAN_VOXEL] = keep[CONSTANT_VOXEL] = False
    if extra_outside is not None:
        keep &= ~extra_outside
    return keep


def voxel_set(resp: xr.DataArray) -> set[tuple[int, int, int]]:
    return set(zip(resp["i"].values.tolist(), resp["j"].values.tolist(), resp["k"].values.tolist()))


def mask_set(mask: np.ndarray) -> set[tuple[int, int, int]]:
    return set(zip(*(axis.tolist() for axis in np.nonzero(mask))))


def expected_zscores(raw: np.ndarray, resp: xr.DataArray, sizes: list[int]) -> np.ndarray:
    """scipy.stats.zscore per session of the raw series of each stored voxel."""
    series = raw[resp["i"].values, resp["j"].values, resp["k"].values].T.astype(np.float64)  # (trial, voxel)
    bounds = np.cumsum([0, *sizes])
    return np.concatenate([scipy.stats.zscore(series[a:b], axis=0) for a, b in zip(bounds[:-1], bounds[1:])])


def ingest(root: Path, store: Path, **options) -> xr.DataArray:
    return nt.load_bold5000(root, store=store, progress=False, **options)


# --------------------------------------------------------------------------------------------
# release 2 as downloaded


def test_flat_release2_values_labels_runs_repeats_and_counts(tmp_path):
    tree = write_release2(tmp_path / "BOLD5000_GLMsingle")
    write_release2(tmp_path / "BOLD5000_GLMsingle", "CSI2", (TPR,), seed=1)  # another subject in the same folder
    resp = ingest(tree.folder, tmp_path / "r.zarr")
    assert resp.dims == ("trial", "voxel") and resp.dtype == np.float32
    assert voxel_set(resp) == mask_set(kept())
    np.testing.assert_allclose(resp.values, expected_zscores(tree.raw(), resp, [2 * TPR, TPR]), atol=2e-6)
    assert resp["image"].values.tolist() == stems(tree.names)
    assert resp["session"].values.tolist() == [1] * 2 * TPR + [2] * TPR
    assert resp["run"].values.tolist() == [1] * TPR + [2] * TPR + [1] * TPR
    first, second = stems(tree.names[:2])
    np.testing.assert_array_equal(resp["repeat"].values, np.isin(resp["image"].values, [first, second]))
    assert resp["presentation"].values[resp["image"].values == first].tolist() == [1, 2, 3]
    assert json.loads(resp.attrs["dropped_voxels"]) == {
        "outside_mask": int((~BRAIN).sum()), "nonfinite_in_session": 1, "constant_in_session": 1,
    }
    assert resp.attrs["mask_source"] == "tree:CSI1_brainmask.nii.gz" and resp.attrs["betas"] == "TYPED"
    np.testing.assert_allclose(json.loads(resp.attrs["affine"]), AFFINE)
    assert resp.attrs["volume_shape"] == list(SHAPE)


@pytest.mark.parametrize("below", ["", "a", "a/b", "a/b/c", "derivatives/GLMsingle/CSI1"])
def test_release2_root_is_the_folder_or_up_to_three_levels_above(tmp_path, below):
    tree = write_release2(tmp_path / "data" / below)
    resp = ingest(tmp_path / "data", tmp_path / "r.zarr")
    assert resp.attrs["folder"] == str(tree.folder) and resp.sizes["trial"] == 3 * TPR


def test_release2_four_levels_above_is_refused_with_a_hint(tmp_path):
    write_release2(tmp_path / "data" / "a" / "b" / "c" / "d")
    with pytest.raises(FileNotFoundError, match="3 levels"):
        ingest(tmp_path / "data", tmp_path / "r.zarr")


@pytest.mark.parametrize(
    ("betas", "key"),
    [("TYPEA", "TYPEA"), ("TYPEB", "TYPEB"), ("TYBEB-FITHRF", "TYPEB"), ("TYPEC", "TYPEC"),
     ("TYPED-FITHRF-GLMDENOISE-RR", "TYPED")],
)
@pytest.mark.parametrize("spelling", ["TYPEB-FITHRF", "TYBEB-FITHRF"])
def test_release2_published_beta_names(tmp_path, betas, key, spelling):
    tree = write_release2(tmp_path / "t", versions={**PUBLISHED, "TYPEB": spelling})
    resp = ingest(tree.folder, tmp_path / "r.zarr", betas=betas, normalize="none")
    raw = tree.raw(key)
    np.testing.assert_array_equal(resp.values, raw[resp["i"].values, resp["j"].values, resp["k"].values].T)
    assert resp.attrs["betas"] == key and resp.attrs["betas_file"] == PUBLISHED[key]


def test_release2_trial_order_from_the_stimulus_archive(tmp_path):
    tree = write_release2(tmp_path / "downloads" / "BOLD5000_GLMsingle", names_beside=False)
    lists = tmp_path / "downloads" / "BOLD5000_Stimuli" / "Stimuli_Presentation_Lists" / "CSI1"
    lists.mkdir(parents=True)
    (lists / "CSI1_imgnames.txt").write_text("\r\n".join(tree.names) + "\r\n")
    resp = ingest(tmp_path / "downloads", tmp_path / "r.zarr")
    assert resp["image"].values.tolist() == stems(tree.names)
    assert lists / "CSI1_imgnames.txt" in nt.fmri.input_files(tmp_path / "downloads", "CSI1")


def roi_volumes() -> dict[str, np.ndarray]:
    """Ten disjoint ROI masks inside the brain, by canonical name."""
    rois, inside = {}, np.argwhere(BRAIN)
    for n, name in enumerate(nt.fmri.ROIS):
        volume = np.zeros(SHAPE, dtype=np.uint8)
        for i, j, k in inside[3 * n : 3 * n + 3]:
            volume[i, j, k] = 1
        rois[name] = volume
    return rois


@pytest.mark.parametrize("where", ["beside", "openneuro"])
def test_release2_openneuro_roi_masks_with_csi2_spellings(tmp_path, where):
    tree = write_release2(tmp_path / "data" / "BOLD5000_GLMsingle", "CSI2")
    base = tree.folder if where == "beside" else tmp_path / "data" / "ds001499"
    spelled = {"LHLOC": "LHLO", "RHLOC": "RHLO", "RHRSC": "RHRRSC"}
    for name, volume in roi_volumes().items():
        save(base / "derivatives" / "spm" / "sub-CSI2" / f"sub-CSI2_mask-{spelled.get(name, name)}.nii.gz", volume)
    resp = ingest(tmp_path / "data", tmp_path / "r.zarr", subject="CSI2")
    expected = np.full(SHAPE, "", dtype=object)
    for name, volume in roi_volumes().items():
        expected[volume > 0] = name
    got = resp["roi"].values
    assert got.tolist() == expected[resp["i"].values, resp["j"].values, resp["k"].values].tolist()
    assert {"LHLOC", "RHLOC", "RHRSC"} <= set(got)


def test_release2_two_candidate_trees_are_listed(tmp_path):
    one = write_release2(tmp_path / "data" / "figshare").folder
    two = write_release2(tmp_path / "data" / "copy" / "BOLD5000").folder
    with pytest.raises(ValueError, match="two or more folders") as error:
        ingest(tmp_path / "data", tmp_path / "r.zarr")
    assert str(one) in str(error.value) and str(two) in str(error.value)


@pytest.mark.parametrize("missing", [2, 3])
def test_release2_missing_session_is_named(tmp_path, missing):
    sizes = [trials for _, trials in real_sessions("CSI1")[:3]]
    names = real_order("CSI1")[: sum(sizes)]
    tree = write_release2(tmp_path / "t", sizes=tuple(sizes), names=names)
    next(tree.folder.glob(f"*_ses-{missing:02d}.nii.gz")).unlink()
    with pytest.raises(ValueError, match=f"betas for ses-{missing:02d} are missing"):
        ingest(tree.folder, tmp_path / "r.zarr")


def test_cli_ingest_on_a_flat_release2_folder(tmp_path):
    tree = write_release2(tmp_path / "BOLD5000_GLMsingle")
    result = CliRunner().invoke(app, ["ingest", str(tree.folder), "--out", str(tmp_path / "r.zarr")])
    assert result.exit_code == 0, result.output
    assert f"{3 * TPR} trials x {int(kept().sum())} voxels" in result.output
    assert nt.open_responses(tmp_path / "r.zarr")["image"].values.tolist() == stems(tree.names)


# --------------------------------------------------------------------------------------------
# masks


def mask_options(tmp_path: Path) -> dict[str, tuple[object, np.ndarray, str]]:
    """mask= value, the candidate voxels it selects, and its recorded source prefix."""
    subset = BRAIN.copy()
    subset[1] = False
    path = save(tmp_path / "my_mask.nii.gz", subset.astype(np.float32) * 0.5)  # non-binary: binarized (> 0)
    return {
        "default": (None, BRAIN, "tree:"), "finite": ("finite", BRAIN, "finite:"),  # the betas are NaN outside
        "path": (path, subset, "given:"), "array": (subset, subset, "given:array:"),
    }


@pytest.mark.parametrize("choice", ["default", "finite", "path", "array"])
def test_release2_mask_choices_and_counts(tmp_path, choice):
    tree = write_release2(tmp_path / "t")
    mask, candidates, source = mask_options(tmp_path)[choice]
    resp = ingest(tree.folder, tmp_path / "r.zarr", mask=mask)
    assert voxel_set(resp) == mask_set(candidates & kept())
    assert resp.attrs["mask_source"].startswith(source)
    dropped = json.loads(resp.attrs["dropped_voxels"])
    outside = int((~BRAIN).sum())
    if choice == "finite":  # no mask: the voxels outside the brain are NaN in the betas
        assert dropped == {"outside_mask": 0, "nonfinite_in_session": outside + 1, "constant_in_session": 1}
    else:
        n_candidates = int(candidates.sum())
        assert dropped == {"outside_mask": BRAIN.size - n_candidates, "nonfinite_in_session": 1,
                           "constant_in_session": 1}  # fmt: skip
    np.testing.assert_allclose(resp.values, expected_zscores(tree.raw(), resp, [2 * TPR, TPR]), atol=2e-6)


def test_mask_on_another_grid_is_refused_and_resampled_on_request(tmp_path):
    tree = write_release2(tmp_path / "t")
    larger = np.zeros((8, 9, 7), dtype=np.uint8)  # one more voxel on every side: same voxel centres
    larger[1:-1, 1:-1, 1:-1] = BRAIN
    shifted = AFFINE.copy()
    shifted[:3, 3] -= AFFINE[:3, :3] @ np.ones(3)
    path = save(tmp_path / "mask_other_grid.nii.gz", larger, affine=shifted)
    with pytest.raises(nt.fmri.GridMismatchError, match="different voxel grids"):
        ingest(tree.folder, tmp_path / "r.zarr", mask=path)
    resp = ingest(tree.folder, tmp_path / "s.zarr", mask=path, resample_mask=True)
    assert voxel_set(resp) == mask_set(kept())
    spm = save(tree.folder / "derivatives" / "spm" / "sub-CSI1" / "sub-CSI1_mask-LHPPA.nii.gz", larger, affine=shifted)
    with pytest.raises(nt.fmri.GridMismatchError, match="ROI mask LHPPA"):
        ingest(tree.folder, tmp_path / "u.zarr")
    resp = ingest(tree.folder, tmp_path / "v.zarr", resample_mask=True)
    assert set(resp["roi"].values.tolist()) == {"LHPPA"} and spm in nt.fmri.input_files(tree.folder)


def test_mask_on_the_same_shape_but_another_affine_is_refused(tmp_path):
    tree = write_release2(tmp_path / "t")
    moved = AFFINE.copy()
    moved[0, 3] += 2.0  # one voxel along x
    with pytest.raises(nt.fmri.GridMismatchError, match="different voxel grids"):
        ingest(tree.folder, tmp_path / "r.zarr", mask=save(tmp_path / "moved.nii.gz", BRAIN.astype(np.uint8), moved))


def test_mask_resampling_is_nearest_neighbour(tmp_path):
    """A 1 mm mask whose points lie 0.4 voxel off the betas' centres: nearest keeps only the even corners."""
    tree = write_release2(tmp_path / "t")
    subset = BRAIN.copy()
    subset[1:3] = False
    fine = np.zeros(tuple(2 * n for n in SHAPE), dtype=np.uint8)
    for (i, j, k) in np.argwhere(BRAIN):
        corner = 0 if subset[i, j, k] else 1  # linear interpolation would also reach the odd corners (weight 0.4³)
        fine[2 * i + corner, 2 * j + corner, 2 * k + corner] = 1
    affine = np.array([[-1.0, 0, 0, 72.4], [0, 1.0, 0, -104.4], [0, 0, 1.0, -62.4], [0, 0, 0, 1]])
    mask = save(tmp_path / "fine.nii.gz", fine, affine)
    resp = ingest(tree.folder, tmp_path / "r.zarr", mask=mask, resample_mask=True)
    assert voxel_set(resp) == mask_set(subset & kept())


# --------------------------------------------------------------------------------------------
# OpenNeuro ds001499 with fmriprep 1.x derivatives

BIDS_RUNS = {(1, 1): "\n", (1, 2): "\r\n", (2, 1): "\r\n"}  # (session, run): events line ending
N_VOLUMES, TR_S = 194, 2.0


@dataclass
class Bids:
    root: Path
    names: list[str]
    onsets: list[np.ndarray]
    raw: list[np.ndarray]
    prep: list[np.ndarray]
    run_masks: list[np.ndarray]


def write_events(path: Path, onsets: np.ndarray, names: list[str], repeat: list[bool], newline: str) -> None:
    header = "onset duration Subj Sess Run Trial ImgName ImgType StimOn(s) StimOff(s) Response RT stim_file".split()
    kinds = ["coco" if n.startswith("COCO") else "imagenet" if n.startswith("n") else "scenes" for n in names]
    lines = ["\t".join(header)]
    for t, (onset, name, kind, rep) in enumerate(zip(onsets, names, kinds, repeat), start=1):
        image_type = f"rep_{kind}" if rep else kind
        lines.append("\t".join(map(str, [f"{onset:.4f}", 1, 1, 1, 1, t, name, image_type, f"{onset:.4f}",
                                         f"{onset + 1:.4f}", 0, 0, name])))
    path.write_bytes((newline.join(lines) + newline).encode())


def write_bids(root: Path, seed: int = 0) -> Bids:
    rng = np.random.default_rng(seed)
    order = real_order("CSI1")
    names, onsets, raws, preps, masks = [], [], [], [], []
    seen: set[str] = set()
    for n, ((session, run), newline) in enumerate(BIDS_RUNS.items()):
        stem = f"sub-CSI1_ses-{session:02d}_task-5000scenes_run-{run:02d}"
        func = root / "sub-CSI1" / f"ses-{session:02d}" / "func"
        prep = root / "derivatives" / "fmriprep" / "sub-CSI1" / f"ses-{session:02d}" / "func"
        run_names = order[TPR * n : TPR * (n + 1)]
        if n == 2:
            run_names[0] = names[5]  # a repeat: marked in ImgType only
        onset = 6.0 + 10.0 * np.arange(TPR) + rng.uniform(-0.03, 0.03, TPR)
        func.mkdir(parents=True, exist_ok=True)
        write_events(func / f"{stem}_events.tsv", onset, run_names, [name in seen for name in run_names], newline)
        seen |= set(run_names)
        raw = (1000.0 + 20.0 * rng.standard_normal((*SHAPE, N_VOLUMES))).astype(np.float32)
        raw[~BRAIN] = 20.0 + rng.standard_normal((int((~BRAIN).sum()), N_VOLUMES), dtype=np.float32)
        preprocessed = (0.5 * raw + 300.0 + rng.standard_normal(raw.shape)).astype(np.float32)
        mask = BRAIN.copy()
        mask[1, 1, 1] = n != 1  # one run's mask leaves out a brain voxel
        save(func / f"{stem}_bold.nii.gz", raw, tr=TR_S)
        save(prep / f"{stem}_bold_space-T1w_preproc.nii.gz", preprocessed, tr=TR_S)
        save(prep / f"{stem}_bold_space-T1w_brainmask.nii.gz", mask.astype(np.uint8))
        (prep / f"{stem}_bold_confounds.tsv").write_text("CSF\tWhiteMatter\n0\t0\n")
        names += run_names
        onsets.append(onset)
        raws.append(raw)
        preps.append(preprocessed)
        masks.append(mask)
    localizer = "sub-CSI1_ses-01_task-localizer_run-01"
    save(root / "sub-CSI1" / "ses-01" / "func" / f"{localizer}_bold.nii.gz", np.ones((*SHAPE, 12), np.float32), tr=TR_S)
    (root / "sub-CSI1" / "ses-01" / "func" / f"{localizer}_events.tsv").write_text(
        "onset\tduration\ttrial_type\n0\t12\tscenes\n12\t12\tobjects\n")
    save(root / "derivatives" / "fmriprep" / "sub-CSI1" / "ses-01" / "func" /
         f"{localizer}_bold_space-T1w_preproc.nii.gz", np.ones((*SHAPE, 12), np.float32), tr=TR_S)  # fmt: skip
    save(root / "sub-CSI1" / "ses-16" / "anat" / "sub-CSI1_ses-16_T1w.nii.gz", np.ones(SHAPE, np.float32))
    (root / "dataset_description.json").write_text('{"Name": "BOLD5000", "BIDSVersion": "1.0.2"}')
    return Bids(root, names, onsets, raws, preps, masks)


def trial_means(runs: list[np.ndarray], onsets: list[np.ndarray], trs: tuple[int, ...]) -> np.ndarray:
    """(x, y, z, trial): the mean of TRs ``trs`` after each onset, TR 1 the volume nearest the onset."""
    trials = []
    for series, onset in zip(runs, onsets):
        for t in onset:
            first = int(round(t / TR_S))
            trials.append(series[..., [first + k - 1 for k in trs]].astype(np.float64).mean(axis=-1))
    return np.stack(trials, axis=-1)


@pytest.mark.parametrize("preprocessed", [True, False])
def test_bids_reads_fmriprep_runs_by_default_and_raw_on_request(tmp_path, preprocessed):
    tree = write_bids(tmp_path / "ds001499")
    options = {} if preprocessed else {"preprocessed": False, "mask": BRAIN}
    resp = ingest(tree.root, tmp_path / "r.zarr", release="bids", **options)
    runs = tree.prep if preprocessed else tree.raw
    intersection = np.logical_and.reduce(tree.run_masks) if preprocessed else BRAIN
    assert resp.attrs["bids_runs"] == ("fmriprep-T1w" if preprocessed else "raw")
    assert voxel_set(resp) == mask_set(intersection)
    assert json.loads(resp.attrs["dropped_voxels"])["outside_mask"] == BRAIN.size - int(intersection.sum())
    np.testing.assert_allclose(
        resp.values, expected_zscores(trial_means(runs, tree.onsets, (3, 4)), resp, [2 * TPR, TPR]), atol=2e-5
    )
    assert resp["image"].values.tolist() == stems(tree.names)  # the localizer run is skipped
    assert resp["session"].values.tolist() == [1] * 2 * TPR + [2] * TPR
    assert resp["run"].values.tolist() == [1] * TPR + [2] * TPR + [1] * TPR
    assert resp["repeat"].values.sum() == 2 and resp["presentation"].values[2 * TPR] == 2
    assert json.loads(resp.attrs["tr"]) == [3, 4] and json.loads(resp.attrs["repetition_time"]) == [TR_S]


def test_bids_tr_choice(tmp_path):
    tree = write_bids(tmp_path / "ds001499")
    resp = ingest(tree.root, tmp_path / "r.zarr", release="bids", tr=2, normalize="none")
    expected = trial_means(tree.prep, tree.onsets, (2,))
    np.testing.assert_allclose(resp.values, expected[resp["i"].values, resp["j"].values, resp["k"].values].T,
                               rtol=1e-6)  # fmt: skip
    assert json.loads(resp.attrs["tr"]) == [2]


# --------------------------------------------------------------------------------------------
# release 1 ROI files


def save_mat73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 MAT-file: HDF5 behind MATLAB's 512-byte header, matrices stored transposed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=np.ascontiguousarray(value.T)).attrs["MATLAB_class"] = np.bytes_("single")
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  8 10:00:00 2018 HDF5 schema 1.00 ."
    with path.open("r+b") as f:
        f.write(text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def write_release1(root: Path, kind: str, n_sessions: int = 2) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """ROIs/CSI1/{mat,h5}/CSI1_ROIs_TR{1..5,34} and ROIs/stim_lists/CSI01_stim_lists.txt."""
    rng = np.random.default_rng(3)
    n_trials = sum(trials for _, trials in real_sessions("CSI1")[:n_sessions])
    names = hand_names(n_trials)
    by_tr = {}
    for tr in ("1", "2", "3", "4", "5"):
        by_tr[tr] = {roi: rng.standard_normal((n_trials, 2 + r % 3)) for r, roi in enumerate(nt.fmri.ROIS)}
    by_tr["34"] = {roi: (by_tr["3"][roi] + by_tr["4"][roi]) / 2 for roi in nt.fmri.ROIS}
    for tr, arrays in by_tr.items():
        if kind == "v5":
            path = root / "ROIs" / "CSI1" / "mat" / f"CSI1_ROIs_TR{tr}.mat"
            path.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(path, arrays, format="5")
        elif kind == "v7.3":
            save_mat73(root / "ROIs" / "CSI1" / "mat" / f"CSI1_ROIs_TR{tr}.mat", arrays)
        else:  # the release's h5/ copies: (trial, voxel) datasets as h5py writes them (or, to be safe, transposed)
            path = root / "ROIs" / "CSI1" / "h5" / f"CSI1_ROIs_TR{tr}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                for key, value in arrays.items():
                    f.create_dataset(key, data=(value.T if kind == "h5-transposed" else value).astype(np.float32))
    seen: set[str] = set()
    listed = []
    for name in names:
        listed.append(("rep_" if name in seen else "") + name)
        seen.add(name)
    (root / "ROIs" / "stim_lists").mkdir(parents=True, exist_ok=True)
    (root / "ROIs" / "stim_lists" / "CSI01_stim_lists.txt").write_text("\n".join(listed) + "\n")
    return names, by_tr


@pytest.mark.parametrize("kind", ["v5", "v7.3", "h5", "h5-transposed"])
@pytest.mark.parametrize(
    ("tr", "files"), [((3, 4), ("3", "4")), (34, ("34",)), (1, ("1",))], ids=["TR3+4", "TR34", "TR1"]
)
def test_release1_roi_files(tmp_path, kind, tr, files):
    names, by_tr = write_release1(tmp_path / "BOLD5000_ROIs", kind)
    resp = ingest(tmp_path / "BOLD5000_ROIs", tmp_path / "r.zarr", release=1, tr=tr, normalize="none")
    expected = np.concatenate([np.mean([by_tr[f][roi] for f in files], axis=0) for roi in nt.fmri.ROIS], axis=1)
    np.testing.assert_allclose(resp.values, expected, rtol=1e-6, atol=1e-6)  # float32 storage
    assert resp["roi"].values.tolist() == [roi for roi in nt.fmri.ROIS for _ in range(by_tr["1"][roi].shape[1])]
    assert resp["image"].values.tolist() == stems(names)  # rep_ prefixes removed
    assert resp["repeat"].values.sum() == 5
    sizes = [trials for _, trials in real_sessions("CSI1")[:2]]
    assert resp["session"].values.tolist() == [1] * sizes[0] + [2] * sizes[1]
    assert json.loads(resp.attrs["tr"]) == [f"TR{f}" for f in files]
    assert (resp["i"].values == -1).all()


@pytest.mark.parametrize("root", ["BOLD5000_ROIs", "BOLD5000_ROIs/ROIs"])
def test_release1_zscores_per_real_session(tmp_path, root):
    names, by_tr = write_release1(tmp_path / "BOLD5000_ROIs", "v5")
    resp = ingest(tmp_path / root, tmp_path / "r.zarr", release=1, tr=34)
    raw = np.concatenate([by_tr["34"][roi] for roi in nt.fmri.ROIS], axis=1).astype(np.float32).astype(np.float64)
    sizes = [trials for _, trials in real_sessions("CSI1")[:2]]
    expected = np.concatenate([scipy.stats.zscore(raw[:sizes[0]]), scipy.stats.zscore(raw[sizes[0]:])])
    np.testing.assert_allclose(resp.values, expected, atol=2e-6)
    runs = np.concatenate([np.arange(n) // TPR + 1 for n in sizes])
    assert resp["run"].values.tolist() == runs.tolist() and runs.max() == 10


# --------------------------------------------------------------------------------------------
# the real trial orders


@pytest.mark.parametrize("subject", ["CSI1", "CSI4"])
def test_real_trial_order_sessions_and_runs(tmp_path, subject):
    sessions = real_sessions(subject)
    names = real_order(subject)
    tree = write_release2(tmp_path / "t", subject, tuple(t for _, t in sessions), names=names)
    resp = ingest(tree.folder, tmp_path / "r.zarr", subject=subject, mask="finite")
    assert resp.shape == (len(names), int(kept().sum()))
    assert resp["image"].values.tolist() == stems(names)
    assert int(resp["session"].max()) == len(sessions) == (9 if subject == "CSI4" else 15)
    for number, (runs, trials) in enumerate(sessions, start=1):
        in_session = resp["run"].values[resp["session"].values == number]
        assert in_session.size == trials and np.bincount(in_session)[1:].tolist() == [TPR] * runs


# --------------------------------------------------------------------------------------------
# alignment and noise ceiling on plain arrays


def test_align_on_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    images = ["COCO_train2014_000000000584", "n01440764_10110", "airplanecabin1", "yard4"]
    features = xr.DataArray(rng.standard_normal((2, 4, 3)), dims=("model", "image", "feature"),
                            coords={"model": ["normal", "depth_euclidean"], "image": images})  # fmt: skip
    trial_images = ["yard4", "airplanecabin1", "yard4", "n01440764_10110"]
    responses = xr.DataArray(rng.standard_normal((4, 5)), dims=("trial", "voxel"),
                             coords={"image": ("trial", trial_images), "session": ("trial", [1, 1, 2, 2])})  # fmt: skip
    design = nt.align(features, responses)
    assert design.dims == ("model", "trial", "feature")
    for t, image in enumerate(trial_images):
        np.testing.assert_allclose(design.values[:, t], features.sel(image=image).values, rtol=1e-6)
    assert design["session"].values.tolist() == [1, 1, 2, 2]
    missing = responses.assign_coords(image=("trial", ["yard4", "gone1", "gone2", "gone1"]))
    with pytest.raises(ValueError, match=r"2 image ids .* \(3 trials\), e\.g\. \['gone1', 'gone2'\]"):
        nt.align(features, missing)


def test_noise_ceiling_on_plain_responses_vs_split_half_spearman_brown():
    rng = np.random.default_rng(1)
    n_images, n_voxels = 30, 4
    signal = rng.standard_normal((n_images, n_voxels)) * np.array([0.0, 0.5, 1.0, 3.0])
    shows = rng.permutation(np.concatenate([np.repeat(np.arange(n_images), 4), np.arange(n_images, n_images + 20)]))
    values = np.vstack([signal, np.zeros((20, n_voxels))])[shows] + rng.standard_normal((shows.size, n_voxels))
    coords = {"image": ("trial", [f"img{s}" for s in shows]), "session": ("trial", np.ones(shows.size))}
    responses = xr.DataArray(values, dims=("trial", "voxel"), coords=coords)
    odd, even = np.zeros((n_images, n_voxels)), np.zeros((n_images, n_voxels))
    for image in range(n_images):
        trials = np.flatnonzero(shows == image)  # presentation order
        odd[image], even[image] = values[trials[0::2]].mean(axis=0), values[trials[1::2]].mean(axis=0)
    r = np.array([scipy.stats.pearsonr(odd[:, v], even[:, v])[0] for v in range(n_voxels)])
    ceiling = nt.fmri.noise_ceiling(responses)
    np.testing.assert_allclose(ceiling.values, 2 * r / (1 + r), rtol=1e-5, atol=1e-6)
    assert ceiling.attrs["n_images"] == n_images and ceiling.values[-1] > 0.9
