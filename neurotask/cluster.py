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

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask.system
from dask.utils import parse_timedelta
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.deploy.utils import nprocesses_nthreads
from rich.console import Console

__all__ = ["CLUSTERS", "SLURM_OPTIONS", "ClusterClient", "PinDevice", "describe", "get_client", "slurm_cluster"]

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
    "walltime": "job time limit, 'HH:MM:SS' or 'D-HH:MM:SS' (default '01:00:00')",
    "lifetime": "worker lifetime, e.g. '55m' (default: the walltime less min(5 min, 10%)): workers retire "
                "gracefully and are replaced before the walltime kills them",
    "lifetime_stagger": "random spread of worker lifetimes, e.g. '4m' (default: half the margin the default "
                        "lifetime leaves, '4m' with a given lifetime)",
    "start_timeout": "seconds to wait for the first worker job to start (default 3600); a job SLURM will "
                     "never start (too large for every node, over the partition's limits) fails at once",
    "gpus": "GPUs per job, requested with '#SBATCH --gres=gpu:N'; its workers advertise them as the Dask "
            "resource GPU (split evenly among the job's processes), so GPU tasks are routed to them",
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


def _nvidia_driver() -> bool:
    """Whether an NVIDIA driver is installed here (``nvidia-smi`` on PATH, or ``/proc/driver/nvidia``)."""
    return shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia")


def _cuda_device_count() -> int:
    """CUDA devices torch sees in this process; 0 without torch or without an NVIDIA driver."""
    # Without a driver torch is not even imported: it would cost every CPU-only client (an ingest,
    # a ridge fit) ~3 s and ~400 MB, what the lazy root package saves them (tests/test_package.py).
    if not _nvidia_driver():
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


class PinDevice(WorkerPlugin):
    """Worker plugin: local worker process ``i`` sees only CUDA device ``devices[i]``.

    It sets ``CUDA_VISIBLE_DEVICES`` when the worker starts, before any task can initialize CUDA,
    so ``"cuda"`` in a task is that worker's own device. For worker processes only: threads in one
    process share its environment.

    Parameters
    ----------
    devices : sequence of str
        Device ordinals or UUIDs as ``CUDA_VISIBLE_DEVICES`` takes them, one per worker name 0, 1, …
    """

    name = "neurotask-pin-device"

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = list(devices)

    def setup(self, worker: Any) -> None:
        """Pin the worker named ``i`` (LocalCluster's names are 0, 1, …) to ``devices[i]``."""
        os.environ["CUDA_VISIBLE_DEVICES"] = self.devices[int(worker.name) % len(self.devices)]


