"""neurotask.pipeline: config validation before compute, resumable steps, fault tolerance.

One tiny synthetic subject (2 sessions, an 8x10x8 grid, 3 models of 32 planted features) and a
reference run on an in-process Dask cluster are built once per session (tests/small_subject.py,
shared with the SLURM tests): what every disturbed run (worker killed, whole process killed and
re-run, separate scheduler process) must reproduce.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster
from small_subject import MODELS, make_config
from worker_faults import DuringStep

import neurotask as nt
from neurotask import pipeline, stores

BIN = Path(sys.executable).parent
#: The steps of a disturbed run: it is compared with the reference store by store; the report
#: (~6 s of figures, no Dask) is checked on the reference run and by the report-only run.
NO_REPORT = [step for step in pipeline.STEPS if step != "report"]


@pytest.fixture(scope="module")
def data(small_subject):
    """The session's small subject (tests/small_subject.py)."""
    return small_subject


RESULT_STORES = ("responses-CSI1", "noise_ceiling-CSI1", "rsa", "encoding-CSI1", "permutation-CSI1",
                 "task_similarity", "partition-CSI1")


def assert_same_results(out: Path, reference: Path) -> None:
    """Every store the reference run completed is complete here with identical data."""
    compared = 0
    for name in RESULT_STORES:
        if not stores.is_complete(reference / f"{name}.zarr"):
            continue
        a = stores.open_store(out / f"{name}.zarr")
        b = stores.open_store(reference / f"{name}.zarr")
        assert set(a.data_vars) == set(b.data_vars), name
        for variable in a.data_vars:
            # exact: the same tasks on the same chunks give the same bits, whatever the worker
            np.testing.assert_array_equal(a[variable].values, b[variable].values, err_msg=f"{name}.{variable}")
        compared += 1
    assert compared == len([n for n in RESULT_STORES if stores.is_complete(reference / f"{n}.zarr")])


@pytest.fixture(scope="module")
def reference(small_reference):
    """The session's reference run (tests/small_subject.py): its output folder and summary."""
    return small_reference


# --------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"models": ["autoencoding", "depth_eucldean"]}, "models: unknown model 'depth_eucldean'"),
        ({"ingest.root": "/nonexistent/BOLD5000"}, "ingest.root: path '/nonexistent/BOLD5000' does not exist"),
        ({"encode.test_sessions": [15]}, "encode.test_sessions: sessions [15] are out of range for CSI1"),
        ({"encode.alpha": [1.0]}, "unknown key encode.alpha"),
        ({"subjects": ["CSI5"]}, "subjects: unknown subjects ['CSI5']"),
        ({"permute.n_permutations": 0}, "permute.n_permutations: expected a positive int"),
        ({"partition.pairs": [["autoencoding", "nope"]]}, "partition.pairs: unknown model 'nope'"),
        ({"cluster.scheduler": "localhost:8786"}, "cluster.scheduler: expected an address"),
        ({"rsa.subsets": {"scenes": {"kind": "scene"}}}, "rsa.subsets.scenes: unknown image coordinate 'kind'"),
        # keys the pipeline sets itself fail in validation, naming the key (not a TypeError later)
        ({"ingest.subject": "CSI2"}, "ingest.subject: set by the pipeline"),
        ({"rsa.subset": {"source": "scene"}}, "rsa.subset: set by the pipeline"),
        ({"encode.store": "elsewhere.zarr"}, "encode.store: set by the pipeline"),
        # values are checked against their types and choices before any compute
        ({"encode.standardize": "false"}, "encode.standardize: expected true or false; got 'false'"),
        ({"ingest.normalize": 1}, "ingest.normalize: expected 'session' or 'run' or 'none'; got 1"),
        ({"ingest.betas": "TYPEZ"}, "ingest.betas: expected"),
        ({"rsa.rdm_method": "foo"}, "rsa.rdm_method: expected 'correlation'"),
        ({"permute.method": "bogus"}, "permute.method: expected 'shuffle-test'"),
        ({"models": ["autoencoding", "autoencoding"]}, "models: 'autoencoding' is listed twice"),
        ({"models": ["rgb2mist", "depth_euclidean"]}, "models: 'depth_euclidean' and 'rgb2mist' are the same task"),
    ],
)
def test_bad_config_fails_before_compute_naming_the_key(data, tmp_path, overrides, key):
    out = tmp_path / "out"
    with pytest.raises(pipeline.ConfigError) as error:
        pipeline.run(make_config(data, out, **overrides))
    assert key in str(error.value)
    assert not out.exists()  # nothing was computed or written


