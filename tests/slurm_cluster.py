"""A real one-node SLURM cluster on localhost for the tests: munged, slurmctld and slurmd.

:func:`start_slurm` writes a minimal ``slurm.conf`` (no cgroups: ``proctrack/linuxproc``,
``task/none``; no accounting) whose one node has this machine's CPUs and memory as
``slurmd -C`` reports them, starts a private ``munged`` (its own key and socket, so the host's
munge is never touched) and the two SLURM daemons in the foreground under a temporary directory,
and waits until ``sinfo`` shows the node idle. :meth:`SlurmNode.stop` cancels the jobs left,
waits for them to end (slurmstepd outlives slurmd) and stops the three daemons it started.

Clients (``sbatch``, ``squeue``, dask-jobqueue) find the cluster through ``SLURM_CONF``, which the
``slurm`` fixture sets for the session. The partition's ``MaxTime`` is one hour, so a job asking
for more stays pending with reason ``PartitionTimeLimit``: the tests use that for a job SLURM
accepts but will never start. Debian's packages: ``apt-get install slurm-wlm munge``; the daemons
run as root (``SlurmUser=root``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
PARTITION = "debug"
MAX_TIME = "01:00:00"

_CONF = """\
ClusterName=neurotask-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime={max_time} State=UP
"""


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here; the message says why."""


@dataclass
class SlurmNode:
    """A running one-node cluster: its config, its node's size, the daemons started for it."""

    root: Path
    conf: Path
    node: str
    cpus: int
    memory_mb: int
    partition: str = PARTITION
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM's client commands (and for processes that run them)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str) -> str:
        """Run a SLURM client command on this cluster; its stdout (raises on failure)."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> dict[str, tuple[str, str, str]]:
        """Jobs SLURM knows of: job id -> (name, state, reason)."""
        rows = (line.split("|") for line in self.command("squeue", "-h", "-o", "%i|%j|%T|%r").splitlines())
        return {job: (name, state, reason) for job, name, state, reason in rows}

    def wait_for_no_jobs(self, timeout: float = 60, *, cancel: bool = True) -> None:
        """Wait until SLURM has no job left (cancelling them all first, unless ``cancel=False``)."""
        deadline = time.monotonic() + timeout
        if cancel:
            self.command("scancel", "--user", "root")
        while self.jobs():
            if time.monotonic() > deadline:
                raise RuntimeError(f"SLURM jobs still there after {timeout:g} s (cancel={cancel}): {self.jobs()}")
            time.sleep(0.5)

    def log(self, name: str, lines: int = 20) -> str:
        """The last lines of a daemon's log (for error messages)."""
        path = self.root / "log" / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Cancel the jobs left, then stop the daemons this node started (slurmd, slurmctld, munged)."""
        try:
            if all(p.poll() is None for p in self.processes):
                self.wait_for_no_jobs(timeout=30)
        finally:
            for process in reversed(self.processes):
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def missing_binaries() -> list[str]:
    """The SLURM and munge programs absent from PATH (sbin included)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_size() -> tuple[str, int, int]:
    """This machine as slurmd sees it: node name, CPUs, RealMemory (MB)."""
    fields = dict(item.split("=", 1) for item in subprocess.run(
        [_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True).stdout.split() if "=" in item)
    return fields["NodeName"], int(fields["CPUs"]), int(fields["RealMemory"])


def _which(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise SlurmUnavailable(f"{name} is not installed (apt-get install slurm-wlm munge)")
    return found


def _start(node: SlurmNode, name: str, *args: str) -> None:
    with open(node.root / "log" / f"{name}.out", "wb") as log:  # the daemon keeps its own copy of the file
        node.processes.append(subprocess.Popen([_which(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                               env=node.env))


def _start_munge(node: SlurmNode) -> None:
    munge = node.root / "munge"
    munge.mkdir(mode=0o711)  # munged wants its socket's directory traversable by all
    key = munge / "munge.key"
    subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key)], check=True, capture_output=True, timeout=30)
    key.chmod(0o600)
    _start(node, "munged", "--foreground", "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
           f"--log-file={munge}/munged.log", f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed")
    _wait(node, lambda: (munge / "munge.socket").exists(), "munged to create its socket", "munged.out")


def _wait(node: SlurmNode, ready, what: str, log: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        exited = [p.args[0] for p in node.processes if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            reason = f"{exited} exited" if exited else f"no result after {timeout:g} s"
            raise SlurmUnavailable(f"waiting for {what}: {reason}; {log}:\n{node.log(log)}")
        time.sleep(0.25)


def _node_state(node: SlurmNode) -> str:
    done = subprocess.run(["sinfo", "-h", "-n", node.node, "-o", "%T"], env=node.env, capture_output=True, text=True,
                          timeout=30)
    return done.stdout.strip() if done.returncode == 0 else ""


def start_slurm(root: Path) -> SlurmNode:
    """Start munged, slurmctld and slurmd for a one-node cluster under ``root``; wait for the node to be idle.

    Raises
    ------
    SlurmUnavailable
        When a program is missing, this is not root, or a daemon does not come up (with its log).
    """
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"missing {missing}: install them with `apt-get install slurm-wlm munge`")
    if os.geteuid() != 0:
        raise SlurmUnavailable("the test SLURM cluster runs its daemons as root (SlurmUser=root); "
                               "run the tests as root")
    name, cpus, memory = _node_size()
    for folder in ("state", "spool", "log"):
        (root / folder).mkdir(parents=True)
    conf = root / "slurm.conf"
    conf.write_text(_CONF.format(root=root, ctld_port=_free_port(), d_port=_free_port(), node=name, cpus=cpus,
                                 memory=memory, partition=PARTITION, max_time=MAX_TIME))
    node = SlurmNode(root=root, conf=conf, node=name, cpus=cpus, memory_mb=memory)
    try:
        _start_munge(node)
        _start(node, "slurmctld", "-D", "-i", "-f", str(conf))
        _start(node, "slurmd", "-D", "-N", name, "-f", str(conf))
        _wait(node, lambda: _node_state(node) == "idle", f"node {name} to be idle in sinfo", "slurmctld.log")
    except BaseException:
        node.stop()
        raise
    return node


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> SlurmNode:
    """A one-node SLURM cluster for the session, with ``SLURM_CONF`` pointing at it.

    It fails (never skips) when SLURM cannot start, except outside CI (``CI`` unset) when the
    programs are not installed at all: then the test skips and names them.
    """
    missing = missing_binaries()
    if missing and not _in_ci():
        pytest.skip(f"SLURM is not installed (missing {missing}); `apt-get install slurm-wlm munge`")
    root = Path(tmp_path_factory.mktemp("slurm", numbered=True))
    try:
        node = start_slurm(root)
    except (SlurmUnavailable, OSError, subprocess.SubprocessError) as error:
        reason = f"the test SLURM cluster could not start: {error}"
    else:
        reason = ""
    if reason:  # outside the except block: the reason alone, not a chained traceback
        pytest.fail(reason, pytrace=False)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(node.conf)
    try:
        yield node
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        node.stop()
