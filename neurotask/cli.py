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


# --------------------------------------------------------------------------------------------
# pipeline: demo, run, report

from pathlib import Path  # noqa: E402


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (data, stores, report).")] = Path("demo-output"),
    full_models: Annotated[bool, typer.Option("--full-models", help="All 25 Taskonomy models (slow on a CPU).")] = False,
    images: Annotated[int, typer.Option("--images", min=20, help="Trials/images of the synthetic subject.")] = 80,
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="Permutations of the significance test.")] = 200,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Run the whole analysis on synthetic BOLD5000 data and write an HTML report."""
    from neurotask.demo import demo as run_demo

    options = {"scheduler": scheduler, "cluster": cluster, "workers": workers}
    summary = run_demo(out, full_models=full_models, n_images=images, n_permutations=permutations,
                       cluster={k: v for k, v in options.items() if v is not None})
    _print_summary(summary)


@app.command("run")
def run_config(
    config: Annotated[Path, typer.Argument(help="TOML configuration (see neurotask.pipeline).")],
    steps: Annotated[Optional[list[str]], typer.Option("--step", help="Run only this step (repeatable).")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Run every step of a configured analysis; a re-run skips completed steps and resumes."""
    from neurotask.pipeline import ConfigError, load_config, run

    try:
        cfg = load_config(config)
        section = cfg.setdefault("cluster", {})
        for key, value in (("scheduler", scheduler), ("workers", workers)):
            if value is not None:
                section[key] = value
        if cluster != "local":
            section["cluster"] = cluster
        summary = run(cfg, steps=steps)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    _print_summary(summary)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A pipeline output directory.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file (default: RESULTS/report.html).")] = None,
) -> None:
    """Write the self-contained HTML report of a pipeline output directory."""
    from neurotask.report import write

    if not results.is_dir():
        raise typer.BadParameter(f"{str(results)!r} is not a directory", param_hint="RESULTS")
    path = write(results, out or results / "report.html")
    typer.echo(f"report: {path}")


def _print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("step", "status", title=f"neurotask → {summary.out}")
    for key, status in summary.statuses.items():
        table.add_row(key, status)
    Console().print(table)
    if summary.report is not None:
        typer.echo(f"report: {summary.report}")
