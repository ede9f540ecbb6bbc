"""The command line under bad input and faults (issue 15): one clear message, never stale, one run at a time.

Every case runs the CLI on a tiny synthetic BOLD5000 tree (one subject, 2 sessions, a 6x7x6 grid)
and a synthetic features store, as a user would hit it, and checks: a non-zero exit, no traceback,
and the file, argument or config key named in the message. The read-only and concurrent cases run
the installed ``neurotask`` script in a subprocess (a read-only bind mount needs its own process).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tomli_w
from typer.testing import CliRunner

from neurotask import pipeline, stores
from neurotask.cli import app
from neurotask.datasets import bold5000_trials, make_synthetic_features, write_synthetic_bold5000, write_synthetic_stimuli
from neurotask.features.encoders import save_random_checkpoint
from neurotask.pipeline.steps import STEP_TABLE

MODELS = ["autoencoding", "depth_euclidean"]
NEUROTASK = Path(sys.executable).parent / "neurotask"
BETAS = "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{:02d}.nii.gz"
RESULTS = ("responses-CSI1", "encoding-CSI1", "permutation-CSI1", "partition-CSI1", "rsa", "task_similarity")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``features.zarr`` (2 models x the images of 2 sessions x 16 features) and ``bold/`` (CSI1, release 2)."""
    root = tmp_path_factory.mktemp("faults")
    images = list(dict.fromkeys(bold5000_trials("CSI1", n_sessions=2)["image"]))
    features = make_synthetic_features(MODELS, images, n_features=16, seed=0)
    stores.write_dataset(root / "features.zarr", features.to_dataset(name="features"), region_dim="model",
                         chunks={"model": 1, "image": 512, "feature": -1})
    write_synthetic_bold5000(root / "bold", features, "CSI1", n_sessions=2, volume_shape=(6, 7, 6), snr=(1.0, 4.0),
                             seed=0)
    return root


def make_config(data: Path, out: Path, **overrides) -> dict:
    """A small whole-pipeline config; ``section.key=value`` overrides, ``None`` removes the key."""
    config = {
        "out": str(out), "subjects": ["CSI1"], "models": list(MODELS),
        "extract": {"store": str(data / "features.zarr")}, "ingest": {"root": str(data / "bold")},
        "rsa": {"subsets": {"all": {}}},
        "encode": {"test_sessions": [2], "alphas": [1.0, 10.0, 100.0, 1000.0], "cv": 2},
        "permute": {"n_permutations": 200, "seed": 0}, "partition": {"pairs": [list(MODELS)]},
        "cluster": {"workers": 1, "processes": False},
    }
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        table = config.setdefault(section, {}) if section else config
        table.pop(name) if value is None else table.__setitem__(name, value)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(tomli_w.dumps(config))
    return path


def copy_tree(data: Path, tmp: Path) -> Path:
    tree = tmp / "bold"
    shutil.copytree(data / "bold", tree)
    return tree


# --------------------------------------------------------------------------------------------
# the cases: each builds its inputs and returns (CLI arguments, what the message must name)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncated_ingest(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    tree = copy_tree(data, tmp)
    _truncate(tree / BETAS.format(2))
    return ["ingest", str(tree), "--out", str(tmp / "r.zarr")], [BETAS.format(2), "truncated or corrupt", "re-download"]


