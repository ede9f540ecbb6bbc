"""Dask clients for neurotask: an embedded LocalCluster, an existing scheduler, or SLURM.

Library functions never start clusters; they take an optional ``client`` or use the current one.
This module is what ``neurotask.pipeline`` and the command line use to get one:

* default — an embedded :class:`distributed.LocalCluster` sized to the machine (one worker
  process per core up to four, BLAS single-threaded in each, see DESIGN §6). On a machine with
  CUDA devices it starts one worker per device instead, each advertising the Dask resource
  ``GPU=1`` so GPU tasks (``neurotask.backend.gpu_resources``) are routed to them one per device:
  a ``dask_cuda.LocalCUDACluster`` when dask-cuda is installed, else a LocalCluster whose worker
  processes each see one device (``CUDA_VISIBLE_DEVICES``, set by :class:`PinDevice`);
* ``scheduler="tcp://host:port"`` — connect to a scheduler someone already runs
  (``dask scheduler`` / ``dask worker``, or a cluster manager);
* ``cluster="slurm"`` — a :class:`dask_jobqueue.SLURMCluster` whose jobs run the workers. Its
  jobs are kept at ``workers`` (a cancelled, failed or retired job is replaced), checked with
  ``sbatch --test-only`` before any is submitted, and waited for a bounded time: a job SLURM will
  never start fails at once with an error naming the setting. Workers retire before the walltime.
  With ``slurm_options["gpus"]`` the jobs request the GPUs (``--gres``) and their workers
  advertise them as the ``GPU`` resource, so GPU tasks are routed to them.

Every client prints its dashboard address. The client returned is a context manager that closes
the cluster it started (and only that one) on exit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from distributed import Client

from neurotask.cluster._client import ClusterClient, check_positive, console
from neurotask.cluster.local import PinDevice, local_cluster
from neurotask.cluster.slurm import SLURM_OPTIONS, slurm_client, slurm_cluster

__all__ = ["CLUSTERS", "SLURM_OPTIONS", "ClusterClient", "PinDevice", "describe", "get_client", "slurm_cluster"]

#: Where workers come from.
CLUSTERS: dict[str, str] = {
    "local": "an embedded LocalCluster on this machine",
    "slurm": "a dask_jobqueue.SLURMCluster whose SLURM jobs run the workers",
}

_SCHEDULER_PROTOCOLS = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


def get_client(
    scheduler: str | None = None,
    cluster: str = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    processes: bool = True,
    gpus: int | None = None,
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
        Worker processes (local) or SLURM jobs kept running (slurm, default 1). Local default:
        one per CUDA device on a machine with GPUs, else sized to the machine (one process per
        core up to 4 cores, then fewer processes with more threads). Given, it wins over the
        GPU count: workers sized by cores, none advertising a GPU.
    threads_per_worker : int, optional
        Threads per worker (local GPU workers: the machine's cores divided among them).
    memory_limit : str, optional
        Memory per worker, e.g. ``"4GB"`` (local default: the machine's memory split evenly).
    processes : bool
        Local workers as processes (True, the default) or threads in this process. GPU workers
        as threads share every device (``"cuda"`` is torch's current device in each).
    gpus : int, optional
        Local GPU workers, each advertising the Dask resource ``GPU=1`` and, as processes, seeing
        one device of its own (``dask_cuda.LocalCUDACluster`` when dask-cuda is installed). Default:
        one per CUDA device torch sees, none without GPUs or when ``workers`` is given; ``0``: none
        (workers sized by cores). On SLURM use ``slurm_options["gpus"]`` instead.
    slurm_options : mapping, optional
        SLURM settings, keys of :data:`SLURM_OPTIONS`; only with ``cluster="slurm"``.
    quiet : bool
        Do not print the dashboard address (nor, on SLURM, the job ids).

    Returns
    -------
    distributed.Client
        The current default client; use it as a context manager to close what it started. On
        SLURM it returns once the first worker job has started and its worker connected.

    Raises
    ------
    ValueError
        On SLURM, when a worker job could never run (``sbatch --test-only`` refuses it, or it
        pends with a reason such as ``PartitionTimeLimit``); the message names the setting.
    TimeoutError
        On SLURM, when no worker job started within ``slurm_options["start_timeout"]`` seconds.

    Examples
    --------
    >>> with get_client(workers=2, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     fit = nt.encoding.fit(feats, resp)
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; expected one of {sorted(CLUSTERS)}")
    check_positive("workers", workers)
    check_positive("threads_per_worker", threads_per_worker)
    if gpus is not None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus must be None (one worker per CUDA device), 0 (none) or a positive integer; "
                             f"got {gpus!r}")
        if scheduler is not None or cluster != "local":
            raise ValueError(f"gpus={gpus!r} sizes a local cluster; on SLURM pass slurm_options={{'gpus': {gpus}}}, "
                             f"with a scheduler start its workers with `--resources GPU=1`")
        if gpus and workers is not None and workers != gpus:
            raise ValueError(f"workers={workers} and gpus={gpus} disagree: local GPU workers are one per GPU; "
                             f"pass one of them")
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
        client, where = slurm_client(workers, threads_per_worker, memory_limit, slurm_options, quiet)
    else:
        local, where = local_cluster(workers, threads_per_worker, memory_limit, processes, gpus)
        try:
            client = ClusterClient(local)
        except BaseException:
            local.close()
            raise
    if not quiet:
        console.print(f"Dask {where}; dashboard: {client.dashboard_link}", soft_wrap=True)  # links unbroken in logs
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

