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

MODELS = ["autoencoding", "depth_euclidean", "room_layout", "class_object"]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _similarity(rng: np.random.Generator) -> xr.DataArray:
    a = rng.random((4, 4))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return xr.DataArray(a, dims=("model", "model_"), coords={"model": MODELS, "model_": MODELS})


@pytest.fixture(scope="module")
def results() -> dict:
    rng = np.random.default_rng(0)
    n = 200
    ijk = {c: ("voxel", rng.integers(0, 8, n)) for c in "ijk"}
    rsa = xr.concat([_similarity(rng).expand_dims(subset=[s]) for s in ("all", "scenes")], "subset")
    fit = xr.Dataset(
        {"r2": (("model", "voxel"), rng.normal(0.05, 0.1, (4, n)).astype("f4")),
         "r": (("model", "voxel"), rng.normal(0.2, 0.1, (4, n)).astype("f4"))},
        coords={"model": MODELS, **ijk},
    )
    perm = xr.Dataset({"significant": (("model", "voxel"), rng.random((4, n)) < 0.3)}, coords={"model": MODELS})
    names = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared", "transfer_a_to_b", "transfer_b_to_a")
    vp = xr.Dataset({k: (("pair", "voxel"), rng.random((1, n))) for k in names},
                    coords={"pair": ["autoencoding+depth_euclidean"], **ijk})
    ceiling = xr.Dataset({"noise_ceiling": ("voxel", rng.random(n))})
    return {
        "rsa": rsa.to_dataset(name="similarity"),
        "task_similarity": xr.Dataset({"mean": _similarity(rng)}),
        "subjects": {"CSI1": {"encoding": fit, "permutation": perm, "partition": vp, "noise_ceiling": ceiling}},
        "config": {"out": "results", "models": MODELS, "encode": {"test_sessions": [15]}},
        "ledger": {"encode/CSI1": {"status": "complete", "note": "complete", "seconds": 1.0}},
    }


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
        section = text.split(f'id="{key}"')[1].split("</section>")[0]
        assert "Not available" in section, key


def test_skipped_steps_are_explained(results, tmp_path):
    data = {"ledger": {"rsa": {"status": "skipped", "note": "skipped: rsa not available yet", "seconds": 0.0}}}
    text = write(data, tmp_path / "report.html").read_text()
    rsa = text.split('id="rsa"')[1].split("</section>")[0]
    assert "rsa was skipped: rsa not available yet" in rsa


@pytest.mark.browser
def test_report_renders_in_headless_chromium_without_network(results, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the offline render is not checked")
    path = write(results, tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key in SECTIONS:
        assert f'id="{key}"' in dom.stdout
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1280,2400", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 50_000, shot.stderr[-2000:]
    print(f"screenshot: {screenshot}")
