"""Running a config: one run per output folder at a time, finished steps skipped, the rest resumed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from rich.console import Console

from neurotask import stores
from neurotask.cluster import get_client
from neurotask.pipeline.config import STEPS
from neurotask.pipeline.steps import Context, plan
from neurotask.pipeline.validate import validate
from neurotask.stores.layout import outputs

__all__ = ["LockedError", "RunSummary", "client_from_config", "output_lock", "run"]

_console = Console(stderr=True)


class LockedError(RuntimeError):
    """Another run holds the output folder."""


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.neurotask.lock`` (pid and host) while a run writes there.

    A lock whose process no longer runs on this host is stale and taken over; a live one raises
    :class:`LockedError` naming its holder.
    """
    path = outputs(out)["lock"]
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and not _stale(holder):
                raise LockedError(
                    f"{out} is in use by another neurotask run (pid {holder['pid']} on {holder['host']}, since "
                    f"{holder.get('since', '?')}); wait for it to finish, or delete {path} if that run is gone"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise LockedError(f"could not take the lock {path}: another run keeps taking it")


def _holder(path: Path) -> dict[str, Any] | None:
    for _ in range(20):  # empty: its taker created it and is writing it (O_EXCL, then json.dump)
        try:
            text = path.read_text()
        except OSError:
            return None
        if text:
            break
        time.sleep(0.05)
    try:
        return json.loads(text)
    except ValueError:  # still empty after a second, or garbage: treat as stale
        return None


def _stale(holder: Mapping[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return False  # another host's process cannot be checked from here
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class _Ledger:
    """``pipeline.json``: per step key, the settings digest it ran with and whether it completed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, step: str, digest: str | None, paths: Sequence[Path]) -> bool:
        if digest is None:  # a step that always runs (the report)
            return False
        record = self.records.get(step, {})
        return record.get("digest") == digest and record.get("status") == "complete" and all(
            stores.is_complete(p) if p.suffix == ".zarr" else p.exists() for p in paths
        )

    def start(self, step: str, digest: str | None, paths: Sequence[Path]) -> None:
        record = self.records.get(step)
        if record is not None and record.get("digest") != digest:
            for path in paths:  # other settings or inputs: the partial or stale outputs cannot be resumed
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        self.records[step] = {"digest": digest, "status": "running"}
        self._save()

    def finish(self, step: str, status: str, seconds: float, note: str = "") -> None:
        self.records[step].update(status=status, seconds=round(seconds, 2), note=note)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.records, indent=1, sort_keys=True))
        tmp.replace(self.path)


@dataclass
class RunSummary:
    """What :func:`run` did: per step key, ``"complete"``, ``"skipped: ..."`` or ``"done before"``."""

    out: Path
    statuses: dict[str, str] = field(default_factory=dict)
    report: Path | None = None


def run(
    config: str | Path | Mapping[str, Any],
    *,
    client: Any = None,
    steps: Sequence[str] | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run the configured steps, skipping completed ones and resuming interrupted ones.

    Parameters
    ----------
    config : path or mapping
        A TOML config file or a dict (see :mod:`neurotask.pipeline`); validated first.
    client : distributed.Client, optional
        Run on this client; default: the one ``[cluster]`` describes (a LocalCluster sized to the
        machine when the section is empty), closed at the end.
    steps : sequence of str, optional
        Run only these steps (default: the config's ``steps``, all by default).
    console : rich.console.Console, optional
        Where progress messages go (stderr by default).

    Returns
    -------
    RunSummary
        The output directory, each step's status and the report path.

    Raises
    ------
    ConfigError
        Before anything runs, for a wrong config.
    LockedError
        When another run holds the output folder.

    Examples
    --------
    >>> summary = nt.pipeline.run("analysis.toml")  # doctest: +SKIP
    >>> summary.report                              # doctest: +SKIP
    PosixPath('results/report.html')
    """
    cfg = validate(config)
    console = console or _console
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in STEPS if s in (steps or cfg["steps"])]
    summary = _finished_read_only(cfg, out, wanted, console)
    if summary is not None:
        return summary
    summary = RunSummary(out=out)
    with output_lock(out):
        paths = outputs(out)
        paths["config"].write_text(json.dumps(cfg, indent=1, sort_keys=True))
        ledger = _Ledger(paths["ledger"])
        owned = None
        if client is None and any(s != "report" for s in wanted):
            owned = client = client_from_config(cfg)
        try:
            context = Context(cfg=cfg, out=out, client=client, console=console)
            for key, digest, step_paths, action in plan(wanted, context):
                if ledger.done(key, digest, step_paths):
                    summary.statuses[key] = "done before"
                    console.print(f"[dim]{key}: done before, skipped[/dim]")
                    continue
                ledger.start(key, digest, step_paths)
                start = time.perf_counter()
                console.print(f"[bold]{key}[/bold] …")
                status = action()
                seconds = time.perf_counter() - start
                ledger.finish(key, "complete" if status == "complete" else "skipped", seconds, status)
                summary.statuses[key] = status
                if status == "complete":
                    _stamp_config(step_paths, cfg)
                console.print(f"{key}: {status} ({seconds:.1f} s)")
        finally:
            if owned is not None:
                owned.close()
    report = Path(cfg["report"]["path"]) if cfg["report"].get("path") else paths["report"]
    summary.report = report if report.exists() else None
    return summary


def _finished_read_only(cfg: dict[str, Any], out: Path, wanted: Sequence[str], console: Console) -> RunSummary | None:
    """A finished run in a folder this process may not write: every step done before, nothing written.

    None when the folder is writable or some step (or the report) is missing: the run then goes on
    and a read-only folder fails on its first write, naming the path.
    """
    paths = outputs(out)
    if os.access(out, os.W_OK) or not paths["ledger"].exists():
        return None
    ledger = _Ledger(paths["ledger"])
    report = Path(cfg["report"]["path"]) if cfg["report"].get("path") else paths["report"]
    summary = RunSummary(out=out, report=report if report.exists() else None)
    for key, digest, step_paths, _ in plan(wanted, Context(cfg=cfg, out=out, client=None, console=console)):
        if not (report.exists() if digest is None else ledger.done(key, digest, step_paths)):
            return None
        summary.statuses[key] = "done before"
    console.print(f"{out} is read-only and every step is done before: nothing to write")
    return summary


def client_from_config(config: str | Path | Mapping[str, Any]) -> Any:
    """The Dask client a config's ``[cluster]`` section describes (see :func:`neurotask.cluster.get_client`).

    Returns
    -------
    distributed.Client
        Close it (or use it as a context manager) to stop what it started.
    """
    cluster = validate(config)["cluster"] if not isinstance(config, Mapping) or "cluster" not in config else config["cluster"]
    return get_client(
        cluster.get("scheduler"), cluster.get("cluster", "local"), workers=cluster.get("workers"),
        threads_per_worker=cluster.get("threads_per_worker"), memory_limit=cluster.get("memory_limit"),
        processes=cluster.get("processes", True), slurm_options=cluster.get("slurm") or None,
    )


def _stamp_config(paths: Sequence[Path], cfg: Mapping[str, Any]) -> None:
    """Results carry the config that made them (beside the writer's own provenance)."""
    for path in paths:
        if path.suffix == ".zarr" and stores.is_complete(path):
            zarr.open_group(str(path), mode="r+").attrs["pipeline_config"] = json.dumps(cfg, sort_keys=True)