def test_config_from_toml_resolves_paths_relative_to_the_file(data, tmp_path):
    import tomli_w

    config = make_config(data, tmp_path / "ignored")
    config["out"] = "results"
    (tmp_path / "analysis.toml").write_text(tomli_w.dumps(config))
    cfg = pipeline.validate(tmp_path / "analysis.toml")
    assert cfg["out"] == str(tmp_path / "results")
    assert cfg["steps"] == list(pipeline.STEPS)


def test_models_accept_aliases(data, tmp_path):
    cfg = pipeline.validate(make_config(data, tmp_path, models=["autoencoder", "depth_euclidean", "class_object"]))
    assert cfg["models"] == MODELS


# --------------------------------------------------------------------------------------------
# running and resuming


def test_run_writes_every_step_and_carries_the_config(reference):
    out, summary = reference
    assert summary.report == out / "report.html" and summary.report.exists()
    for key, status in summary.statuses.items():
        assert status == "complete" or status.startswith("skipped: ") and "not available yet" in status, (key, status)
    encoding = out / "encoding-CSI1.zarr"
    if stores.is_complete(encoding):
        config = json.loads(stores.open_results(encoding).attrs["pipeline_config"])
        assert config["encode"]["test_sessions"] == [2]
    ledger = json.loads((out / "pipeline.json").read_text())
    assert set(ledger) == set(summary.statuses)


def test_rerun_skips_completed_steps(data, reference, tmp_path):
    out, first = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config = make_config(data, copy)
    summary = pipeline.run(config, client=None, steps=[s for s in pipeline.STEPS if s != "report"])
    done = {k for k, s in first.statuses.items() if s == "complete" and k != "report"}
    assert {k for k, s in summary.statuses.items() if s == "done before"} == done
    # a changed permutation setting recomputes permute (and only what depends on it)
    config["permute"]["n_permutations"] = 20
    again = pipeline.run(config, client=None, steps=["permute", "partition"])
    if "permute/CSI1" in done:
        assert again.statuses["permute/CSI1"] == "complete"
        assert stores.open_results(copy / "permutation-CSI1.zarr").attrs["parameters"].count('"n_permutations": 20') == 1
    if "partition/CSI1" in done:
        assert again.statuses["partition/CSI1"] == "done before"


@pytest.mark.cluster
def test_worker_killed_mid_step_gives_identical_results(data, reference, tmp_path):
    ref, summary = reference
    step = "encode/CSI1"
    assert summary.statuses.get(step) == "complete", summary.statuses
    out = tmp_path / "out"
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(DuringStep(step, str(out / "pipeline.json"), str(marker)))
        pipeline.run(make_config(data, out, steps=NO_REPORT), client=client)
    assert marker.exists() and marker.read_text() == step, f"no worker was killed during {step}"
    assert_same_results(out, ref)  # Dask re-ran the lost tasks; pure tasks give the same results


KILLER = """
import os, signal, sys
from neurotask import stores

original = stores.RegionWriter.write

def write(self, data, region):
    if self.path.name.startswith(sys.argv[2]):  # die mid-step, with the store partly written
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, data, region)

stores.RegionWriter.write = write
from neurotask.cli import app
app(["run", sys.argv[1]])
"""