def _visible_devices(n_gpus: int) -> list[str]:
    """The first ``n_gpus`` devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(n_gpus)]
    return devices[:n_gpus]


def _local_cluster(
    workers: int | None, threads_per_worker: int | None, memory_limit: str | None, processes: bool,
    gpus: int | None,
) -> tuple[LocalCluster, str]:
    """The embedded cluster: one worker per CUDA device (unless ``workers`` is fixed or ``gpus=0``), else by cores."""
    n_gpus = gpus if gpus is not None else (0 if workers is not None else _cuda_device_count())
    if n_gpus == 0:
        n_workers, n_threads = _machine_size(workers, threads_per_worker)
        local = LocalCluster(n_workers=n_workers, threads_per_worker=n_threads, memory_limit=memory_limit or "auto",
                             processes=processes, dashboard_address=":0")
        return local, f"local cluster ({n_workers} worker(s) x {n_threads} thread(s))"
    n_threads = threads_per_worker or max(1, dask.system.CPU_COUNT // n_gpus)  # the cores shared among the GPUs
    options: dict[str, Any] = {"n_workers": n_gpus, "threads_per_worker": n_threads,
                               "memory_limit": memory_limit or "auto", "resources": {"GPU": 1},
                               "dashboard_address": ":0"}
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:  # an optional dependency
        LocalCUDACluster = None
    if LocalCUDACluster is not None and processes:
        # dask-cuda sets each worker's CUDA_VISIBLE_DEVICES (and CPU affinity) itself; extra
        # keywords reach the workers, so they advertise the GPU resource like ours
        how = "dask-cuda"
        local = LocalCUDACluster(**options)
    elif processes:
        how = "one device each"
        local = LocalCluster(processes=True, plugins={PinDevice(_visible_devices(n_gpus))}, **options)
    else:
        how = "threads sharing every device"
        local = LocalCluster(processes=False, **options)
    return local, f"local cluster ({n_gpus} GPU worker(s) x {n_threads} thread(s), {how})"


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
        Call ``.job_script()`` to see the batch script, ``.scale(jobs=n)`` to submit jobs. Its
        workers get ``--lifetime`` below the walltime (default: the walltime less min(5 min, 10%),
        staggered by half that margin), so they hand their work on before SLURM kills them.

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
    walltime = str(options.pop("walltime", "01:00:00"))
    lifetime, stagger = _worker_lifetime(walltime, options.pop("lifetime", None), options.pop("lifetime_stagger", None))
    _start_timeout(options.pop("start_timeout", None))  # get_client's wait, not a job setting: checked here
    directives = list(options.pop("job_extra_directives", []))
    worker_args = ["--lifetime", lifetime, "--lifetime-stagger", stagger]
    gpus = options.pop("gpus", None)
    if gpus:
        _check_positive("slurm_options['gpus']", gpus)
        if gpus < processes:
            raise ValueError(
                f"slurm_options['gpus'] ({gpus}) is less than ['processes'] ({processes}): every worker process of a "
                f"job needs a GPU of its own to advertise; raise cluster.slurm.gpus or lower cluster.slurm.processes"
            )
        directives.append(f"--gres=gpu:{gpus}")
        # the job's processes share its GPUs (SLURM sets CUDA_VISIBLE_DEVICES for the whole job)
        worker_args += ["--resources", f"GPU={gpus // processes}"]
    return SLURMCluster(
        cores=int(cores),
        memory=str(memory),
        processes=processes,
        walltime=walltime,
        worker_extra_args=worker_args,
        job_extra_directives=directives,
        **options,
    )


def _gigabytes(memory: str) -> float:
    from dask.utils import parse_bytes

    return parse_bytes(memory) / 1e9


# SLURM's reasons for a pending job that it will never start as submitted, and the settings behind each.
_NEVER_STARTS: dict[str, tuple[str, ...]] = {
    "PartitionTimeLimit": ("walltime",),
    "PartitionNodeLimit": ("cores", "memory", "gpus"),
    "PartitionConfig": ("cores", "memory", "gpus", "queue"),
    "BadConstraints": ("job_extra_directives", "gpus"),
    "InvalidAccount": ("account",),
    "InvalidQOS": ("job_extra_directives",),
    "AccountNotAllowed": ("account", "queue"),
}


# Job states after which a job runs no more (squeue's long names); "ENDED": no longer listed.
_ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "ENDED", "FAILED", "NODE_FAIL",
                    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})


def _slurm_seconds(value: str, name: str) -> float:
    """Seconds in a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if match is None:
        raise ValueError(
            f"slurm_options['{name}'] must be a SLURM time such as '01:30:00' or '2-00:00:00'; got {value!r}"
        )
    days, *rest = match.groups()
    fields = [int(f) for f in rest if f is not None]
    if days is not None:
        hours, minutes, seconds = (fields + [0, 0])[:3]
        return float(((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds)
    units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(fields)]
    return float(sum(f * u for f, u in zip(fields, units)))


def _start_timeout(value: Any) -> float:
    if value is None:
        return 3600.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"slurm_options['start_timeout'] (cluster.slurm.start_timeout) must be a positive number "
                         f"of seconds, e.g. 3600; got {value!r}")
    return float(value)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds % 60 == 0 else f"{int(seconds)}s"


def _worker_lifetime(walltime: str, lifetime: Any, stagger: Any) -> tuple[str, str]:
    """``--lifetime`` and ``--lifetime-stagger`` for workers that retire before the walltime ends.

    Default: the walltime less a margin of min(5 min, 10%), staggered by half the margin, so every
    worker retires at least half the margin before SLURM's kill (1 h: 55m ± 2.5m). A given lifetime
    plus its stagger must end before the walltime.
    """
    limit = _slurm_seconds(walltime, "walltime")
    margin = min(300.0, limit / 10)
    if lifetime is None:
        lifetime, stagger = _duration(limit - margin), stagger or _duration(margin / 2)
    stagger = stagger or "4m"
    latest = parse_timedelta(lifetime) + parse_timedelta(stagger)
    if latest >= limit:
        raise ValueError(
            f"slurm_options['lifetime'] ({lifetime}) plus ['lifetime_stagger'] ({stagger}) must end before the "
            f"walltime ({walltime}), or SLURM kills the workers before they hand their work on; lower the lifetime "
            f"(cluster.slurm.lifetime) or omit it for the default"
        )
    return str(lifetime), str(stagger)


