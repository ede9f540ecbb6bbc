"""Provenance every writer stamps: version, time, parameters, input hashes."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from neurotask._version import __version__


def sha256_file(path: str | os.PathLike[str], *, block_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of a file, read in blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Return the hex sha256 digest of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def provenance(
    parameters: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Provenance attrs every writer stamps: version, creation time, parameters, input hashes.

    Parameters
    ----------
    parameters : mapping, optional
        The call's parameters; stored as JSON (non-JSON values are stored as their ``str``).
    inputs : mapping of str to str, optional
        Input names mapped to a hash or identifier (e.g. a file's sha256).

    Returns
    -------
    dict
        ``neurotask_version``, ``created`` (ISO 8601, UTC), ``parameters`` and ``inputs`` (JSON).
    """
    return {
        "neurotask_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.dumps(dict(parameters or {}), sort_keys=True, default=str),
        "inputs": json.dumps(dict(inputs or {}), sort_keys=True, default=str),
    }



#: Files up to this size are fingerprinted by their whole content; larger ones by their size,
#: modification time, and the hash of their first and last blocks (a NIfTI's header is in the first).
WHOLE_CONTENT_BYTES = 32 << 20
_EDGE_BYTES = 1 << 20


def fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """A digest of input files that changes when any of them changes, even in place.

    Small inputs (image lists, masks, events, configs, images) are hashed whole; large ones
    (4-D betas) by size, modification time and the hashes of their first and last MiB, so that a
    subject's gigabytes are not read twice. File names are part of the digest.

    Parameters
    ----------
    paths : iterable of path-like
        The files a step reads.

    Returns
    -------
    str
        A hex sha256 digest.
    """
    digest = hashlib.sha256()
    for path in sorted(map(str, paths)):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0".encode())
        if stat.st_size <= WHOLE_CONTENT_BYTES:
            digest.update(sha256_file(path).encode())
            continue
        digest.update(str(stat.st_mtime_ns).encode())
        with open(path, "rb") as f:
            digest.update(f.read(_EDGE_BYTES))
            f.seek(-_EDGE_BYTES, os.SEEK_END)
            digest.update(f.read(_EDGE_BYTES))
    return digest.hexdigest()
