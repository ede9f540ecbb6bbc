"""In-process extraction on a GPU decodes image chunk k+1 while chunk k encodes; on a CPU it does not.

CPU torch stands in for a GPU (``HOST_DEVICE_TYPES`` emptied, as in ``test_inputs.py``). The
overlap is shown, not timed: the encoder of the first chunk waits until the second chunk's decode
has started, which can only happen when that decode runs in the background.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurotask.features import encoders, extract, inputs
from neurotask.features.extract import extract_features

MODELS = ["normal"]
RUN = {"batch_size": 2, "image_chunk": 2}  # the four stimuli in two chunks


@pytest.fixture(scope="module")
def weights_dir(make_checkpoint) -> Path:
    return make_checkpoint(MODELS[0]).parent


def _record(monkeypatch: pytest.MonkeyPatch, wait_for_second_decode: bool) -> tuple[list[str], threading.Event]:
    """Log decode starts and encoder calls; optionally hold the first encode until chunk 2 decodes."""
    events: list[str] = []
    second_decode = threading.Event()
    decode, encode = extract._decode, encoders.encode

    def logged_decode(paths: list[str], threads: int) -> np.ndarray:
        events.append(f"decode {len(events)}")
        if sum(e.startswith("decode") for e in events) == 2:
            second_decode.set()
        return decode(paths, threads)

    def logged_encode(encoder: object, batch: object) -> np.ndarray:
        if wait_for_second_decode and not second_decode.is_set():
            assert second_decode.wait(timeout=30), "chunk 2 did not start decoding while chunk 1 encoded"
        events.append("encode")
        return encode(encoder, batch)

    monkeypatch.setattr(extract, "_decode", logged_decode)
    monkeypatch.setattr(encoders, "encode", logged_encode)
    return events, second_decode


def test_on_a_gpu_the_next_chunk_decodes_while_this_one_encodes(
    stimuli_dir: Path, weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = extract_features(stimuli_dir, MODELS, tmp_path / "host.zarr", weights=weights_dir, **RUN)
    monkeypatch.setattr(inputs, "HOST_DEVICE_TYPES", frozenset())
    events, second_decode = _record(monkeypatch, wait_for_second_decode=True)
    ahead = extract_features(stimuli_dir, MODELS, tmp_path / "ahead.zarr", weights=weights_dir, **RUN)
    assert second_decode.is_set()
    assert [e.split()[0] for e in events] == ["decode", "decode", "encode", "encode"]
    xr.testing.assert_identical(ahead.drop_attrs(), host.drop_attrs())
    np.testing.assert_array_equal(ahead.values, host.values)


def test_on_a_cpu_each_chunk_decodes_after_the_previous_one_encoded(
    stimuli_dir: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = _record(monkeypatch, wait_for_second_decode=False)
    extract_features(stimuli_dir, MODELS, weights=weights_dir, **RUN)
    assert [e.split()[0] for e in events] == ["decode", "encode", "decode", "encode"]


def test_a_chunk_that_fails_to_decode_ahead_leaves_the_chunks_before_it_written(
    stimuli_dir: Path, weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "HOST_DEVICE_TYPES", frozenset())
    decode, calls = extract._decode, []

    def failing_second(paths: list[str], threads: int) -> np.ndarray:
        calls.append(paths)
        if len(calls) == 2:
            raise OSError("disk went away")
        return decode(paths, threads)

    monkeypatch.setattr(extract, "_decode", failing_second)
    store = tmp_path / "features.zarr"
    with pytest.raises(OSError, match="disk went away"):
        extract_features(stimuli_dir, MODELS, store, weights=weights_dir, **RUN)
    monkeypatch.setattr(extract, "_decode", decode)
    resumed = []
    monkeypatch.setattr(extract, "_decode", lambda paths, threads: resumed.append(paths) or decode(paths, threads))
    extract_features(stimuli_dir, MODELS, store, weights=weights_dir, **RUN)
    assert resumed == [calls[1]]  # only the chunk that failed is decoded again
