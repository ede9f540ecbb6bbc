"""The ``neurotask`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="neurotask",
    help="Neural Taskonomy analyses on BOLD5000: features, responses, RSA, encoding, statistics, report.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """neurotask command line."""


# --------------------------------------------------------------------------------------------
# cluster options shared by every command (pipeline/cluster area). Use them as
#   def mycommand(..., scheduler: SchedulerOption = None, cluster: ClusterOption = "local",
#                 workers: WorkersOption = None):
#       with cluster_client(scheduler, cluster, workers) as client: ...

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Any, Optional  # noqa: E402

if TYPE_CHECKING:
    from distributed import Client

SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
]
ClusterOption = Annotated[
    str, typer.Option("--cluster", help="Where to start workers without --scheduler: 'local' or 'slurm'.")
]
WorkersOption = Annotated[
    Optional[int], typer.Option("--workers", min=1, help="Worker processes (local) or SLURM jobs (slurm).")
]


@contextmanager
def cluster_client(
    scheduler: str | None = None, cluster: str = "local", workers: int | None = None, **options: Any
) -> Iterator[Client]:
    """The Dask client for a command's cluster options (closed, with what it started, on exit)."""
    from neurotask.cluster import get_client

    try:
        client = get_client(scheduler, cluster, workers=workers, **options)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    with client:
        yield client
