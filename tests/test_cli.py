"""The command line: commands listed, cluster options shared, config errors reported with the key."""

from __future__ import annotations

import errno
import re

import pytest
from typer.testing import CliRunner

from neurotask.cli import app

runner = CliRunner()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "run", "report"):
        assert re.search(rf"│ {command}\s", _plain(result.output)), command


@pytest.mark.parametrize("command", ["demo", "run"])
def test_cluster_options_are_offered(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    text = _plain(result.output)
    for option in ("--scheduler", "--cluster", "--workers"):
        assert option in text, option


def test_demo_help_names_its_sizes():
    text = _plain(runner.invoke(app, ["demo", "--help"], terminal_width=200).output)
    for option in ("--out", "--full-models", "--sessions", "--permutations", "--encoders"):
        assert option in text


def test_run_reports_a_bad_config_with_the_key(tmp_path):
    config = tmp_path / "analysis.toml"
    config.write_text('out = "results"\nmodels = ["normal", "not_a_task"]\n[ingest]\nroot = "/no/such/dir"\n'
                      '[extract]\nimages = "/no/such/images"\n')
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    output = _plain(result.output)
    assert "models: unknown model 'not_a_task'" in output
    assert "ingest.root: path '/no/such/dir' does not exist" in output
    assert not (tmp_path / "results").exists()


def test_report_writes_html_for_an_output_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"out": "x", "models": ["normal"]}')
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists()
    assert "Not available" in (tmp_path / "report.html").read_text()


def test_demo_sessions_default_is_the_demos():
    from typer.main import get_command

    from neurotask.demo import DEMO_SESSIONS

    sessions = next(p for p in get_command(app).commands["demo"].params if p.name == "sessions")
    assert sessions.default == DEMO_SESSIONS


def test_run_help_and_config_reference_show_every_config_key():
    from neurotask.pipeline import reference

    listing = runner.invoke(app, ["config-reference"])
    assert listing.exit_code == 0 and listing.output.strip() == reference()
    text = " ".join(_plain(runner.invoke(app, ["run", "--help"], terminal_width=200).output).split())
    for key in ("[encode]", "standardize (true or false)", "[permute]", "n_permutations (an integer)", "[cluster]"):
        assert key in text, key


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/encoding.zarr"),
         "/data/out/encoding.zarr: no space left on the device"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/out/.neurotask.lock"),
         "/ro/out/.neurotask.lock: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "/root/x: permission denied"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/home/u/out"), "/home/u/out: disk quota exceeded"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/such.toml"),
         "/no/such.toml: no such file or directory"),
        (RuntimeError("zarr could not write"), None),  # not ours: a bug, keeps its traceback
        (OSError(errno.EIO, "Input/output error", "/x"), None),
        (ValueError("from numpy, not from us"), None),  # raised outside neurotask
    ],
)
def test_describe_names_the_path_or_leaves_the_traceback(error, expected):
    from neurotask.cli._errors import describe

    message = describe(error)
    assert message == expected if expected is None else message.startswith(expected)


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("neurotask.pipeline", "ConfigError", "the message"),
        ("neurotask.pipeline", "LockedError", "the message"),
        ("neurotask.stores", "StoreError", "the message"),
        ("neurotask.features.weights", "WeightsError", "the message"),
        ("neurotask.fmri", "GridMismatchError", "the message"),
        ("builtins", "EOFError", "an input file is truncated or corrupt (EOFError: the message)"),
        ("zlib", "error", "an input file is truncated or corrupt (error: the message)"),
        ("gzip", "BadGzipFile", "an input file is truncated or corrupt (BadGzipFile: the message)"),
        ("nibabel.filebasedimages", "ImageFileError",
         "an input file is truncated or corrupt (ImageFileError: the message)"),
        ("PIL", "UnidentifiedImageError", "the message; replace or remove the image"),
    ],
)
def test_describe_reports_the_library_errors(module, name, expected):
    import importlib

    from neurotask.cli._errors import describe

    message = describe(getattr(importlib.import_module(module), name)("the message"))
    assert message is not None and message.startswith(expected), message


def test_describe_follows_the_cause_and_our_own_validation_errors():
    from neurotask.cli._errors import describe
    from neurotask.rsa import model_similarity

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/full/r.zarr")
        except OSError as cause:
            raise RuntimeError("write failed") from cause
    except RuntimeError as error:
        assert describe(error).startswith("/full/r.zarr: no space left")
    try:
        model_similarity("not features")
    except (ValueError, TypeError) as error:
        assert describe(error) == str(error)  # a neurotask validation message, shown as is
    else:
        raise AssertionError("model_similarity accepted a string")


def test_run_refuses_an_unknown_step(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "analysis.toml"), "--step", "encoding"])
    assert result.exit_code == 2 and "unknown steps ['encoding']" in _plain(result.output)
