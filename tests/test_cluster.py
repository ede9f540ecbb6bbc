"""neurotask.cluster: validation, the SLURM job script, a local client that cleans up after itself, GPU workers."""

from __future__ import annotations

import os
import sys
import types

import dask.array as da
import dask.system
import pytest
from distributed import LocalCluster
from distributed.deploy.utils import nprocesses_nthreads

from neurotask.backend import gpu_resources
from neurotask.cluster import SLURM_OPTIONS, PinDevice, describe, get_client, slurm_cluster


def test_slurm_job_script_carries_every_setting():
    cluster = slurm_cluster(
        workers=3,
        threads_per_worker=8,
        memory_limit="16GB",
        slurm_options={
            "walltime": "02:30:00", "lifetime": "140m", "lifetime_stagger": "5m", "gpus": 2, "queue": "gpu",
            "account": "tarrlab", "job_extra_directives": ["--constraint=a100"],
        },
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -t 02:30:00" in script
    assert "#SBATCH --gres=gpu:2" in script
    assert "#SBATCH --constraint=a100" in script
    assert "#SBATCH -p gpu" in script and "#SBATCH -A tarrlab" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=15G" in script  # 16 GB = 14.9 GiB, which dask-jobqueue rounds to 15G
    assert "--lifetime 140m --lifetime-stagger 5m" in script
    assert "--nthreads 8" in script


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster": "kubernetes"}, "unknown cluster 'kubernetes'"),
        ({"scheduler": "localhost:8786"}, "scheduler must be a Dask scheduler address"),
        ({"scheduler": "tcp://127.0.0.1:1", "cluster": "slurm"}, "not both"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"slurm_options": {"walltime": "01:00:00"}}, "pass cluster='slurm'"),
    ],
)
def test_get_client_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_client(**kwargs)


def test_unknown_slurm_option_is_named():
    with pytest.raises(ValueError, match=r"unknown slurm_options \['gpu'\]"):
        slurm_cluster(slurm_options={"gpu": 1})
    assert "gpus" in SLURM_OPTIONS


@pytest.mark.cluster
def test_local_client_computes_and_closes_its_cluster(capsys):
    with get_client(workers=1, threads_per_worker=2, processes=False) as client:
        assert describe(client) == {"scheduler": client.scheduler.address, "workers": 1, "threads": 2}
        assert float(da.arange(10, chunks=3).sum().compute()) == 45.0
        cluster = client.cluster
    assert client.status == "closed"
    assert cluster.status.name == "closed"
    assert "dashboard:" in capsys.readouterr().err


@pytest.mark.cluster
def test_config_cluster_section_makes_the_slurm_job_script(monkeypatch):
    import dask_jobqueue

    from neurotask.cluster import slurm as cluster_module
    from neurotask.pipeline import client_from_config

    requested = []
    monkeypatch.setattr(dask_jobqueue.SLURMCluster, "adapt", lambda self, minimum_jobs=0, **kw: requested.append(minimum_jobs))
    # no SLURM here: skip sbatch --test-only and the wait for workers (tests/test_slurm.py runs them for real)
    monkeypatch.setattr(cluster_module, "_check_schedulable", lambda cluster: None)
    monkeypatch.setattr(cluster_module, "_wait_for_slurm_workers", lambda cluster, client, timeout, quiet: [])
    section = {"cluster": "slurm", "workers": 4, "threads_per_worker": 6,
               "slurm": {"walltime": "04:00:00", "memory": "32GB", "lifetime": "230m", "gpus": 1}}
    with client_from_config({"cluster": section}) as client:
        script = client.cluster.job_script()
    assert requested[0] == 4  # jobs kept up (closing scales back to 0)
    for line in ("#SBATCH -t 04:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=6", "--lifetime 230m"):
        assert line in script


# GPU workers: torch's device count is faked (no GPU here); clusters run as threads (processes=False) to be fast

