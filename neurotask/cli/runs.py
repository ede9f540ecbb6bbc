"""Commands of whole analyses: ``demo``, ``run``, ``report`` and ``config-reference``.

The library is imported inside the commands, so that ``--help`` and usage errors answer without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from neurotask.cli._app import ClusterOption, SchedulerOption, WorkersOption, command
from neurotask.cli._errors import fail, writing_to

if TYPE_CHECKING:
    import click

    from neurotask.pipeline import RunSummary

__all__ = ["config_reference", "demo", "report", "run_config"]

_RUN_HELP = (
    "Run every step of a configured analysis; a re-run skips completed steps and resumes.\n\n"
    "The whole config is checked before anything runs. Its keys (`neurotask config-reference` prints them):"
)


def _cluster(scheduler: str | None, cluster: str, workers: int | None) -> dict[str, Any]:
    """The ``[cluster]`` settings given on the command line (those left out keep the config's)."""
    given = {"scheduler": scheduler, "workers": workers, "cluster": None if cluster == "local" else cluster}
    return {key: value for key, value in given.items() if value is not None}


def print_summary(summary: RunSummary) -> None:
    """The run-status table, in the order the steps ran, and the report's path."""
    table = Table("step", "status", title=f"neurotask → {summary.out}")
    for key, status in summary.statuses.items():
        table.add_row(key, status)
    Console().print(table)
    if summary.report is not None:
        typer.echo(f"report: {summary.report}")


@command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (data, stores, report).")] = Path("demo-output"),
    full_models: Annotated[bool, typer.Option("--full-models", help="All 25 Taskonomy models (slow on a CPU).")] = False,
    sessions: Annotated[
        int, typer.Option("--sessions", min=2, max=15, help="Whole sessions of the synthetic subject; the last is the test set.")
    ] = 3,  # neurotask.demo.DEMO_SESSIONS, not imported: the demo imports torch (tests/test_cli.py: they agree)
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="Permutations of the significance test.")] = 1000,
    encoders: Annotated[
        bool, typer.Option("--encoders", help="Extract features with the Taskonomy encoders instead of planted ones.")
    ] = False,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Run the whole analysis on synthetic BOLD5000 data and write an HTML report."""
    from neurotask.demo import demo as run_demo

    summary = run_demo(out, full_models=full_models, n_sessions=sessions, n_permutations=permutations,
                       encoders=encoders, cluster=_cluster(scheduler, cluster, workers))
    print_summary(summary)


class _RunCommand(TyperCommand):
    """``run``, whose help ends with every config key, read when it is shown (the config imports the library)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from neurotask.pipeline import reference

        self.help = _RUN_HELP + "\n\n" + escape(reference()).replace("\n", "\n\n")
        super().format_help(ctx, formatter)


@command("run", help=_RUN_HELP, cls=_RunCommand)
def run_config(
    config: Annotated[Path, typer.Argument(help="TOML configuration (its keys: `neurotask config-reference`).")],
    steps: Annotated[Optional[list[str]], typer.Option("--step", help="Run only this step (repeatable).")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    from neurotask.pipeline import STEPS, load_config, run

    unknown = [s for s in steps or [] if s not in STEPS]
    if unknown:
        raise typer.BadParameter(f"unknown steps {unknown}; expected some of {list(STEPS)}", param_hint="--step")
    cfg = load_config(config)
    cfg.setdefault("cluster", {}).update(_cluster(scheduler, cluster, workers))
    with writing_to(cfg.get("out")):
        summary = run(cfg, steps=steps)
    print_summary(summary)


@command("config-reference")
def config_reference() -> None:
    """Print every config key of `neurotask run`, with its type and meaning."""
    from neurotask.pipeline import reference

    typer.echo(reference())


@command()
def report(
    results: Annotated[Path, typer.Argument(help="A pipeline output directory.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file (default: RESULTS/report.html).")] = None,
) -> None:
    """Write the self-contained HTML report of a pipeline output directory."""
    if not results.is_dir():
        raise typer.BadParameter(f"{str(results)!r} is not a directory", param_hint="RESULTS")
    from neurotask.pipeline import open_outputs
    from neurotask.report import write as write_report

    found = open_outputs(results)
    if len(found) == 1 and not found["subjects"]:  # no config, ledger or store: not a run's folder
        raise fail(f"{results} holds no pipeline outputs (no config.json, pipeline.json or result stores); "
                   f"pass the output folder of `neurotask run`, or run the analysis first")
    path = write_report(results, out or results / "report.html")
    typer.echo(f"report: {path}")
