"""neurotask on a real one-node SLURM cluster: workers as SLURM jobs, the pipeline, faults, limits.

The ``slurm`` fixture (tests/slurm_cluster.py) runs munged, slurmctld and slurmd on this machine.
Jobs ask for 1 core and 1 GB each, so two fit on a 2-core node. A tiny synthetic subject (2
sessions, an 8x10x8 grid, 3 models of 32 planted features) and an in-process run of the same
config on a local cluster, what every SLURM run must reproduce, are built once per session
(tests/small_subject.py, shared with the pipeline tests).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
from small_subject import make_config
from worker_faults import DuringStep

from neurotask import pipeline, stores
from neurotask.cluster import get_client, slurm_cluster

BIN = Path(sys.executable).parent

# SLURM's workers cannot import the test modules: the worker plugin travels by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules[DuringStep.__module__])


def slurm_section(log_directory: Path, **options) -> dict:
    """A ``[cluster]`` section for two 1-core SLURM jobs that fit this node."""
    slurm = {"cores": 1, "memory": "1GB", "walltime": "00:10:00", "log_directory": str(log_directory), **options}
    return {"cluster": "slurm", "workers": 2, "slurm": slurm}


@pytest.fixture(scope="module")
def data(small_subject):
    """The session's small subject (tests/small_subject.py)."""
    return small_subject


@pytest.fixture(scope="module")
def reference(small_reference):
    """The output folder of the whole pipeline on a local (in-process) cluster."""
    out, summary = small_reference
    assert all(status == "complete" for status in summary.statuses.values()), summary.statuses
    return out


def assert_same_results(out: Path, reference: Path, names: list[str]) -> None:
    """The named stores are complete in both runs and hold identical arrays, bit for bit."""
    for name in names:
        a, b = stores.open_store(out / f"{name}.zarr"), stores.open_store(reference / f"{name}.zarr")
        assert stores.is_complete(out / f"{name}.zarr"), name
        assert set(a.data_vars) == set(b.data_vars), name
        for variable in a.data_vars:
            np.testing.assert_array_equal(a[variable].values, b[variable].values, err_msg=f"{name}.{variable}")


ALL_STORES = ["responses-CSI1", "noise_ceiling-CSI1", "rsa", "encoding-CSI1", "permutation-CSI1",
              "task_similarity", "partition-CSI1"]

# --------------------------------------------------------------------------------------------
# settings (no SLURM needed)


@pytest.mark.parametrize(
    ("walltime", "lifetime", "stagger", "seconds"),
    [("01:00:00", "55m", "150s", 3600), ("00:10:00", "9m", "30s", 600), ("2-00:00:00", "2875m", "150s", 172800),
     ("90", "85m", "150s", 5400)],
)
def test_default_lifetime_ends_before_the_walltime(walltime, lifetime, stagger, seconds):
    from dask.utils import parse_timedelta

    cluster = slurm_cluster(slurm_options={"walltime": walltime})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert f"#SBATCH -t {walltime}" in script
    assert f"--lifetime {lifetime} --lifetime-stagger {stagger}" in script
    # the latest a worker retires is lifetime + stagger: before SLURM kills the job
    assert parse_timedelta(lifetime) + parse_timedelta(stagger) < seconds


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"walltime": "01:00:00", "lifetime": "58m"}, r"slurm_options\['lifetime'\] \(58m\) plus"),
        ({"walltime": "01:00:00", "lifetime": "60m", "lifetime_stagger": "0s"}, "must end before the walltime"),
        ({"walltime": "1 hour"}, r"slurm_options\['walltime'\] must be a SLURM time"),
        ({"start_timeout": "1h"}, r"cluster\.slurm\.start_timeout\) must be a positive number of seconds"),
    ],
)
def test_lifetime_past_the_walltime_and_bad_times_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        slurm_cluster(slurm_options=options)


# --------------------------------------------------------------------------------------------
# a real SLURM