@pytest.fixture
def two_gpus(monkeypatch):
    """This machine as if it had an NVIDIA driver and two CUDA devices, and no dask-cuda."""
    import torch

    from neurotask.cluster import local as cluster_module

    monkeypatch.setattr(cluster_module, "_nvidia_driver", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # `import dask_cuda` raises ImportError


def _resources(client):
    return [info["resources"] for info in client.scheduler_info(n_workers=-1)["workers"].values()]


@pytest.mark.cluster
def test_one_gpu_worker_per_device_advertising_the_gpu_resource(two_gpus, capsys):
    with get_client(processes=False) as client:
        assert _resources(client) == [{"GPU": 1}, {"GPU": 1}]
        assert describe(client)["threads"] == 2 * max(1, dask.system.CPU_COUNT // 2)  # the cores shared
        assert gpu_resources(client) == {"GPU": 1}
        assert client.submit(lambda: 1, resources=gpu_resources(client)).result() == 1
    assert "2 GPU worker(s)" in capsys.readouterr().err


@pytest.mark.cluster
def test_gpu_workers_as_processes_each_see_one_device(two_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # the devices this process may use
    with get_client(threads_per_worker=1, quiet=True) as client:
        seen = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
    assert sorted(seen.values()) == ["4", "7"]


def test_pin_device_gives_worker_i_device_i(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    PinDevice(["3", "5"]).setup(types.SimpleNamespace(name=1))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"


@pytest.mark.cluster
def test_dask_cuda_is_preferred_when_installed(two_gpus, monkeypatch):
    calls = []

    class LocalCUDACluster(LocalCluster):  # stands in for dask_cuda's: records what it was given
        def __init__(self, **kwargs):
            calls.append(kwargs)
            super().__init__(processes=False, **kwargs)  # the real one starts a process per device

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = LocalCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    with get_client(threads_per_worker=1, quiet=True) as client:
        assert isinstance(client.cluster, LocalCUDACluster)
        assert _resources(client) == [{"GPU": 1}, {"GPU": 1}]
    assert calls[0]["n_workers"] == 2 and calls[0]["resources"] == {"GPU": 1}
    assert "processes" not in calls[0]  # LocalCUDACluster refuses processes=False


@pytest.mark.cluster
@pytest.mark.parametrize(("count", "kwargs"), [(0, {}), (2, {"gpus": 0}), (2, {"workers": 1})])
def test_cpu_workers_without_gpus_or_when_workers_are_fixed(two_gpus, monkeypatch, count, kwargs):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with get_client(processes=False, quiet=True, **kwargs) as client:
        n_workers = kwargs.get("workers") or nprocesses_nthreads(dask.system.CPU_COUNT)[0]
        assert _resources(client) == [{}] * n_workers
        assert gpu_resources(client) is None


def test_no_driver_no_torch_import(monkeypatch):
    import torch

    from neurotask.cluster import local as cluster_module

    monkeypatch.setattr(cluster_module, "_nvidia_driver", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert cluster_module._cuda_device_count() == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"gpus": -1}, "gpus must be None"),
    ({"gpus": True}, "gpus must be None"),
    ({"gpus": 1, "cluster": "slurm"}, r"slurm_options=\{'gpus': 1\}"),
    ({"gpus": 2, "workers": 3}, "disagree"),
])
def test_get_client_rejects_bad_gpus(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_client(**kwargs)


@pytest.mark.parametrize(("options", "resources"), [
    ({"gpus": 1}, "--resources GPU=1"),
    ({"gpus": 4, "processes": 2}, "--resources GPU=2"),  # the job's GPUs split among its worker processes
])
def test_slurm_workers_advertise_their_jobs_gpus(options, resources):
    cluster = slurm_cluster(slurm_options=options)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert f"#SBATCH --gres=gpu:{options['gpus']}" in script
    assert resources in script


def test_slurm_without_gpus_advertises_none():
    cluster = slurm_cluster()
    try:
        assert "--resources" not in cluster.job_script()
    finally:
        cluster.close()


def test_slurm_fewer_gpus_than_processes_is_refused():
    with pytest.raises(ValueError, match=r"\['gpus'\] \(1\) is less than \['processes'\] \(2\)"):
        slurm_cluster(slurm_options={"gpus": 1, "processes": 2})


def test_job_watcher_prints_each_ended_job_and_its_replacement(monkeypatch, capsys):
    from neurotask.cluster import slurm

    cluster = types.SimpleNamespace(workers={"a": types.SimpleNamespace(job_id="12"),
                                             "b": types.SimpleNamespace(job_id="13")})
    monkeypatch.setattr(slurm, "_job_states", lambda ids: {i: ("CANCELLED", "") for i in ids})
    watcher = slurm.JobWatcher(cluster, ["12", "13"])
    watcher.poll()
    assert capsys.readouterr().err == ""  # nothing changed
    cluster.workers = {"b": cluster.workers["b"], "c": types.SimpleNamespace(job_id="15")}
    watcher.poll()
    err = capsys.readouterr().err
    assert "SLURM worker job 12 ended (CANCELLED)" in err
    assert "SLURM job(s) 15 submitted to keep 2 worker job(s) running" in err and "13" not in err
    watcher.poll()
    assert capsys.readouterr().err == ""  # each change is told once


@pytest.mark.cluster
def test_local_worker_processes_start_with_neurotask_malloc_settings():
    from neurotask.cluster.local import WORKER_MALLOC

    def started_with() -> dict[str, str]:  # the environment the process was exec'd with (what glibc read)
        with open("/proc/self/environ", "rb") as file:
            pairs = [item.split(b"=", 1) for item in file.read().split(b"\0") if b"=" in item]
        return {key.decode(): value.decode() for key, value in pairs}

    with get_client(workers=1, threads_per_worker=1, quiet=True) as client:
        (env,) = client.run(started_with).values()
    for key, value in WORKER_MALLOC.items():
        assert env[key] == str(value)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "65536"  # Dask's own trimming is kept


def test_slurm_workers_start_with_the_local_workers_malloc_settings():
    from neurotask.cluster.local import WORKER_MALLOC

    cluster = slurm_cluster(slurm_options={"job_script_prologue": ["module load cuda"]})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    exports = [lines.index(f"export {key}={value}") for key, value in WORKER_MALLOC.items()]
    assert max(exports) < lines.index("module load cuda")  # the user's prologue still runs, after ours