def _job_request(script: str) -> dict[str, Any]:
    """What a dask-jobqueue SLURM job script asks for: cpus, memory (MB), time limit (s), partition."""
    def directive(pattern: str) -> str | None:
        match = re.search(rf"^#SBATCH {pattern}", script, flags=re.MULTILINE)
        return match.group(1) if match else None

    memory = directive(r"--mem=(\d+[KMGT]?)")
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return {
        "cores": int(directive(r"--cpus-per-task=(\d+)") or 1),
        "memory": memory and int(memory.rstrip("KMGT")) * scale.get(memory[-1], 1),
        "walltime": (limit := directive(r"-t (\S+)")) and _slurm_seconds(limit, "walltime"),
        "queue": directive(r"-p (\S+)"),
    }


def _time_limit(text: str) -> float | None:
    """A partition's time limit in seconds; None when unlimited ('infinite', 'UNLIMITED', 'n/a')."""
    try:
        return _slurm_seconds(text, "walltime")
    except ValueError:
        return None


def _partition_limits(queue: str | None) -> dict[str, Any]:
    """The largest CPUs, memory (MB) and time limit (s) among a partition's nodes (the default one if None)."""
    command = ["sinfo", "-h", "-o", "%P|%c|%m|%l"] + (["-p", queue] if queue else [])
    try:
        rows = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [r.split("|") for r in rows if queue or r.split("|")[0].endswith("*")]
    if not rows:
        return {}
    times = [_time_limit(r[3]) for r in rows]
    return {"queue": rows[0][0].rstrip("*"), "cores": max(int(r[1].rstrip("+")) for r in rows),
            "memory": max(int(r[2].rstrip("+")) for r in rows),
            "walltime": None if None in times else max(times)}


def _unschedulable(script: str, why: str, suspects: Sequence[str]) -> str:
    """An error message for a worker job SLURM will not run, naming the settings to change."""
    asked, limits = _job_request(script), _partition_limits(_job_request(script)["queue"])
    units = {"cores": " CPUs", "memory": " MB", "walltime": " s"}
    over = [key for key in units if limits.get(key) is not None and asked[key] is not None and asked[key] > limits[key]]
    details = "; ".join(f"cluster.slurm.{key} asks {asked[key]:g}{units[key]} per job but partition "
                        f"{limits['queue']!r} offers at most {limits[key]:g}{units[key]}" for key in over)
    names = ", ".join(f"cluster.slurm.{key}" for key in (over or suspects))
    return (
        f"SLURM cannot run a worker job ({why}){': ' + details if details else ''}. Change {names} "
        f"(slurm_options[...] in Python), or pick another partition with cluster.slurm.queue"
    )


def _check_schedulable(cluster: Any) -> None:
    """Ask ``sbatch --test-only`` whether SLURM could ever run one worker job; raise naming the setting if not."""
    script = cluster.job_script()
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="neurotask-") as file:
        file.write(script)
        file.flush()
        try:
            test = subprocess.run(["sbatch", "--test-only", file.name], capture_output=True, text=True, timeout=60)
        except FileNotFoundError as error:
            raise RuntimeError(
                "cluster='slurm' needs SLURM's sbatch on PATH: run neurotask on a login node of the cluster, "
                "or inside an sbatch allocation"
            ) from error
    if test.returncode:
        why = " ".join(test.stderr.split()) or f"sbatch --test-only exited with {test.returncode}"
        named = [key for key, word in (("queue", "partition"), ("account", "account")) if word in why.lower()]
        raise ValueError(_unschedulable(script, why, named or ("cores", "memory", "gpus", "walltime", "queue")))


def _job_ids(cluster: Any) -> list[str]:
    return sorted((job.job_id for job in list(cluster.workers.values()) if getattr(job, "job_id", None)), key=int)


