"""The ``neurotask`` command line: parse, call the function the pipeline calls, print.

Every command turns an expected failure (a wrong config or option, a missing or corrupt input, an
output folder that is read-only, full or in use) into ``error: ...`` on stderr and exit status 2;
``neurotask --debug`` or ``NEUROTASK_DEBUG=1`` adds the traceback. Unexpected errors keep theirs.
"""

from __future__ import annotations

from neurotask.cli import analysis, data, runs
from neurotask.cli._app import app, cluster_client

__all__ = ["analysis", "app", "cluster_client", "data", "runs"]