def truncated_run(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    tree = copy_tree(data, tmp)
    _truncate(tree / BETAS.format(2))
    config = write_config(tmp / "c.toml", make_config(data, tmp / "out", **{"ingest.root": str(tree)}))
    return ["run", str(config)], [BETAS.format(2), "truncated or corrupt"]


def bad_key(key: str, value, named: str) -> Callable[[Path, Path], tuple[list[str], list[str]]]:
    def case(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
        config = write_config(tmp / "c.toml", make_config(data, tmp / "out", **{key: value}))
        return ["run", str(config)], [named]

    return case


def nan_session(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    tree = copy_tree(data, tmp)
    path = tree / BETAS.format(1)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine, img.header), path)
    return ["ingest", str(tree), "--out", str(tmp / "r.zarr")], ["no voxel of CSI1 survives", "nonfinite in session"]


def missing_session(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    tree = copy_tree(data, tmp)
    (tree / BETAS.format(1)).unlink()
    config = make_config(data, tmp / "out", **{"ingest.root": str(tree), "encode.test_sessions": None})
    return ["run", str(write_config(tmp / "c.toml", config))], ["CSI1_imgnames.txt", "ses-01 are missing"]


def _stimuli_and_weights(tmp: Path) -> tuple[Path, Path, list[Path]]:
    paths = write_synthetic_stimuli(tmp / "stimuli", n_images=3, seed=0)
    weights = tmp / "weights"
    weights.mkdir()
    return tmp / "stimuli", weights, paths


def corrupt_jpeg(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    images, weights, paths = _stimuli_and_weights(tmp)
    save_random_checkpoint("autoencoding", weights)
    bad = next(p for p in paths if p.suffix.lower() in (".jpg", ".jpeg"))
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 10)
    config = make_config(data, tmp / "out", models=["autoencoding"], extract={"images": str(images), "weights": str(weights),
                                                                             "device": "cpu"},
                         **{"partition.pairs": None})
    return ["run", str(write_config(tmp / "c.toml", config))], [bad.name]


def empty_report(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "empty").mkdir()
    return ["report", str(tmp / "empty")], [str(tmp / "empty"), "holds no pipeline outputs"]


def non_torch_checkpoint(data: Path, tmp: Path) -> tuple[list[str], list[str]]:
    images, weights, _ = _stimuli_and_weights(tmp)
    junk = b"these bytes are not a torch file\n" * 32
    name = f"autoencoding_encoder-{hashlib.sha256(junk).hexdigest()}.pth"
    (weights / name).write_bytes(junk)
    args = ["extract", str(images), "--out", str(tmp / "f.zarr"), "--models", "autoencoding", "--weights", str(weights),
            "--device", "cpu"]
    return args, [name, "is not a torch.save file"]


CASES = {
    "truncated betas (ingest)": truncated_ingest,
    "truncated betas (run)": truncated_run,
    "standardize = 'false'": bad_key("encode.standardize", "false", "encode.standardize: expected true or false"),
    "normalize = 1": bad_key("ingest.normalize", 1, "ingest.normalize: expected"),
    "betas = 'TYPEZ'": bad_key("ingest.betas", "TYPEZ", "ingest.betas: expected"),
    "rdm_method = 'foo'": bad_key("rsa.rdm_method", "foo", "rsa.rdm_method: expected"),
    "method = 'bogus'": bad_key("permute.method", "bogus", "permute.method: expected"),
    "[ingest] subject": bad_key("ingest.subject", "CSI2", "ingest.subject: set by the pipeline"),
    "[rsa] subset": bad_key("rsa.subset", {"source": "scene"}, "rsa.subset: set by the pipeline"),
    "[encode] store": bad_key("encode.store", "elsewhere.zarr", "encode.store: set by the pipeline"),
    "autoencoding twice": bad_key("models", ["autoencoding", "autoencoding"], "models: 'autoencoding' is listed twice"),
    "rgb2mist beside depth_euclidean": bad_key("models", ["rgb2mist", "depth_euclidean"],
                                               "'depth_euclidean' and 'rgb2mist' are the same task"),
    "a whole session NaN": nan_session,
    "a missing session file": missing_session,
    "a corrupt JPEG through run": corrupt_jpeg,
    "report on an empty folder": empty_report,
    "a non-torch checkpoint": non_torch_checkpoint,
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_failures_name_the_cause_without_a_traceback(data, tmp_path, case):
    args, named = CASES[case](data, tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not an exception escaping the command
    assert "Traceback" not in result.stderr and "Aborted" not in result.output
    for text in named:
        assert text in result.stderr, (text, result.stderr)
    assert not list(tmp_path.rglob("*.staging")), "a failed ingest left its staging store"


def test_debug_shows_the_traceback_of_an_expected_failure(data, tmp_path, monkeypatch):
    args, named = truncated_ingest(data, tmp_path)
    result = CliRunner().invoke(app, ["--debug", *args])
    assert result.exit_code == 2 and "Traceback" in result.stderr and "EOFError" in result.stderr
    assert named[0] in result.stderr.splitlines()[-1]
    monkeypatch.setenv("NEUROTASK_DEBUG", "1")
    again = CliRunner().invoke(app, ["ingest", str(tmp_path / "bold"), "--out", str(tmp_path / "again.zarr")])
    assert again.exit_code == 2 and "Traceback" in again.stderr


def test_a_bug_keeps_its_traceback(data, tmp_path, monkeypatch):
    import neurotask.fmri

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(neurotask.fmri, "load_bold5000", broken)  # the ingest command imports it when it runs
    result = CliRunner().invoke(app, ["ingest", str(data / "bold"), "--out", str(tmp_path / "r.zarr")])
    assert isinstance(result.exception, ZeroDivisionError)  # not turned into a message
    assert result.exit_code == 1


# --------------------------------------------------------------------------------------------
# never stale: an input edited in place


def _swap_two_lines(path: Path) -> list[str]:
    """Swap the first two different lines, in place: same size; the mtime is put back too."""
    stat = path.stat()
    lines = path.read_text().splitlines()
    other = next(i for i, line in enumerate(lines) if line != lines[0])
    lines[0], lines[other] = lines[other], lines[0]
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    return lines


def test_an_image_list_edited_in_place_is_ingested_again(data, tmp_path):
    tree = copy_tree(data, tmp_path)
    config = write_config(tmp_path / "c.toml", make_config(data, tmp_path / "out", **{"ingest.root": str(tree)}))
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(config), "--step", "ingest"])
    assert first.exit_code == 0, first.output
    lines = _swap_two_lines(tree / "CSI1_imgnames.txt")
    again = runner.invoke(app, ["run", str(config), "--step", "ingest"])
    assert again.exit_code == 0, again.output
    statuses = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert statuses["ingest/CSI1"]["status"] == "complete"
    assert "done before" not in " ".join(again.output.split())  # recomputed, not reopened
    labels = stores.open_responses(tmp_path / "out" / "responses-CSI1.zarr")["image"].values
    assert [Path(n).stem for n in lines[: len(labels)]] == list(labels)

    # the ingest command onto the same store: refuses to reopen it, recomputes with --overwrite
    store = tmp_path / "r.zarr"
    assert runner.invoke(app, ["ingest", str(tree), "--out", str(store)]).exit_code == 0
    lines = _swap_two_lines(tree / "CSI1_imgnames.txt")
    refused = runner.invoke(app, ["ingest", str(tree), "--out", str(store)])
    assert refused.exit_code == 2 and str(store) in refused.stderr and "overwrite" in refused.stderr
    redone = runner.invoke(app, ["ingest", str(tree), "--out", str(store), "--overwrite"])
    assert redone.exit_code == 0, redone.output
    labels = stores.open_responses(store)["image"].values
    assert [Path(n).stem for n in lines[: len(labels)]] == list(labels)


# --------------------------------------------------------------------------------------------
# a finished run, a read-only folder, a second run at once


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """The output folder of a whole run of :func:`make_config`."""
    out = tmp_path_factory.mktemp("finished") / "out"
    summary = pipeline.run(make_config(data, out))
    assert all(status == "complete" for status in summary.statuses.values()), summary.statuses
    return out


def assert_same_results(out: Path, reference: Path) -> None:
    for name in RESULTS:
        a, b = stores.open_store(out / f"{name}.zarr"), stores.open_store(reference / f"{name}.zarr")
        assert set(a.data_vars) == set(b.data_vars), name
        for variable in a.data_vars:
            np.testing.assert_array_equal(a[variable].values, b[variable].values, err_msg=f"{name}.{variable}")


def _can_mount_read_only(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    script = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x"
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def run_read_only(tmp_path) -> Callable[[Path, list[str]], subprocess.CompletedProcess]:
    """Run ``neurotask ARGS`` with ``folder`` read-only: a read-only bind mount (root), else no write permission."""
    if os.geteuid() != 0:
        def run(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
            modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
            for path in modes:
                path.chmod(0o555)
            try:
                return subprocess.run([str(NEUROTASK), *args], capture_output=True, text=True, timeout=300)
            finally:
                for path, mode in modes.items():
                    path.chmod(mode)
        return run
    if not _can_mount_read_only(tmp_path):
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only")

    def run(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
        script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$0" "$@"'
        return subprocess.run(["unshare", "--mount", "sh", "-c", script, str(NEUROTASK), *args],
                              capture_output=True, text=True, timeout=300)

    return run


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_read_only_output_folder(data, finished, tmp_path, run_read_only):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    config = write_config(tmp_path / "c.toml", make_config(data, copy))
    before = _snapshot(copy)
    done = run_read_only(copy, ["run", str(config)])
    assert done.returncode == 0, done.stderr
    assert "done before" in done.stdout and "complete" not in done.stdout and "Traceback" not in done.stderr
    assert _snapshot(copy) == before  # nothing written, not even the lock or the ledger

    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(tmp_path / "e.toml", make_config(data, empty))
    failed = run_read_only(empty, ["run", str(config)])
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    message = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and str(empty) in message[0], failed.stderr


def test_a_second_run_on_the_same_folder_exits_with_the_lock_message(data, finished, tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", make_config(data, out))
    first = subprocess.Popen([str(NEUROTASK), "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock = out / ".neurotask.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the first run never took the lock"
    second = CliRunner().invoke(app, ["run", str(config)])
    stdout, stderr = first.communicate(timeout=300)
    assert second.exit_code == 2 and "Traceback" not in second.stderr
    assert f"{out} is in use by another neurotask run (pid {first.pid}" in second.stderr
    assert first.returncode == 0, stderr
    assert not lock.exists()
    assert_same_results(out, finished)
    # the status table lists the steps in the order they ran: the pipeline's
    order = [f"{spec.key}/CSI1" if spec.per_subject else spec.key for spec in STEP_TABLE]
    rows = [line.split("│")[1].strip() for line in stdout.splitlines() if line.count("│") == 3]
    assert [row for row in rows if row in order] == order, stdout


def test_a_full_disk_is_one_line_naming_the_path(data, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or not _can_mount_read_only(tmp_path):
        pytest.skip("a small tmpfs needs root and mount namespaces")
    script = f'mount -t tmpfs -o size=64k tmpfs "{full}" && exec "$0" "$@"'
    store = full / "r.zarr"
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script, str(NEUROTASK), "ingest", str(data / "bold"),
                             "--out", str(store)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and str(store) in message[0] and "no space left" in message[0], result.stderr


def test_a_lock_being_written_is_not_taken_as_stale(tmp_path):
    """The window between the lock's exclusive creation and its content: a second run must wait, not take it."""
    import socket
    import threading

    from neurotask.pipeline.runner import LockedError, output_lock

    lock = tmp_path / ".neurotask.lock"
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # taken, not written yet

    def finish_writing() -> None:
        time.sleep(0.3)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        os.close(fd)

    writer = threading.Thread(target=finish_writing)
    writer.start()
    with pytest.raises(LockedError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        with output_lock(tmp_path):
            pass
    writer.join()
    assert lock.exists()  # still the first taker's
