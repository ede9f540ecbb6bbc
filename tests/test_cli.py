"""The command line: commands listed, cluster options shared, config errors reported with the key."""

from __future__ import annotations

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