@pytest.mark.slurm
def test_workers_are_slurm_jobs_kept_up_with_a_lifetime(slurm, tmp_path, capsys):
    section = slurm_section(tmp_path / "logs")
    with get_client(cluster="slurm", workers=2, slurm_options=section["slurm"]) as client:
        client.wait_for_workers(2, timeout=60)
        job_ids = sorted(client.run(os.getenv, "SLURM_JOB_ID").values())
        queue = slurm.jobs()
        lifetimes = client.run(lambda dask_worker: dask_worker.lifetime)
    err = capsys.readouterr().err
    assert len(set(job_ids)) == 2, job_ids
    for job_id in job_ids:  # each worker runs inside its own running SLURM job
        assert queue[job_id][:2] == ("dask-worker", "RUNNING"), queue
        assert (tmp_path / "logs" / f"dask-worker-{job_id}.err").exists()
    assert all(510 <= t <= 570 for t in lifetimes.values()), lifetimes  # 10 min walltime: 9m ± 30s
    assert re.search(r"dashboard: http://\S+", err), err
    printed = re.search(r"SLURM job id\(s\) ([\d, ]+)", err)
    assert printed and sorted(printed.group(1).replace(" ", "").split(",")) == job_ids, err
    slurm.wait_for_no_jobs(timeout=30, cancel=False)  # closing the client cancelled them


@pytest.mark.slurm
def test_a_worker_retiring_at_its_lifetime_is_replaced_by_a_new_job(slurm, tmp_path):
    options = slurm_section(tmp_path / "logs", lifetime="8s", lifetime_stagger="0s")["slurm"]
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), \
            get_client(cluster="slurm", workers=1, slurm_options=options, quiet=True) as client:
        first = client.run(os.getenv, "SLURM_JOB_ID")
        deadline, now = time.monotonic() + 90, first
        while set(now.values()) <= set(first.values()) and time.monotonic() < deadline:
            time.sleep(1)
            now = client.run(os.getenv, "SLURM_JOB_ID", on_error="ignore")
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    (old,) = first.values()
    assert len(now) == 1 and old not in now.values(), (first, now)
    assert old not in slurm.jobs()  # its job ended long before its walltime (10 min)
    log = (tmp_path / "logs" / f"dask-worker-{old}.err").read_text()
    assert "Closing worker gracefully" in log and "Reason: worker-lifetime-reached" in log, log[-2000:]


@pytest.mark.slurm
def test_pipeline_on_slurm_gives_the_local_results(slurm, data, reference, tmp_path):
    import tomli_w

    out = tmp_path / "out"
    path = tmp_path / "analysis.toml"
    # compared with the reference store by store; the report (~6 s of figures, no Dask) is checked on the local runs
    steps = [step for step in pipeline.STEPS if step != "report"]
    path.write_text(tomli_w.dumps(make_config(data, out, cluster=slurm_section(tmp_path / "logs"), steps=steps)))
    seen: set[str] = set()
    with subprocess.Popen([str(BIN / "neurotask"), "run", str(path)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True, env=slurm.env) as run:
        while run.poll() is None:  # squeue shows the worker jobs while the steps run
            jobs = slurm.jobs().items()
            seen |= {job for job, (name, state, _) in jobs if (name, state) == ("dask-worker", "RUNNING")}
            time.sleep(0.5)
        err = run.stderr.read()
    assert run.returncode == 0, err[-3000:]
    assert re.search(r"dashboard: http://\S+", err), err[-3000:]
    printed = set(re.search(r"SLURM job id\(s\) ([\d, ]+)", err).group(1).replace(" ", "").split(","))
    assert len(printed) == 2 and printed <= seen, (printed, seen)
    for job_id in printed:  # their workers joined this run's scheduler
        assert "Registered to" in (tmp_path / "logs" / f"dask-worker-{job_id}.err").read_text()
    ledger = json.loads((out / "pipeline.json").read_text())
    assert all(record["status"] == "complete" for record in ledger.values()), ledger
    assert_same_results(out, reference, ALL_STORES)


class _CancelOwnJob(DuringStep):
    """``scancel`` this worker's SLURM job at its first task while ``step`` runs, once."""

    def act(self) -> None:
        Path(self.marker).write_text(os.environ["SLURM_JOB_ID"])
        subprocess.run(["scancel", os.environ["SLURM_JOB_ID"]], check=True, timeout=30)
        time.sleep(60)  # SLURM kills this job: it finishes nothing more


@pytest.mark.slurm
def test_worker_job_cancelled_mid_encode_is_replaced_and_results_are_identical(slurm, data, reference, tmp_path,
                                                                                capsys):
    out, marker = tmp_path / "out", tmp_path / "cancelled"
    config = make_config(data, out, cluster=slurm_section(tmp_path / "logs"), steps=["extract", "ingest", "encode"])
    # the cluster drops a lost job after lost-worker-timeout (15 s by default), then adapt() replaces it
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}), \
            pipeline.client_from_config(config) as client:
        client.register_plugin(_CancelOwnJob("encode/CSI1", str(out / "pipeline.json"), str(marker)))
        summary = pipeline.run(config, client=client)
        assert marker.exists(), "no worker job was cancelled during encode/CSI1"
        cancelled = marker.read_text()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = set(client.run(os.getenv, "SLURM_JOB_ID", on_error="ignore").values())
            if cancelled not in running and len(running) == 2:
                break
            time.sleep(1)
        told = capsys.readouterr().err
        while time.monotonic() < deadline and "submitted to keep 2 worker job(s)" not in told:  # polled every 5 s
            time.sleep(1)
            told += capsys.readouterr().err
    assert f"SLURM worker job {cancelled} ended" in told and "submitted to keep 2 worker job(s)" in told, told
    assert summary.statuses["encode/CSI1"] == "complete", summary.statuses
    assert cancelled not in running and len(running) == 2, (cancelled, running)
    assert_same_results(out, reference, ["responses-CSI1", "noise_ceiling-CSI1", "encoding-CSI1"])