@pytest.mark.cluster
def test_process_killed_mid_run_resumes_without_redoing_finished_steps(data, reference, tmp_path):
    import tomli_w

    ref, summary = reference
    victim = "partition-CSI1"
    assert summary.statuses.get("partition/CSI1") == "complete", summary.statuses
    out = tmp_path / "out"
    config = make_config(data, out, steps=NO_REPORT)
    path = tmp_path / "analysis.toml"
    path.write_text(tomli_w.dumps(config))
    killed = subprocess.run([sys.executable, "-c", KILLER, str(path), victim], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ledger = json.loads((out / "pipeline.json").read_text())
    finished = {k for k, r in ledger.items() if r["status"] == "complete"}
    running = [k for k, r in ledger.items() if r["status"] == "running"]
    assert len(running) == 1 and (out / f"{victim}.zarr").exists() and not stores.is_complete(out / f"{victim}.zarr")
    created = {p.name: stores.open_store(p).attrs["created"] for p in out.glob("*.zarr") if stores.is_complete(p)}

    resumed = subprocess.run([str(BIN / "neurotask"), "run", str(path)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ledger = json.loads((out / "pipeline.json").read_text())
    assert all(ledger[k]["status"] == "complete" for k in finished)
    for name, stamp in created.items():  # finished stores were not rewritten
        assert stores.open_store(out / name).attrs["created"] == stamp, name
    assert_same_results(out, ref)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# what a nanny sets in the workers it spawns (distributed's pre-spawn-environ); a worker without
# a nanny needs it set by hand, or oversubscribed BLAS reorders float sums
_SINGLE_THREADED_BLAS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture
def scheduler_process(tmp_path):
    """A `dask scheduler` and one `dask worker` on loopback, as separate processes."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                   address.rsplit(":", 1)[1], "--no-dashboard"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    processes.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "2",
                                       "--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path / "worker")],
                                      env={**env, **_SINGLE_THREADED_BLAS},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a graceful shutdown stuck on a loaded machine
                process.kill()
                process.wait()


@pytest.mark.cluster
def test_run_on_a_separate_scheduler_process(data, reference, tmp_path, scheduler_process):
    import tomli_w

    ref, _ = reference
    out = tmp_path / "out"
    path = tmp_path / "analysis.toml"
    path.write_text(tomli_w.dumps(make_config(data, out, steps=NO_REPORT)))
    result = subprocess.run([str(BIN / "neurotask"), "run", str(path), "--scheduler", scheduler_process],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"scheduler {scheduler_process}" in result.stderr
    assert_same_results(out, ref)


def test_several_subjects_average_their_task_similarity(data, tmp_path):
    from neurotask.stats import task_similarity

    out = tmp_path / "out"
    config = make_config(data, out, subjects=["CSI1", "CSI2"], steps=["ingest", "encode", "permute"])
    summary = pipeline.run(config)
    assert summary.statuses.get("task_similarity") == "complete", summary.statuses
    stored = stores.open_results(out / "task_similarity.zarr")
    assert list(stored["subject"].values) == ["CSI1", "CSI2"]
    per_subject = [
        task_similarity(stores.open_results(out / f"encoding-{s}.zarr"), stores.open_results(out / f"permutation-{s}.zarr"))
        for s in ("CSI1", "CSI2")
    ]
    # reference: each subject's matrix from the library, averaged here (NaN-aware, as documented)
    with warnings.catch_warnings():  # a model without significant voxels in both subjects stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(np.stack([m.values for m in per_subject]), axis=0)
    assert np.isfinite(expected).sum() >= 4
    np.testing.assert_allclose(stored["mean"].values, expected, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(stored["similarity"].values, np.stack([m.values for m in per_subject]), equal_nan=True)


def test_open_outputs_finds_every_store(reference):
    out, _ = reference
    found = pipeline.open_outputs(out)
    assert found["config"]["models"] == MODELS
    subject = found["subjects"].get("CSI1", {})
    for name in ("responses", "encoding", "permutation", "partition"):
        assert (name in subject) == stores.is_complete(out / f"{name}-CSI1.zarr")
    assert isinstance(found.get("rsa", xr.Dataset()), xr.Dataset)


def test_report_only_run_needs_no_cluster(reference, tmp_path):
    out, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["out"] = str(copy)
    summary = pipeline.run(cfg, steps=["report"])
    assert summary.statuses == {"report": "complete"}
    assert "RSA across models" in (copy / "report.html").read_text()


# the typed config follows the library: every key is an argument of the step's function, and every
# argument of it is a key or one the pipeline sets itself (so a new argument cannot be forgotten)
STEP_LIBRARY = {
    "extract": (nt.features.extract_features, {"images", "store"}),
    "ingest": (nt.fmri.load_bold5000, {"root", "store"}),
    "rsa": (nt.rsa.model_similarity, {"subsets"}),
    "encode": (nt.encoding.fit, set()),
    "permute": (nt.stats.permutation_test, set()),
    "partition": (nt.stats.variance_partition, {"pairs"}),
}


@pytest.mark.parametrize("section", sorted(STEP_LIBRARY))
def test_config_sections_follow_the_library_signatures(section):
    import dataclasses
    import inspect

    from neurotask.pipeline import config

    function, pipeline_keys = STEP_LIBRARY[section]
    parameters = set(inspect.signature(function).parameters) - {"fit_kwargs"}
    keys = {f.name for f in dataclasses.fields(config.SECTIONS[section])}
    reserved = set(config.RESERVED.get(section, {}))
    assert keys - pipeline_keys <= parameters, f"[{section}] keys the function does not take"
    assert parameters <= keys | reserved | {"features", "responses", "results", "client", "progress", "subject"}, \
        f"[{section}] arguments missing from the typed config"


def test_config_reference_lists_every_key():
    import dataclasses

    from neurotask.pipeline import config

    text = pipeline.reference()
    for section, schema in config.SECTIONS.items():
        assert (f"[{section}]" if section else "top level") in text
        for f in dataclasses.fields(schema):
            assert f"  {f.name} (" in text, f"{section}.{f.name}"
    assert "encode.standardize" not in text and "standardize (true or false)" in text
