"""Encoder checkpoints: find, download, verify and (for tests and demos) create them.

A checkpoint is a ``torch.save`` file holding ``{"state_dict": ...}`` for one task's
``TaskonomyEncoder``, named ``<task>_encoder-<sha256>.pth`` where ``<sha256>`` is the file's own
sha256 — the naming of the published files (``visualpriors.taskonomy_network.
TASKONOMY_PRETRAINED_URLS``). Every file is verified against the hash in its name before use.

Resolution order for a task (:func:`resolve_weights`):

1. the ``weights`` directory given by the caller;
2. the directory in the environment variable ``NEUROTASK_WEIGHTS``;
3. the torch hub cache, ``torch.hub.get_dir()/checkpoints`` (where ``visualpriors`` itself
   downloads to, so files it already fetched are reused);
4. a download of the published file with pooch into the torch hub cache, from
   ``NEUROTASK_WEIGHTS_URL`` or the published base URL.

In a directory the published file name is preferred; otherwise any ``<task>_encoder-*.pth``
is accepted (e.g. the random-weight checkpoints of
:func:`neurotask.features.encoders.save_random_checkpoint`), and it is
labelled ``"custom"`` rather than ``"published"``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from visualpriors.taskonomy_network import TASKONOMY_PRETRAINED_URLS

from neurotask.features.registry import TASKS, resolve_task
from neurotask.stores import sha256_file

__all__ = [
    "PUBLISHED",
    "DEFAULT_BASE_URL",
    "WEIGHTS_ENV",
    "URL_ENV",
    "Checkpoint",
    "WeightsError",
    "cache_dir",
    "search_dirs",
    "weights_url",
    "resolve_weights",
    "verify_checkpoint",
    "download_weights",
    "record_verified",
]

WEIGHTS_ENV = "NEUROTASK_WEIGHTS"
URL_ENV = "NEUROTASK_WEIGHTS_URL"

_NAME = re.compile(r"^(?P<task>[a-z0-9_]+)_encoder-(?P<sha256>[0-9a-f]{64})\.pth$")

#: Published encoder checkpoint file names, by task (the hash in each name is its sha256).
PUBLISHED: dict[str, str] = {
    task: TASKONOMY_PRETRAINED_URLS[f"{task}_encoder"].rsplit("/", 1)[1] for task in TASKS
}

#: Where the published files live (``NEUROTASK_WEIGHTS_URL`` or ``base_url=`` override it).
DEFAULT_BASE_URL: str = TASKONOMY_PRETRAINED_URLS["normal_encoder"].rsplit("/", 1)[0]


class WeightsError(ValueError):
    """Encoder weights are missing, corrupt, or do not fit the encoder."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint file.

    Attributes
    ----------
    task : str
        The task it encodes (``visualpriors`` spelling).
    path : pathlib.Path
        The file.
    sha256 : str
        Its sha256 (equal to the hash in its name).
    kind : str
        ``"published"`` when the hash is the published file's, else ``"custom"``.
    """

    task: str
    path: Path
    sha256: str
    kind: str


def _published_sha256(task: str) -> str:
    match = _NAME.match(PUBLISHED[task])
    assert match is not None  # the published names follow the pattern
    return match["sha256"]


def cache_dir() -> Path:
    """The torch hub checkpoint cache, ``torch.hub.get_dir()/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories searched for checkpoints, in order (explicit, ``NEUROTASK_WEIGHTS``, hub cache)."""
    dirs = []
    if weights is not None:
        dirs.append(Path(weights))
    if os.environ.get(WEIGHTS_ENV):
        dirs.append(Path(os.environ[WEIGHTS_ENV]))
    dirs.append(cache_dir())
    return dirs


def weights_url(task: str, base_url: str | None = None) -> str:
    """The download URL of a task's published encoder checkpoint."""
    base = base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{PUBLISHED[resolve_task(task)]}"


_VERIFIED: dict[tuple[str, int, int], str] = {}


def record_verified(path: Path, sha256: str) -> None:
    """Remember the sha256 of a file this process has just written from bytes it hashed."""
    stat = path.stat()
    _VERIFIED[(str(path.resolve()), stat.st_size, stat.st_mtime_ns)] = sha256