@pytest.mark.slurm
def test_job_larger_than_every_node_fails_fast_naming_the_memory(slurm, tmp_path):
    options = slurm_section(tmp_path / "logs", memory=f"{2 * slurm.memory_mb}MB")["slurm"]
    earlier = set(slurm.jobs())  # an earlier test's job may still be COMPLETING
    start = time.monotonic()
    message = (r"cluster\.slurm\.memory asks \d+ MB per job "
               rf"but partition '{slurm.partition}' offers at most {slurm.memory_mb} MB")
    with pytest.raises(ValueError, match=message):
        get_client(cluster="slurm", slurm_options=options, quiet=True)
    assert time.monotonic() - start < 60
    assert set(slurm.jobs()) <= earlier  # refused before any job was submitted


@pytest.mark.slurm
def test_job_over_the_partition_time_limit_fails_fast_naming_the_walltime(slurm, tmp_path):
    # sbatch accepts it, but SLURM leaves it pending for good (MaxTime is 1 h): with reason PartitionTimeLimit,
    # or PartitionConfig at the first look; either way the partition's limit names the setting
    options = slurm_section(tmp_path / "logs", walltime="02:00:00")["slurm"]
    start = time.monotonic()
    message = (r"pending with reason Partition(TimeLimit|Config)\): cluster\.slurm\.walltime asks 7200 s per job "
               rf"but partition '{slurm.partition}' offers at most 3600 s")
    with pytest.raises(ValueError, match=message):
        get_client(cluster="slurm", slurm_options=options, quiet=True)
    assert time.monotonic() - start < 60
    slurm.wait_for_no_jobs(timeout=30, cancel=False)  # get_client cancelled the pending job


@pytest.mark.slurm
def test_job_whose_worker_cannot_start_fails_fast_pointing_at_its_log(slurm, tmp_path):
    options = slurm_section(tmp_path / "logs", python="/nonexistent/python3")["slurm"]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"ended \(FAILED\) before its worker connected") as error:
        get_client(cluster="slurm", slurm_options=options, quiet=True)
    assert time.monotonic() - start < 60
    log = re.search(r"its log: (\S+)\.", str(error.value)).group(1)
    assert Path(log).parent == tmp_path / "logs" and "/nonexistent/python3" in Path(log).read_text()
    assert "cluster.slurm.python" in str(error.value)
    slurm.wait_for_no_jobs(timeout=30, cancel=False)


@pytest.mark.slurm
def test_job_waiting_for_a_busy_node_times_out_naming_the_setting(slurm, tmp_path):
    blocker = slurm.command("sbatch", "--parsable", "-c", str(slurm.cpus), "-o", "/dev/null", "--wrap", "sleep 120")
    try:
        options = slurm_section(tmp_path / "logs", start_timeout=2)["slurm"]  # the node stays busy: any wait times out
        start = time.monotonic()
        message = r"no SLURM worker job started within 2 s \(cluster\.slurm\.start_timeout\)"
        with pytest.raises(TimeoutError, match=message):
            get_client(cluster="slurm", slurm_options=options, quiet=True)
        assert time.monotonic() - start < 30
    finally:
        slurm.command("scancel", blocker.strip())
    slurm.wait_for_no_jobs(timeout=30, cancel=False)
