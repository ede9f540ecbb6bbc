"""SLURM workers: a dask-jobqueue SLURMCluster checked before submission and waited for a bounded time."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dask.utils import parse_timedelta
from distributed import Client

from neurotask.cluster._client import ClusterClient, check_positive, console
from neurotask.cluster.local import WORKER_MALLOC

__all__ = ["SLURM_OPTIONS", "JobWatcher", "slurm_client", "slurm_cluster"]

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
    # the worker processes inherit the nanny's environment: the same malloc settings as local workers
    prologue = [f"export {key}={value}" for key, value in WORKER_MALLOC.items()]
    prologue += list(options.pop("job_script_prologue", []))
    worker_args = ["--lifetime", lifetime, "--lifetime-stagger", stagger]
    gpus = options.pop("gpus", None)
    if gpus:
        check_positive("slurm_options['gpus']", gpus)
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
        job_script_prologue=prologue,
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
            console.print(f"SLURM job(s) {', '.join(job_ids)} submitted; waiting for one to start "
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


class JobWatcher(threading.Thread):
    """Prints each worker job that ends and each job submitted to replace it, until stopped.

    The cluster keeps its jobs up by itself (``adapt``); without this a cancelled, failed or
    retired job and its replacement would go unseen by whoever watches the run.

    Parameters
    ----------
    cluster : dask_jobqueue.SLURMCluster
        The cluster whose jobs are watched.
    known : sequence of str
        The job ids already reported.
    interval : float
        Seconds between looks at the cluster's jobs.
    """

    def __init__(self, cluster: Any, known: Sequence[str], interval: float = 5.0) -> None:
        super().__init__(name="neurotask-slurm-jobs", daemon=True)
        self.cluster, self.known, self.interval = cluster, set(known), interval
        self.stopped = threading.Event()

    def run(self) -> None:
        """Look at the jobs every ``interval`` seconds until :meth:`stop`."""
        while not self.stopped.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        """Stop watching (before the cluster scales down, whose ending jobs are not news)."""
        self.stopped.set()

    def poll(self) -> None:
        """Print the jobs that ended and the jobs submitted since the last look."""
        try:
            current = set(_job_ids(self.cluster))
        except RuntimeError:  # the cluster's job table changed while it was read: look again next time
            return
        ended, submitted = sorted(self.known - current, key=int), sorted(current - self.known, key=int)
        self.known = current
        states = _job_states(ended)
        for job_id in ended:
            console.print(f"SLURM worker job {job_id} ended ({states.get(job_id, ('ENDED', ''))[0]})", soft_wrap=True)
        if submitted:
            console.print(f"SLURM job(s) {', '.join(submitted)} submitted to keep {len(current)} worker job(s) "
                          f"running (`squeue -j {','.join(submitted)}`)", soft_wrap=True)


def slurm_client(
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
        console.print(f"Dask SLURM cluster: submitting {jobs} job(s); dashboard: {client.dashboard_link}",
                      soft_wrap=True)
    try:
        job_ids = _wait_for_slurm_workers(slurm, client, timeout, quiet)
    except BaseException:
        client.close()
        raise
    if not quiet:
        watcher = JobWatcher(slurm, job_ids)
        client.before_close.append(watcher.stop)
        watcher.start()
    gpus = (slurm_options or {}).get("gpus")
    per_job = f" x {gpus} GPU(s)" if gpus else ""
    return client, f"SLURM ({jobs} job(s){per_job}, SLURM job id(s) {', '.join(job_ids)})"

