"""The client neurotask's cluster factories return, and what they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed import Client
from rich.console import Console

__all__ = ["ClusterClient", "check_positive", "console"]

#: Where the factories print (dashboard addresses, SLURM job ids): standard error.
console = Console(stderr=True)


class ClusterClient(Client):
    """A :class:`distributed.Client` that also closes the cluster object it was started on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Called (in order) when the client closes, before the cluster does.
        self.before_close: list[Callable[[], None]] = []
        super().__init__(*args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Run :attr:`before_close`, close the client, then the cluster it owns."""
        for hook in self.before_close:
            hook()
        try:
            return super().close(*args, **kwargs)
        finally:
            if self.cluster is not None:
                self.cluster.close()


def check_positive(name: str, value: int | None) -> None:
    """Raise ``ValueError`` unless ``value`` is None or a positive integer (not a bool)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None; got {value!r}")
