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
