"""Provenance every writer stamps: version, time, parameters, input hashes."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


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
    from neurotask import __version__

    return {
        "neurotask_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.dumps(dict(parameters or {}), sort_keys=True, default=str),
        "inputs": json.dumps(dict(inputs or {}), sort_keys=True, default=str),
    }

