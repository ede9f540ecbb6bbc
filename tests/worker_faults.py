"""A Dask worker plugin that kills its worker's process at the first task of a kind, once.

Shared by the tests that prove a lost worker's tasks are re-run with their inputs (extraction,
RSA). The marker file makes it fire once across all workers (created atomically) and records
the task that was running.
"""

from __future__ import annotations

import os

import distributed


class KillAtFirstTask(distributed.WorkerPlugin):
    """Kill the worker's process when it starts executing a task whose key starts with ``prefix``.

    Parameters
    ----------
    prefix : str
        The start of the task key (the function's name for ``client.submit`` and ``dask.delayed``).
    marker : str
        A file path: created when a worker is killed; while it exists no other worker is.
    """

    def __init__(self, prefix: str, marker: str) -> None:
        self.prefix, self.marker = prefix, marker

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key if isinstance(key, str) else key[0]
        if finish != "executing" or not str(name).startswith(self.prefix):
            return
        try:  # atomic: two workers may start such a task at once, only one may die
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, str(name).encode())
        os._exit(1)
