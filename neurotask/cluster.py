"""Dask clients for neurotask: an embedded LocalCluster, an existing scheduler, or SLURM.

Library functions never start clusters; they take an optional ``client`` or use the current one.
This module is what ``neurotask.pipeline`` and the command line use to get one:

* default — an embedded :class:`distributed.LocalCluster` sized to the machine (one worker
  process per core up to four, BLAS single-threaded in each, see DESIGN §6);
* ``scheduler="tcp://host:port"`` — connect to a scheduler someone already runs
  (``dask scheduler`` / ``dask worker``, or a cluster manager);
* ``cluster="slurm"`` — a :class:`dask_jobqueue.SLURMCluster` whose jobs run the workers.

Every client prints its dashboard address. The client returned is a context manager that closes
the cluster it started (and only that one) on exit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.system
from distributed import Client, LocalCluster
from distributed.deploy.utils import nprocesses_nthreads
from rich.console import Console

__all__ = ["CLUSTERS", "SLURM_OPTIONS", "ClusterClient", "describe", "get_client", "slurm_cluster"]

#: Where workers come from.
CLUSTERS: dict[str, str] = {
    "local": "an embedded LocalCluster on this machine",
    "slurm": "a dask_jobqueue.SLURMCluster whose SLURM jobs run the workers",
}

#: The SLURM settings ``get_client(cluster="slurm", slurm_options=...)`` understands.
SLURM_OPTIONS: dict[str, str] = {
    "cores": "cores per job (default: threads_per_worker x processes, else 4)",
    "memory": "memory per job, e.g. '32GB' (default: memory_limit x processes, else '16GB')",
    "processes": "worker processes per job (default 1)",
    "walltime": "job time limit, 'HH:MM:SS' (default '01:00:00')",
    "lifetime": "worker lifetime, e.g. '55m': workers retire gracefully before the walltime kills them",
    "lifetime_stagger": "random spread of worker lifetimes, e.g. '4m' (default '4m' with a lifetime)",
    "gpus": "GPUs per job, requested with '#SBATCH --gres=gpu:N'",
    "queue": "SLURM partition",
    "account": "SLURM account to charge",
    "job_extra_directives": "further '#SBATCH' lines, e.g. ['--constraint=a100']",
    "job_script_prologue": "shell lines run before the worker starts, e.g. ['module load cuda']",
    "local_directory": "worker scratch directory on the compute nodes",
    "log_directory": "directory for the jobs' stdout/stderr",
    "interface": "network interface the workers listen on, e.g. 'ib0'",
    "python": "python executable on the compute nodes",
}

_SCHEDULER_PROTOCOLS = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")

_console = Console(stderr=True)


class ClusterClient(Client):
    """A :class:`distributed.Client` that also closes the cluster object it was started on."""

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the client, then the cluster it owns."""
        try:
            return super().close(*args, **kwargs)
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _machine_size(workers: int | None, threads_per_worker: int | None) -> tuple[int, int]:
    cores = dask.system.CPU_COUNT
    if workers is None and threads_per_worker is None:
        return nprocesses_nthreads(cores)
    if workers is None:
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return workers, max(1, cores // workers)
    return workers, threads_per_worker


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None; got {value!r}")


def slurm_cluster(
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    slurm_options: Mapping[str, Any] | None = None,
) -> Any:
    """Build (without scaling) a :class:`dask_jobqueue.SLURMCluster` from neurotask settings.

    Parameters
    ----------
    workers : int, optional
        Number of SLURM jobs to request once scaled (not requested here).
    threads_per_worker : int, optional
        Threads per worker process; sets ``cores`` when ``slurm_options`` does not.
    memory_limit : str, optional
        Memory per worker process, e.g. ``"8GB"``; sets ``memory`` when ``slurm_options`` does not.
    slurm_options : mapping, optional
        Keys of :data:`SLURM_OPTIONS` (cores, memory, walltime, lifetime, gpus, queue, …).

    Returns
    -------
    dask_jobqueue.SLURMCluster
        Call ``.job_script()`` to see the batch script, ``.scale(jobs=n)`` to submit jobs.

    Examples
    --------
    >>> cluster = slurm_cluster(slurm_options={"walltime": "02:00:00", "gpus": 1})  # doctest: +SKIP
    >>> print(cluster.job_script())                                                # doctest: +SKIP
    """
    options = dict(slurm_options or {})
    unknown = sorted(set(options) - set(SLURM_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown slurm_options {unknown}; expected keys among {sorted(SLURM_OPTIONS)} "
            f"(e.g. slurm_options={{'walltime': '02:00:00', 'gpus': 1}})"
        )
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as error:  # an optional dependency
        raise ImportError(
            "cluster='slurm' needs dask-jobqueue; install it with `pip install 'neurotask[cluster]'`"
        ) from error
    processes = int(options.pop("processes", 1))
    cores = options.pop("cores", None) or (threads_per_worker or 4) * processes
    memory = options.pop("memory", None)
    if memory is None:
        memory = f"{_gigabytes(memory_limit) * processes:g}GB" if memory_limit else "16GB"
    worker_extra_args = []
    lifetime = options.pop("lifetime", None)
    stagger = options.pop("lifetime_stagger", "4m")
    if lifetime:
        worker_extra_args += ["--lifetime", str(lifetime), "--lifetime-stagger", str(stagger)]
    directives = list(options.pop("job_extra_directives", []))
    gpus = options.pop("gpus", None)
    if gpus:
        _check_positive("slurm_options['gpus']", gpus)
        directives.append(f"--gres=gpu:{gpus}")
    return SLURMCluster(
        cores=int(cores),
        memory=str(memory),
        processes=processes,
        walltime=str(options.pop("walltime", "01:00:00")),
        worker_extra_args=worker_extra_args,
        job_extra_directives=directives,
        **options,
    )


def _gigabytes(memory: str) -> float:
    from dask.utils import parse_bytes

    return parse_bytes(memory) / 1e9


def get_client(
    scheduler: str | None = None,
    cluster: str = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    processes: bool = True,
    slurm_options: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> Client:
    """A Dask client on a local cluster, an existing scheduler, or SLURM; prints the dashboard.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:8786"``); the client only connects, and
        closing it leaves the scheduler and its workers running.
    cluster : {"local", "slurm"}
        Where to start workers when no ``scheduler`` is given (see :data:`CLUSTERS`).
    workers : int, optional
        Worker processes (local) or SLURM jobs (slurm). Local default: sized to the machine
        (one process per core up to 4 cores, then fewer processes with more threads).
    threads_per_worker : int, optional
        Threads per worker.
    memory_limit : str, optional
        Memory per worker, e.g. ``"4GB"`` (local default: the machine's memory split evenly).
    processes : bool
        Local workers as processes (True, the default) or threads in this process.
    slurm_options : mapping, optional
        SLURM settings, keys of :data:`SLURM_OPTIONS`; only with ``cluster="slurm"``.
    quiet : bool
        Do not print the dashboard address.

    Returns
    -------
    distributed.Client
        The current default client; use it as a context manager to close what it started.

    Examples
    --------
    >>> with get_client(workers=2, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     fit = nt.encoding.fit(feats, resp)
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; expected one of {sorted(CLUSTERS)}")
    _check_positive("workers", workers)
    _check_positive("threads_per_worker", threads_per_worker)
    if slurm_options and cluster != "slurm":
        raise ValueError(f"slurm_options were given but cluster={cluster!r}; pass cluster='slurm' to use them")
    if scheduler is not None:
        if cluster != "local":
            raise ValueError(
                f"pass either scheduler={scheduler!r} (connect to a running scheduler) or "
                f"cluster={cluster!r} (start one), not both"
            )
        if not str(scheduler).startswith(_SCHEDULER_PROTOCOLS):
            raise ValueError(
                f"scheduler must be a Dask scheduler address such as 'tcp://127.0.0.1:8786'; got {scheduler!r}"
            )
        client = Client(scheduler)
        where = f"scheduler {scheduler}"
    elif cluster == "slurm":
        slurm = slurm_cluster(
            workers=workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
            slurm_options=slurm_options,
        )
        slurm.scale(jobs=workers or 1)
        client = ClusterClient(slurm)
        where = f"SLURM ({workers or 1} job(s))"
    else:
        n_workers, n_threads = _machine_size(workers, threads_per_worker)
        local = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=n_threads,
            memory_limit=memory_limit or "auto",
            processes=processes,
            dashboard_address=":0",
        )
        client = ClusterClient(local)
        where = f"local cluster ({n_workers} worker(s) x {n_threads} thread(s))"
    if not quiet:
        _console.print(f"Dask {where}; dashboard: {client.dashboard_link}")
    return client


def describe(client: Client) -> dict[str, Any]:
    """A JSON-able summary of a client's cluster (for provenance): scheduler, workers, threads."""
    info = client.scheduler_info(n_workers=-1)
    workers: Sequence[Mapping[str, Any]] = list(info.get("workers", {}).values())
    return {
        "scheduler": info.get("address", ""),
        "workers": len(workers),
        "threads": int(sum(w.get("nthreads", 0) for w in workers)),
    }

