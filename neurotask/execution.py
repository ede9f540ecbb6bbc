"""Where library code runs: the current Dask client, cores, BLAS threads, progress, chunk maps.

The bottom layer of execution (DESIGN §6). Extraction, RSA, encoding and statistics reach Dask
only through this module; :mod:`neurotask.cluster` builds clients for the pipeline and the
command line and is never imported by library code.

* :func:`current_client` — the client a function was given, else the current default client,
  else None (then work runs in this process, on threads).
* :func:`cpu_count` — the cores this process may use (its CPU affinity, not the machine's).
* :func:`blas_threads` — a BLAS thread limit for a block of code.
* :func:`submit_with_data` — a task that carries its in-memory inputs, so that it can be re-run
  after its worker is lost.
* :func:`map_unordered` — one function over many items, on the client or on threads, results as
  they finish, a bounded number in flight.
* :func:`progress` — a rich bar on a terminal; plain lines every few seconds in a log file.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from threadpoolctl import threadpool_limits

__all__ = ["blas_threads", "cpu_count", "current_client", "map_unordered", "progress", "submit_with_data"]

#: Seconds between two progress lines when the output is not a terminal.
LOG_INTERVAL = 5.0


def current_client(client: Any = None) -> Any:
    """The Dask client to run on: ``client`` if given, else the current default one, else None.

    No client exists unless ``distributed`` was imported, so this never imports it.

    Parameters
    ----------
    client : distributed.Client, optional
        An explicit client.

    Returns
    -------
    distributed.Client or None
        None means: run in this process.
    """
    if client is not None or "distributed" not in sys.modules:
        return client
    try:
        return sys.modules["distributed"].default_client()
    except ValueError:  # no client was made
        return None


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, e.g. SLURM, taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS/LAPACK to ``limit`` threads inside the block (``None``: leave them as they are)."""
    if limit is None:
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def submit_with_data(client: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``client.submit(function, *args, pure=False, **kwargs)`` with in-memory arguments kept in the task.

    Scattered data cannot be recomputed when the worker holding it is lost (and Dask's memory
    manager drops the extra replicas of broadcast data), so a task depending on it then fails.
    Arguments carried in the task can: the scheduler keeps them until the task's key is released,
    at the cost of their size in the scheduler's memory. distributed's "Sending large graph"
    warning is therefore expected here and silenced.
    """
    kwargs.setdefault("pure", False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        return client.submit(function, *args, **kwargs)


def _submit(client: Any, function: Callable[..., Any], item: Any, args: Sequence[Any],
            kwargs: Mapping[str, Any], priority: int) -> Any:
    import dask
    import dask.array as da

    if isinstance(item, da.Array):  # a lazy block: its graph reads the store on the worker
        [future] = client.compute([dask.delayed(function, pure=True)(item, *args, **kwargs)], priority=priority)
        return future
    return submit_with_data(client, function, item, *args, priority=priority, **kwargs)


def map_unordered(
    function: Callable[..., Any],
    items: Sequence[Any],
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    client: Any = None,
    threads: int | None = None,
    in_flight: int | None = None,
    priority: int = 0,
) -> Iterator[tuple[int, Any]]:
    """``function(item, *args, **kwargs)`` for every item; yield ``(index, result)`` as each finishes.

    Parameters
    ----------
    function : callable
        A plain function of numpy data (it must pickle when a client runs it).
    items : sequence
        The per-task inputs: numpy arrays and other objects travel inside the task
        (:func:`submit_with_data`); a ``dask.array.Array`` is computed on the worker.
    args, kwargs
        Inputs shared by every task.
    client : distributed.Client, optional
        Run on this client; default :func:`current_client`, else threads in this process.
    threads : int, optional
        Threads in this process (default :func:`cpu_count`); ignored on a client.
    in_flight : int, optional
        Tasks pending at once (default: ``threads`` in process, all on a client), which bounds
        the results held in memory.
    priority : int
        Dask task priority.

    Yields
    ------
    (int, object)
        The item's position and its result; a task's exception is raised here.
    """
    kwargs = dict(kwargs or {})
    client = current_client(client)
    if client is not None:
        yield from _map_on_client(client, function, items, args, kwargs, in_flight, priority)
        return
    threads = threads or cpu_count()
    limit = in_flight or threads
    with ThreadPoolExecutor(threads) as pool:
        pending: dict[Future, int] = {}
        queued = iter(range(len(items)))
        for index in queued:
            pending[pool.submit(function, items[index], *args, **kwargs)] = index
            if len(pending) >= limit:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
                for index in queued:
                    pending[pool.submit(function, items[index], *args, **kwargs)] = index
                    break


def _map_on_client(client: Any, function: Callable[..., Any], items: Sequence[Any], args: Sequence[Any],
                   kwargs: Mapping[str, Any], in_flight: int | None, priority: int) -> Iterator[tuple[int, Any]]:
    from distributed import as_completed

    limit = in_flight or len(items)
    queued = iter(range(len(items)))
    futures = {}
    for index in queued:
        futures[_submit(client, function, items[index], args, kwargs, priority)] = index
        if len(futures) >= limit:
            break
    completed = as_completed(list(futures))
    for future in completed:
        index = futures.pop(future)
        result = future.result()
        future.release()
        for following in queued:
            new = _submit(client, function, items[following], args, kwargs, priority)
            futures[new] = following
            completed.add(new)
            break
        yield index, result


class _LogProgress:
    """Progress for a log file: one line at the start, every :data:`LOG_INTERVAL` seconds, at the end."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total, self.done = description, total, 0
        self.start = self.last = time.monotonic()
        print(f"{description}: 0/{total}", file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_INTERVAL and self.done < self.total:
            self.last = now
            self._line(now)

    def close(self) -> None:
        self._line(time.monotonic())

    def _line(self, now: float) -> None:
        percent = 100 * self.done / self.total if self.total else 100.0
        print(f"{self.description}: {self.done}/{self.total} ({percent:.0f}%, {now - self.start:.0f} s)",
              file=sys.stderr, flush=True)


@contextmanager
def progress(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Show progress of ``total`` units of work; yields ``advance(n=1)``.

    On a terminal a transient rich bar; when stderr is a file or a pipe (a log), plain lines every
    few seconds, without carriage returns.

    Examples
    --------
    >>> with progress("voxel chunks", 3, enabled=False) as advance:
    ...     for _ in range(3):
    ...         advance()
    """
    if not enabled:
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        log = _LogProgress(description, total)
        try:
            yield log.advance
        finally:
            log.close()
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)

