"""neurotask.cluster: validation, the SLURM job script, a local client that cleans up after itself."""

from __future__ import annotations

import dask.array as da
import pytest

from neurotask.cluster import SLURM_OPTIONS, describe, get_client, slurm_cluster


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

    from neurotask import cluster as cluster_module
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
