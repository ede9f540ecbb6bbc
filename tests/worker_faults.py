"""Dask worker plugins that lose a worker at a chosen moment, once.

Shared by the tests that prove a lost worker's tasks are re-run with their inputs (extraction,
RSA, the pipeline on a local cluster and on SLURM). The marker file makes it fire once across all workers (created atomically) and records
the task that was running.
"""

from __future__ import annotations

import json
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


class DuringStep(distributed.WorkerPlugin):
    """Act (see :meth:`act`) at a worker's first task while the pipeline ledger says ``step`` runs, once.

    Parameters
    ----------
    step : str
        A ledger key, e.g. ``"encode/CSI1"``.
    ledger : str
        The run's ``pipeline.json``.
    marker : str
        A file path: written when the plugin acts (with :meth:`act`'s note); while it exists it
        does not act again.
    """

    def __init__(self, step: str, ledger: str, marker: str) -> None:
        self.step, self.ledger, self.marker = step, ledger, marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or os.path.exists(self.marker) or not os.path.exists(self.ledger):
            return
        with open(self.ledger) as f:
            running = json.load(f).get(self.step, {}).get("status") == "running"
        if running:
            self.act()

    def act(self) -> None:
        """Kill this worker's process (subclasses do otherwise)."""
        with open(self.marker, "w") as f:
            f.write(self.step)
        os._exit(1)
