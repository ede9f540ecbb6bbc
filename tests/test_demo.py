"""`neurotask demo` with its defaults: the science works on planted data, and the report shows it.

The planted truth is read from the synthetic tree and every check is recomputed here voxel by
voxel from the stores (not taken from the report's own numbers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurotask import stores
from neurotask.datasets import open_groundtruth
from neurotask.demo import DEMO_PAIRS, planted_features

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    command = [str(Path(sys.executable).parent / "neurotask"), "demo", "--out", str(out)]  # the installed command
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _open(out: Path, name: str):
    return stores.open_results(out / f"{name}-CSI1.zarr").load()


def _recovered(out: Path):
    """Planted and recovered driver per fitted voxel (naive loop), and the significance mask."""
    fit, perm = _open(out, "encoding"), _open(out, "permutation")
    truth = open_groundtruth(out / "bold5000", "CSI1")
    where = {(int(i), int(j), int(k)): n for n, (i, j, k) in enumerate(zip(truth.i.values, truth.j.values, truth.k.values))}
    rows = [where[(int(i), int(j), int(k))] for i, j, k in zip(fit.i.values, fit.j.values, fit.k.values)]
    planted = truth.driver.values.astype(str)[rows]
    models = [m for m in map(str, fit.model.values) if m in set(planted)]
    r2, significant = fit.r2.sel(model=models).values, perm.significant.sel(model=models).values
    recovered = []
    for v in range(planted.size):
        candidates = [(r2[m, v], models[m]) for m in range(len(models)) if significant[m, v]]
        recovered.append(max(candidates)[1] if candidates else "")
    return planted, np.array(recovered), dict(zip(models, significant)), truth.true_r2.values[rows], float(perm.attrs["q"])


def test_noise_ceiling_is_computed_and_matches_the_planted_r2(demo_out):
    ledger = json.loads((demo_out / "pipeline.json").read_text())
    assert ledger["noise_ceiling/CSI1"]["status"] == "complete", ledger["noise_ceiling/CSI1"]
    ceiling = _open(demo_out, "noise_ceiling")["noise_ceiling"].values
    planted, _, _, true_r2, _ = _recovered(demo_out)
    single = ceiling / (2 - ceiling)  # single-trial ceiling: what test R² of a perfect model reaches
    signal = planted != ""
    assert abs(np.nanmean(single[signal]) - true_r2[signal].mean()) < 0.05


def test_driver_recovered_and_false_positives_below_q(demo_out):
    planted, recovered, significant, _, q = _recovered(demo_out)
    signal, null = planted != "", planted == ""
    assert (planted == recovered)[signal].mean() >= 0.8
    for model, mask in significant.items():
        assert mask[null].mean() <= q, model
        assert mask[planted == model].mean() >= 0.5, model  # power on its own voxels


def test_transfer_summaries_are_finite_and_the_shared_pair_shares(demo_out):
    vp = _open(demo_out, "partition")
    planted = _recovered(demo_out)[0]
    for name in ("transfer_a_to_b_mean", "transfer_b_to_a_mean", "shared_mean", "unique_a_mean", "unique_b_mean"):
        assert np.isfinite(vp[name].values).all(), name
    (shared_a, shared_b), (free_a, free_b) = DEMO_PAIRS
    shared_pair = vp.sel(pair=f"{shared_a}+{shared_b}")
    free_pair = vp.sel(pair=f"{free_a}+{free_b}")
    on_shared = np.isin(planted, [shared_a, shared_b])
    on_free = np.isin(planted, [free_a, free_b])
    assert float(shared_pair["shared"].values[on_shared].mean()) > 0.15  # half of the latent factors are shared
    assert abs(float(free_pair["shared"].values[on_free].mean())) < 0.05  # independent features: no shared variance


def test_report_has_the_planted_truth_and_renders_offline(demo_out):
    text = (demo_out / "report.html").read_text()
    section = text.split('id="planted-truth"')[1].split("</section>")[0]
    assert "Driver recovered on" in section and section.count("<img") == 3 and "Not available" not in section
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the render is not checked")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "demo-report.png"
    screenshot.unlink(missing_ok=True)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=5000", "--hide-scrollbars"]
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1280,14000", (demo_out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0 and screenshot.stat().st_size > 100_000, shot.stderr[-2000:]
    with Image.open(screenshot) as image:  # the window is taller than the page: cut the empty bottom
        gray = np.asarray(image.convert("L"))
        page = np.flatnonzero((gray != gray[-1, 0]).any(axis=1))
        image.crop((0, 0, image.width, min(image.height, int(page[-1]) + 24))).save(screenshot)


def test_planted_features_share_latent_factors_within_a_group_only():
    images = [f"n01440764_{i}" for i in range(120)]
    feats = planted_features(["depth_euclidean", "normal", "autoencoding"], images, n_features=64)
    rdms = {str(m): np.corrcoef(feats.sel(model=m).values)[np.triu_indices(120, k=1)] for m in feats.model.values}
    same = np.corrcoef(rdms["depth_euclidean"], rdms["normal"])[0, 1]
    other = np.corrcoef(rdms["depth_euclidean"], rdms["autoencoding"])[0, 1]
    assert same > 0.15 and abs(other) < 0.1 and same > other + 0.15
    assert feats.attrs["shared_latent_groups"] == {"3d": ["depth_euclidean", "normal"]}
