"""The typer app, its global ``--debug`` option, and the cluster options every command shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from neurotask.cli._errors import DEBUG_ENV, handled, set_debug

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClusterOption", "SchedulerOption", "WorkersOption", "app", "cluster_client", "command", "maybe_client"]

app = typer.Typer(
    name="neurotask",
    help="Neural Taskonomy analyses on BOLD5000: features, responses, RSA, encoding, statistics, report.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Show the traceback of expected failures too.")
    ] = False,
) -> None:
    """neurotask command line."""
    set_debug(debug)


def command(
    name: str | None = None, *, help: str | None = None, cls: type[TyperCommand] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command whose expected failures print one message and exit non-zero."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name, help=help, cls=cls)(handled(function))

    return register


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


def maybe_client(scheduler: str | None, cluster: str, workers: int | None) -> Any:
    """A cluster client context when cluster options were given, else ``None`` (runs in this process).

    In this process the library runs models or chunks side by side on threads, which is fastest
    on one machine.
    """
    if scheduler is None and workers is None and cluster == "local":
        return nullcontext(None)
    return cluster_client(scheduler, cluster, workers)
