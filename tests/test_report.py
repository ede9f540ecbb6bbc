"""neurotask.report: every section present, figures embedded, missing data said, renders offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurotask.report import SECTIONS, write
from neurotask.report.scores import single_trial_ceiling
from neurotask.report.sections import STEP_ORDER, consistency
from neurotask.report.truth import compare_with_truth

MODELS = ["autoencoding", "depth_euclidean", "room_layout", "class_object"]
ARTIFACTS = Path(__file__).parent / "artifacts"
N_VOXELS = 200
N_DRIVEN = 30  # voxels per driver model; the rest are planted noise


def _similarity(rng: np.random.Generator) -> xr.DataArray:
    a = rng.random((4, 4))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return xr.DataArray(a, dims=("model", "model_"), coords={"model": MODELS, "model_": MODELS})


def _groundtruth(ijk: dict) -> xr.Dataset:
    driver = np.array([m for m in MODELS for _ in range(N_DRIVEN)] + [""] * (N_VOXELS - 4 * N_DRIVEN))
    true_r2 = np.where(driver != "", np.linspace(0.2, 0.7, N_VOXELS), 0.0)
    return xr.Dataset({**{c: ("voxel", v[1]) for c, v in ijk.items()}, "driver": ("voxel", driver), "true_r2": ("voxel", true_r2)},
                      attrs={"models": str(MODELS)})


@pytest.fixture(scope="module")
def results() -> dict:
    rng = np.random.default_rng(0)
    flat = rng.permutation(8 * 8 * 8)[:N_VOXELS]
    ijk = {c: ("voxel", v) for c, v in zip("ijk", np.unravel_index(flat, (8, 8, 8)))}
    truth = _groundtruth(ijk)
    driver = truth["driver"].values
    r2 = rng.normal(-0.01, 0.02, (4, N_VOXELS))
    significant = rng.random((4, N_VOXELS)) < 0.03  # a few false positives
    for m, model in enumerate(MODELS):
        own = driver == model
        r2[m, own] = truth["true_r2"].values[own] - 0.05
        significant[m, own] = rng.random(own.sum()) < 0.9
    rois = np.where(np.arange(N_VOXELS) % 3 == 0, "LHPPA", np.where(np.arange(N_VOXELS) % 3 == 1, "RHLOC", ""))
    rsa = xr.concat([_similarity(rng).expand_dims(subset=[s]) for s in ("all", "scenes")], "subset")
    fit = xr.Dataset(
        {"r2": (("model", "voxel"), r2.astype("f4")), "r": (("model", "voxel"), rng.normal(0.2, 0.1, (4, N_VOXELS)).astype("f4"))},
        coords={"model": MODELS, "roi": ("voxel", rois), **ijk},
    )
    perm = xr.Dataset({"significant": (("model", "voxel"), significant)}, coords={"model": MODELS}, attrs={"q": 0.05})
    names = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared", "transfer_a_to_b", "transfer_b_to_a")
    pairs = ["autoencoding+depth_euclidean", "room_layout+class_object"]
    vp = xr.Dataset({k: (("pair", "voxel"), rng.random((2, N_VOXELS))) for k in names},
                    coords={"pair": pairs, "model_a": ("pair", ["autoencoding", "room_layout"]),
                            "model_b": ("pair", ["depth_euclidean", "class_object"]), **ijk})
    for k in names:
        vp[f"{k}_mean"] = vp[k].mean("voxel")
    vp["transfer_a_to_b_mean"][1] = np.nan
    vp["n_voxels_transfer_a_to_b"] = ("pair", [12, 0])
    vp.attrs["summary_rule"] = "transfer over voxels where both models are significant and R²(B) > 0"
    ceiling = xr.Dataset({"noise_ceiling": ("voxel", rng.random(N_VOXELS), {"n_images": 23})})
    per_subject = xr.concat([_similarity(rng).expand_dims(subject=[s]) for s in ("CSI1", "CSI2")], "subject")
    return {
        "rsa": rsa.to_dataset(name="similarity"),
        "task_similarity": xr.Dataset({"mean": per_subject.mean("subject"), "similarity": per_subject}),
        "subjects": {"CSI1": {"encoding": fit, "permutation": perm, "partition": vp, "noise_ceiling": ceiling, "groundtruth": truth}},
        "config": {"out": "results", "models": MODELS, "encode": {"test_sessions": [15]}},
        "ledger": {"report": {"status": "running"}, "partition/CSI1": {"status": "complete", "note": "complete", "seconds": 3.0},
                   "encode/CSI1": {"status": "complete", "note": "complete", "seconds": 1.0},
                   "extract": {"status": "complete", "note": "complete", "seconds": 2.0},
                   "noise_ceiling/CSI1": {"status": "complete", "note": "complete", "seconds": 0.1}},
    }


@pytest.fixture(scope="module")
def report(results, tmp_path_factory) -> Path:
    """The report of :func:`results`, written once (~4 s of figures) for the tests that only read it."""
    return write(results, tmp_path_factory.mktemp("report") / "report.html")


def _section(text: str, key: str) -> str:
    return text.split(f'id="{key}"')[1].split("</section>")[0]


def test_every_section_is_present_with_embedded_figures(results, tmp_path):
    path = write(results, tmp_path / "report.html", labels=["random-weight encoders"])
    text = path.read_text()
    for key, heading in SECTIONS.items():
        assert f'id="{key}"' in text and heading in text
    assert "random-weight encoders" in text
    figures = re.findall(r'<img alt="figure" src="data:image/png;base64,', text)
    assert len(figures) >= 10
    assert "Not available" not in text.split('id="provenance"')[0]  # every analysis section has data
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no network assets
    assert "test_sessions = [" in text  # the config, as TOML


def test_missing_data_is_said_per_section(tmp_path):
    text = write({}, tmp_path / "report.html").read_text()
    for key in SECTIONS:
        assert "Not available" in _section(text, key), key


def test_skipped_steps_are_explained(results, tmp_path):
    data = {"ledger": {"rsa": {"status": "skipped", "note": "skipped: rsa not available yet", "seconds": 0.0}}}
    text = write(data, tmp_path / "report.html").read_text()
    assert "rsa was skipped: rsa not available yet" in _section(text, "rsa")


def test_status_rows_follow_the_pipeline_order(report):
    status = _section(report.read_text(), "status")
    steps = re.findall(r'<tr><td class="text">([a-z_]+)(?:/CSI1)?</td>', status)
    assert steps == ["extract", "noise_ceiling", "encode", "partition"]
    assert [STEP_ORDER.index(s) for s in steps] == sorted(STEP_ORDER.index(s) for s in steps)


def test_planted_truth_matches_a_voxel_loop(results):
    entry = results["subjects"]["CSI1"]
    comparison = compare_with_truth(entry["groundtruth"], entry["encoding"], entry["permutation"])
    r2, significant = entry["encoding"]["r2"].values, entry["permutation"]["significant"].values
    planted = [d or "none" for d in entry["groundtruth"]["driver"].values]
    recovered = []
    for v in range(N_VOXELS):
        candidates = [(r2[m, v], MODELS[m]) for m in range(4) if significant[m, v]]
        recovered.append(max(candidates)[1] if candidates else "none")
    assert comparison["recovered_driver"].values.tolist() == recovered
    signal = [v for v in range(N_VOXELS) if planted[v] != "none"]
    assert comparison.attrs["recovery"] == pytest.approx(np.mean([planted[v] == recovered[v] for v in signal]))
    null = [v for v in range(N_VOXELS) if planted[v] == "none"]
    for m, model in enumerate(MODELS):
        assert float(comparison["false_positive_rate"].sel(model=model)) == pytest.approx(np.mean(significant[m, null]))
        own = [v for v in range(N_VOXELS) if planted[v] == model]
        assert float(comparison["power"].sel(model=model)) == pytest.approx(np.mean(significant[m, own]))
    assert int(comparison["confusion"].sel(planted="none", recovered="none")) == sum(
        planted[v] == recovered[v] == "none" for v in range(N_VOXELS))


def test_planted_truth_section_on_synthetic_data_and_its_absence_on_real_data(results, report, tmp_path):
    section = _section(report.read_text(), "planted-truth")
    assert "Driver recovered on" in section and section.count("<img") == 3
    real = {**results, "subjects": {"CSI1": {k: v for k, v in results["subjects"]["CSI1"].items() if k != "groundtruth"}},
            "config": {"ingest": {"root": str(tmp_path)}}}
    section = _section(write(real, tmp_path / "real.html").read_text(), "planted-truth")
    assert "not synthetic data" in section and str(tmp_path) in section and "<img" not in section


def test_scores_headline_roi_ceiling_and_the_noise_sentence(results, report):
    section = _section(report.read_text(), "encoding")
    assert "mean R² (significant voxels)" in section and "LHPPA" in section and "RHLOC" in section
    assert "R² / ceiling" in section and "≤ 0" in section
    fit, perm = results["subjects"]["CSI1"]["encoding"], results["subjects"]["CSI1"]["permutation"]
    mask = perm["significant"].sel(model="room_layout").values
    expected = float(np.mean(fit["r2"].sel(model="room_layout").values[mask]))
    assert f"{expected:.3g}" in section


def test_single_trial_ceiling_steps_spearman_brown_down_to_one_presentation():
    reliability = xr.DataArray([0.2, 0.5, 0.8, -0.1], dims="voxel")
    corrected = 2 * reliability / (1 + reliability)  # the split-half ceiling of two presentations
    np.testing.assert_allclose(single_trial_ceiling(corrected).values[:3], reliability.values[:3], rtol=1e-12)
    assert np.isnan(single_trial_ceiling(corrected).values[3])


def test_subjects_consistency_is_the_correlation_of_their_matrices(results, report):
    per_subject = results["task_similarity"]["similarity"]
    upper = np.triu_indices(4, k=1)
    expected = np.corrcoef(per_subject.values[0][upper], per_subject.values[1][upper])[0, 1]
    r = consistency(per_subject)
    assert float(r.sel(subject="CSI1", subject_="CSI2")) == pytest.approx(expected)
    section = _section(report.read_text(), "task-similarity")
    assert f"{expected:.3f}" in section and "Consistency across 2 subjects" in section


def test_partition_summaries_say_when_no_voxel_qualifies(report):
    section = _section(report.read_text(), "partition")
    assert "no qualifying voxel" in section and "both models are significant" in section
    assert "voxels (transfer a to b)" in section
    assert ">nan<" not in section.lower() and "<td>–</td>" not in section


def test_voxels_without_ijk_give_no_brain_map_and_the_page_says_so(results, tmp_path):
    fit = results["subjects"]["CSI1"]["encoding"].drop_vars(["i", "j", "k"])
    data = {"subjects": {"CSI1": {"encoding": fit, "permutation": results["subjects"]["CSI1"]["permutation"]}}}
    section = _section(write(data, tmp_path / "report.html").read_text(), "brain-maps")
    assert "no i, j, k coordinates" in section and "<img" not in section


def test_embedded_figures_keep_labels_that_overflow_the_canvas():
    import base64
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from neurotask.report._html import png

    fig, ax = plt.subplots(figsize=(2, 2))
    image = ax.imshow(np.eye(3))
    fig.colorbar(image, ax=ax).set_label("a colorbar label long enough to run past the right edge")
    ax.text(1.0, 0.5, "a note far to the right of the axes", transform=ax.transAxes)
    data = base64.b64decode(png(fig).split("base64,")[1].split('"')[0])
    width, _ = Image.open(io.BytesIO(data)).size
    assert width > 2 * 90 * 1.3  # the canvas is 180 px wide at 90 dpi: the overflowing text was kept, not cut


def test_a_joint_model_without_a_significance_test_is_scored_not_compared(results, tmp_path):
    entry = results["subjects"]["CSI1"]
    singles = [f'["{m}"]' for m in MODELS]
    joint = entry["encoding"].isel(model=[0]).assign_coords(model=["autoencoding+depth_euclidean"])
    fit = xr.concat([entry["encoding"], joint], "model").assign_coords(spaces=("model", [*singles, '["autoencoding", "depth_euclidean"]']))
    data = {"subjects": {"CSI1": {**entry, "encoding": fit}}}
    text = write(data, tmp_path / "report.html").read_text()
    assert "section failed" not in text
    assert "autoencoding+depth_euclidean" in _section(text, "encoding")
    comparison = compare_with_truth(entry["groundtruth"], fit, entry["permutation"])
    assert comparison["model"].values.tolist() == MODELS


def test_wide_tables_scroll_inside_the_page(report):
    text = report.read_text()
    assert text.count("<table>") == text.count('<div class="scroll"><table>')
    assert ".scroll { overflow-x: auto" in text


@pytest.mark.browser
def test_report_renders_in_headless_chromium_without_network(report):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the offline render is not checked")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key in SECTIONS:
        assert f'id="{key}"' in dom.stdout
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1280,2400", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 50_000, shot.stderr[-2000:]
    print(f"screenshot: {screenshot}")