def _file_sha256(path: Path) -> str:
    # hashing 95 MB takes ~0.3 s: remember files already hashed in this process
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def verify_checkpoint(path: str | os.PathLike[str], task: str | None = None) -> Checkpoint:
    """Check a checkpoint file against the sha256 in its name.

    Parameters
    ----------
    path : path-like
        A file named ``<task>_encoder-<sha256>.pth``.
    task : str, optional
        The task it must encode; by default read from the name.

    Returns
    -------
    Checkpoint

    Raises
    ------
    WeightsError
        If the name does not follow the pattern, names another task, or the content's sha256
        differs from the one in the name (a corrupt or modified file; it is left in place).
    """
    path = Path(path)
    match = _NAME.match(path.name)
    if match is None or match["task"] not in TASKS:
        raise WeightsError(
            f"checkpoint {str(path)!r} is not named '<task>_encoder-<sha256>.pth' with a task from {list(TASKS)}"
        )
    if task is not None and match["task"] != resolve_task(task):
        raise WeightsError(f"checkpoint {str(path)!r} holds the {match['task']!r} encoder, not {task!r}")
    actual = _file_sha256(path)
    if actual != match["sha256"]:
        raise WeightsError(
            f"checksum mismatch for {str(path)!r}: its sha256 is {actual} but its name says {match['sha256']}; "
            f"the file is corrupt or was modified. Delete it and download it again (or re-create it)."
        )
    kind = "published" if actual == _published_sha256(match["task"]) else "custom"
    return Checkpoint(task=match["task"], path=path, sha256=actual, kind=kind)


def _find_in(directory: Path, task: str) -> Path | None:
    published = directory / PUBLISHED[task]
    if published.is_file():
        return published
    candidates = sorted(
        p for p in directory.glob(f"{task}_encoder-*.pth") if _NAME.match(p.name) and p.is_file()
    )
    if len(candidates) > 1:
        raise WeightsError(
            f"{len(candidates)} checkpoints for {task!r} in {str(directory)!r} "
            f"({[p.name for p in candidates]}); keep one, or pass a directory holding one"
        )
    return candidates[0] if candidates else None


def download_weights(
    task: str, directory: str | os.PathLike[str] | None = None, *, base_url: str | None = None
) -> Checkpoint:
    """Download a task's published checkpoint with pooch, verifying its sha256.

    Parameters
    ----------
    task : str
        Task name or alias.
    directory : path-like, optional
        Where to put the file; default :func:`cache_dir`.
    base_url : str, optional
        Base URL of the checkpoints; default ``NEUROTASK_WEIGHTS_URL`` or :data:`DEFAULT_BASE_URL`.

    Returns
    -------
    Checkpoint

    Raises
    ------
    WeightsError
        If the server cannot be reached (the message names the URL and where to put the file by
        hand), or the downloaded file's sha256 differs from the published one (the file is not kept).
    """
    import pooch
    import requests

    task = resolve_task(task)
    directory = Path(directory) if directory is not None else cache_dir()
    url = weights_url(task, base_url)
    try:
        path = pooch.retrieve(
            url, known_hash=f"sha256:{_published_sha256(task)}", fname=PUBLISHED[task], path=directory,
            progressbar=_has_tqdm(),
        )
    except requests.exceptions.RequestException as error:
        places = ", ".join(repr(str(d)) for d in search_dirs())
        raise WeightsError(
            f"cannot download the {task!r} encoder weights from {url} ({type(error).__name__}: {error}). "
            f"Download {PUBLISHED[task]} by hand and put it in one of: {places} "
            f"(or a directory passed as weights=, or set {WEIGHTS_ENV})."
        ) from error
    except ValueError as error:  # pooch: hash mismatch; it deleted the download
        raise WeightsError(
            f"checksum mismatch for the {task!r} encoder weights downloaded from {url}: {error}. "
            f"The file was not kept; check the URL ({URL_ENV}) and try again."
        ) from error
    return verify_checkpoint(path, task)


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_weights(
    task: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    base_url: str | None = None,
) -> Checkpoint:
    """Find (or download) and verify a task's encoder checkpoint.

    Parameters
    ----------
    task : str
        Task name or alias.
    weights : path-like, optional
        A directory searched first (see the module docstring for the order).
    download : bool
        Download the published file when no directory holds one.
    base_url : str, optional
        Download base URL (default ``NEUROTASK_WEIGHTS_URL``, else :data:`DEFAULT_BASE_URL`).

    Returns
    -------
    Checkpoint

    Raises
    ------
    WeightsError
        If no checkpoint is found and it cannot be downloaded, or a file fails verification.

    Examples
    --------
    >>> resolve_weights("normal", "weights/")  # doctest: +SKIP
    Checkpoint(task='normal', path=PosixPath('weights/normal_encoder-f5e2….pth'), sha256='f5e2…', kind='published')
    """
    task = resolve_task(task)
    if weights is not None and not Path(weights).is_dir():
        raise WeightsError(f"weights must be a directory of checkpoints; {str(weights)!r} is not a directory")
    for directory in search_dirs(weights):
        if directory.is_dir():
            found = _find_in(directory, task)
            if found is not None:
                return verify_checkpoint(found, task)
    if not download:
        places = ", ".join(repr(str(d)) for d in search_dirs(weights))
        raise WeightsError(
            f"no checkpoint for {task!r} in {places}; put {PUBLISHED[task]} (from {weights_url(task, base_url)}) "
            f"in one of them, or allow the download"
        )
    return download_weights(task, base_url=base_url)
