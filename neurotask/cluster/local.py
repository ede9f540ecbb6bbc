"""The embedded cluster: a LocalCluster sized to the machine's cores, or one worker per CUDA device."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import dask.config
import dask.system
from distributed import LocalCluster, WorkerPlugin
from distributed.deploy.utils import nprocesses_nthreads

__all__ = ["WORKER_MALLOC", "PinDevice", "local_cluster"]


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


#: glibc malloc settings of local worker processes, set before each starts. Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (return freed memory promptly); any explicit threshold turns off
#: glibc's dynamic mmap threshold, so every block over 128 KiB (a ridge chunk's projections, its
#: predictions) became a fresh mmap, page-faulted anew on every task: a ridge fit ran 12% slower
#: on a quiet machine, ridge chunks up to 2x slower under load (benchmarks/README.md). A fixed
#: mmap threshold at glibc's own dynamic ceiling (32 MiB on 64-bit) restores a plain process's
#: speed and keeps Dask's trimming.
WORKER_MALLOC: dict[str, int] = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20}


def _worker_environment() -> Any:
    """Dask config adding :data:`WORKER_MALLOC` to what nannies set before spawning a worker."""
    return dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": value for key, value in WORKER_MALLOC.items()})


def local_cluster(
    workers: int | None, threads_per_worker: int | None, memory_limit: str | None, processes: bool,
    gpus: int | None,
) -> tuple[LocalCluster, str]:
    """The embedded cluster: one worker per CUDA device (unless ``workers`` is fixed or ``gpus=0``), else by cores."""
    with _worker_environment():
        return _start_local(workers, threads_per_worker, memory_limit, processes, gpus)


def _start_local(
    workers: int | None, threads_per_worker: int | None, memory_limit: str | None, processes: bool,
    gpus: int | None,
) -> tuple[LocalCluster, str]:
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

