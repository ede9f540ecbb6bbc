"""The command line starts without the analysis libraries: they load in the commands that run them.

``neurotask --help``, a command's ``--help`` and a usage error must answer at once; importing
torch, matplotlib, scikit-learn or distributed first cost them 3-5 s. Each case runs in a fresh
interpreter, since this one has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.main import get_command

from neurotask.cli import app

#: Libraries no help or usage error may import.
HEAVY = ("torch", "visualpriors", "matplotlib", "sklearn", "distributed", "nilearn", "dask.array", "xarray", "zarr")

COMMANDS = sorted(get_command(app).commands)


def _imported_by(args: list[str] | None) -> tuple[int | None, list[str]]:
    """The exit status of ``neurotask ARGS`` (None: only import the CLI) and the heavy libraries loaded by then."""
    run = "" if args is None else f"""
try:
    app({args!r}, prog_name="neurotask")
except SystemExit as done:
    status = done.code"""
    code = f"""
import json, sys
from neurotask.cli import app
status = None{run}
print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, heavy = json.loads(out.stdout.splitlines()[-1])
    return status, heavy


def test_importing_the_cli_imports_no_analysis_library():
    assert _imported_by(None) == (None, [])


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in COMMANDS if name != "run")], ids=str)
def test_help_imports_no_analysis_library(args):
    assert _imported_by(args) == (0, [])


@pytest.mark.xfail(strict=True, reason="run --help lists every config key with its choices, which live in "
                   "neurotask.cluster, .encoding, .stats and .features.extract: they import distributed, "
                   "scikit-learn and torch")
def test_run_help_imports_no_analysis_library():
    assert _imported_by(["run", "--help"]) == (0, [])


def test_a_usage_error_imports_no_analysis_library():
    assert _imported_by(["encode", "f.zarr", "r.zarr", "--out", "e.zarr", "--workers", "0"]) == (2, [])