def _job_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """SLURM's (state, reason) per job; a job SLURM no longer lists reads ("ENDED", "")."""
    if not job_ids:
        return {}
    command = ["squeue", "-h", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(job_ids)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode and "Invalid job id" not in done.stderr:
        return {}  # squeue failed for now: decide at the next poll
    rows = [line.split("|", 2) for line in done.stdout.splitlines() if line.count("|") == 2]
    listed = {job_id: (state, reason) for job_id, state, reason in rows}
    return {job_id: listed.get(job_id, ("ENDED", "")) for job_id in job_ids}


def _ended_early(script: str, job_id: str, state: str) -> str:
    """An error message for a worker job that ended before its worker connected, pointing at its log."""
    log = re.search(r"^#SBATCH -e (\S+)", script, flags=re.MULTILINE)
    where = log.group(1).replace("%J", job_id) if log else f"slurm-{job_id}.out where neurotask was started"
    return (
        f"SLURM job {job_id} ended ({state}) before its worker connected to the scheduler; its log: {where}. "
        "Usual causes: cluster.slurm.python is not a python with neurotask on the compute nodes, "
        "cluster.slurm.job_script_prologue does not load the environment (`module load`, "
        "`source .venv/bin/activate`), or the nodes cannot reach this scheduler's address "
        "(set cluster.slurm.interface)"
    )


def _wait_for_slurm_workers(cluster: Any, client: Client, timeout: float, quiet: bool) -> list[str]:
    """Wait until a worker job's worker has connected; fail at once on a job SLURM will never start,
    or one that ended without its worker connecting (a dask-jobqueue cluster would wait forever).

    Returns the job ids submitted so far.
    """
    deadline, announced = time.monotonic() + timeout, False
    while not client.scheduler_info(n_workers=-1)["workers"]:
        job_ids = _job_ids(cluster)
        if job_ids and not announced and not quiet:
            _console.print(f"SLURM job(s) {', '.join(job_ids)} submitted; waiting for one to start "
                           f"(`squeue -j {','.join(job_ids)}`, up to {timeout:g} s)", soft_wrap=True)
            announced = True
        for job_id, (state, reason) in _job_states(job_ids).items():
            if state == "PENDING" and reason in _NEVER_STARTS:
                why = f"job {job_id} is pending with reason {reason}"
                raise ValueError(_unschedulable(cluster.job_script(), why, _NEVER_STARTS[reason]))
            if state in _ENDED:
                raise RuntimeError(_ended_early(cluster.job_script(), job_id, state))
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no SLURM worker job started within {timeout:g} s (cluster.slurm.start_timeout); jobs "
                f"{job_ids or 'not submitted'} (see `squeue`, and the jobs' logs in cluster.slurm.log_directory or "
                f"slurm-<jobid>.out). Raise cluster.slurm.start_timeout on a busy queue"
            )
        time.sleep(1)
    return _job_ids(cluster)


def _slurm_client(
    workers: int | None, threads_per_worker: int | None, memory_limit: str | None,
    slurm_options: Mapping[str, Any] | None, quiet: bool,
) -> tuple[Client, str]:
    """A client on a SLURMCluster whose ``workers`` jobs (default 1) are kept up; waits for the first worker."""
    jobs = workers or 1
    timeout = _start_timeout((slurm_options or {}).get("start_timeout"))
    slurm = slurm_cluster(workers=jobs, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                          slurm_options=slurm_options)
    try:
        _check_schedulable(slurm)
        slurm.adapt(minimum_jobs=jobs, maximum_jobs=jobs)  # a cancelled or retired job is replaced
        client = ClusterClient(slurm)
    except BaseException:
        slurm.close()
        raise
    if not quiet:
        _console.print(f"Dask SLURM cluster: submitting {jobs} job(s); dashboard: {client.dashboard_link}",
                       soft_wrap=True)
    try:
        job_ids = _wait_for_slurm_workers(slurm, client, timeout, quiet)
    except BaseException:
        client.close()
        raise
    gpus = (slurm_options or {}).get("gpus")
    per_job = f" x {gpus} GPU(s)" if gpus else ""
    return client, f"SLURM ({jobs} job(s){per_job}, SLURM job id(s) {', '.join(job_ids)})"


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
    _check_positive("workers", workers)
    _check_positive("threads_per_worker", threads_per_worker)
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
        client, where = _slurm_client(workers, threads_per_worker, memory_limit, slurm_options, quiet)
    else:
        local, where = _local_cluster(workers, threads_per_worker, memory_limit, processes, gpus)
        try:
            client = ClusterClient(local)
        except BaseException:
            local.close()
            raise
    if not quiet:
        _console.print(f"Dask {where}; dashboard: {client.dashboard_link}", soft_wrap=True)  # links unbroken in logs
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

