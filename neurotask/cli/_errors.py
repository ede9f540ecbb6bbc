"""Expected failures become one or two lines on stderr and a non-zero exit, without a traceback.

*Expected* are the failures a user causes and can fix: a wrong config value, a missing, truncated
or corrupt input file, an output folder that is read-only, full or in use, and the validation
errors our own modules raise (a ``ValueError``/``TypeError`` raised in ``neurotask``). Anything
else is a bug and keeps its traceback. ``neurotask --debug`` (or ``NEUROTASK_DEBUG=1``) prints the
traceback of expected failures too.
"""

from __future__ import annotations

import errno
import functools
import gzip
import os
import sys
import traceback
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

__all__ = ["DEBUG_ENV", "EXIT_EXPECTED", "debug_enabled", "describe", "fail", "handled", "set_debug", "writing_to"]

#: The environment variable that, set to 1, shows the traceback of expected failures.
DEBUG_ENV = "NEUROTASK_DEBUG"

#: Exit status of an expected failure (click's own usage errors exit with 2 too).
EXIT_EXPECTED = 2

# Error classes of our modules, nibabel and PIL are named by (module, class) and looked up only in
# modules already loaded: an error whose class was never imported cannot have been raised, and
# importing them here would put torch, zarr and Dask into every command, `neurotask --help` too.
_OURS = (("neurotask.pipeline.config", "ConfigError"), ("neurotask.stores.schema", "StoreError"),
         ("neurotask.pipeline.runner", "LockedError"), ("neurotask.features.weights", "WeightsError"),
         ("neurotask.fmri.masking", "GridMismatchError"))
_CORRUPT = (EOFError, zlib.error, gzip.BadGzipFile)
_CORRUPT_VOLUME = ("nibabel.filebasedimages", "ImageFileError")
_UNDECODABLE_IMAGE = ("PIL", "UnidentifiedImageError")

#: The fix for an output that cannot be written, by errno.
_WRITE_FIXES = {
    errno.ENOSPC: "no space left on the device; free some space or write the outputs elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write the outputs elsewhere",
    errno.EROFS: "read-only file system; write the outputs to a writable folder",
    errno.EACCES: "permission denied; use a folder you may write to (or read)",
    errno.EPERM: "operation not permitted; use a folder you may write to (or read)",
}

F = TypeVar("F", bound=Callable[..., Any])

#: ``--debug`` of the current invocation (the app's callback sets it before every command).
_debug = {"on": False}


def _loaded(*classes: tuple[str, str]) -> tuple[type[BaseException], ...]:
    """The classes, given as (module, name), whose module is loaded."""
    return tuple(getattr(sys.modules[module], name) for module, name in classes if module in sys.modules)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and the errors it was raised from (``raise ... from``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _raised_in_neurotask(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in a ``neurotask`` module."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module == "neurotask" or module.startswith("neurotask.")


def _os_message(error: OSError) -> str | None:
    where = error.filename
    if isinstance(error, FileNotFoundError):
        if where is None:  # our own FileNotFoundError: its message says what is missing
            return str(error)
        return f"{where}: no such file or directory; check the path"
    fix = _WRITE_FIXES.get(error.errno) if error.errno is not None else None
    if fix is None:
        return None
    return f"{where}: {fix}" if where is not None else f"{error.strerror or error}: {fix}"


def _message(error: BaseException) -> str | None:
    undecodable = _loaded(_UNDECODABLE_IMAGE)
    if isinstance(error, _loaded(*_OURS)):
        return str(error)
    if isinstance(error, OSError) and not isinstance(error, (gzip.BadGzipFile, *undecodable)):
        return _os_message(error)
    if isinstance(error, (*_CORRUPT, *_loaded(_CORRUPT_VOLUME))):
        return (f"an input file is truncated or corrupt ({type(error).__name__}: {error}); "
                f"re-download it (--debug shows where it was read)")
    if isinstance(error, undecodable):
        return f"{error}; replace or remove the image (extract: on_error = 'skip' lists and skips it)"
    if isinstance(error, (ValueError, TypeError)) and _raised_in_neurotask(error):
        return str(error)
    return None


def describe(error: BaseException) -> str | None:
    """The message for an expected failure, or None for an unexpected one (a bug: keep its traceback).

    Parameters
    ----------
    error : BaseException
        What a command raised. The errors it was raised from are looked at too, so that a full
        disk under a library's own error type is still reported as a full disk.

    Returns
    -------
    str or None
        What went wrong, naming the file, argument or config key, and how to fix it.
    """
    for link in _chain(error):
        message = _message(link)
        if message is not None:
            return message
    return None


def set_debug(on: bool) -> None:
    """Record this invocation's ``--debug``."""
    _debug["on"] = on


def debug_enabled() -> bool:
    """``--debug`` was given, or ``NEUROTASK_DEBUG`` is set to a true value."""
    return _debug["on"] or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise (``raise fail(...)``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_EXPECTED)


@contextmanager
def writing_to(out: str | os.PathLike[str] | None) -> Iterator[None]:
    """Name ``out`` in a full-disk or read-only error that names no file (a failed ``write()`` names none)."""
    try:
        yield
    except OSError as error:
        if out is None or error.filename is not None or error.errno not in _WRITE_FIXES:
            raise
        raise OSError(error.errno, error.strerror, str(out)) from error


def handled(command: F) -> F:
    """Wrap a command so that expected failures print their message and exit non-zero.

    Catching inside the command (not around the click app) keeps click from turning an
    ``EOFError`` into a bare ``Aborted.``, and works the same under the console script and
    ``typer.testing.CliRunner``.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with writing_to(kwargs.get("out")):
                return command(*args, **kwargs)
        except Exception as error:  # typer's own Exit and usage errors are not ours: describe() gives None
            message = describe(error)
            if message is None:
                raise
            if debug_enabled():
                traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
            raise fail(message) from None

    return wrapper  # type: ignore[return-value]
