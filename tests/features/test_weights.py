"""Weights: naming, verification, resolution order, and downloads from a loopback HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurotask.features import weights
from neurotask.features.encoders import save_random_checkpoint
from neurotask.features.weights import (
    WeightsError,
    resolve_weights,
    verify_checkpoint,
)


def _fake_checkpoint(directory: Path, task: str, content: bytes) -> Path:
    """A small file named like a checkpoint (enough for resolution and hashing, not loading)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{task}_encoder-{hashlib.sha256(content).hexdigest()}.pth"
    path.write_bytes(content)
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server on a free port serving a directory: (base URL, directory)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_published_names_match_visualpriors() -> None:
    from visualpriors.taskonomy_network import TASKONOMY_PRETRAINED_URLS

    assert len(weights.PUBLISHED) == 25
    for task, name in weights.PUBLISHED.items():
        assert TASKONOMY_PRETRAINED_URLS[f"{task}_encoder"].endswith("/" + name)
        assert weights.weights_url(task) == f"http://127.0.0.1:9/closed/{name}"  # env override (conftest)


def test_save_random_checkpoint_named_by_its_sha256(make_checkpoint) -> None:
    path = make_checkpoint("normal")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"normal_encoder-{digest}.pth"
    checkpoint = verify_checkpoint(path)
    assert (checkpoint.task, checkpoint.sha256, checkpoint.kind) == ("normal", digest, "custom")


def test_save_random_checkpoint_is_seeded(make_checkpoint, tmp_path: Path) -> None:
    from neurotask.features.registry import TASKS

    again = save_random_checkpoint("normal", tmp_path, seed=TASKS.index("normal"))
    assert again.name == make_checkpoint("normal").name
    other = save_random_checkpoint("normal", tmp_path, seed=99)
    assert other.name != again.name


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _fake_checkpoint(tmp_path / "explicit", "normal", b"explicit")
    env = _fake_checkpoint(tmp_path / "env", "normal", b"env")
    hub = _fake_checkpoint(weights.cache_dir(), "normal", b"hub")
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(env.parent))
    assert resolve_weights("normal", explicit.parent).path == explicit
    assert resolve_weights("rgb2sfnorm").path == env  # aliases accepted
    monkeypatch.delenv(weights.WEIGHTS_ENV)
    assert resolve_weights("normal").path == hub
    # the other task in the explicit directory falls through to the next places
    with pytest.raises(WeightsError, match="cannot download the 'depth_zbuffer'"):
        resolve_weights("depth_zbuffer", explicit.parent)


def test_segment_tasks_do_not_shadow_each_other(tmp_path: Path) -> None:
    two_d = _fake_checkpoint(tmp_path, "segment_unsup2d", b"2d")
    two_half_d = _fake_checkpoint(tmp_path, "segment_unsup25d", b"25d")
    assert resolve_weights("segment_unsup2d", tmp_path).path == two_d
    assert resolve_weights("segment_unsup25d", tmp_path).path == two_half_d


def test_local_checksum_mismatch_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / f"normal_encoder-{'0' * 64}.pth"
    path.write_bytes(b"corrupt")
    with pytest.raises(WeightsError, match="checksum mismatch.*normal_encoder-0000"):
        resolve_weights("normal", tmp_path)
    assert path.exists()  # a user's file is never deleted


def test_ambiguous_directory(tmp_path: Path) -> None:
    _fake_checkpoint(tmp_path, "normal", b"a")
    _fake_checkpoint(tmp_path, "normal", b"b")
    with pytest.raises(WeightsError, match="2 checkpoints for 'normal'"):
        resolve_weights("normal", tmp_path)


def test_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no checkpoint for 'normal'.*normal_encoder-f5e2.*http://127\.0\.0\.1:9"):
        resolve_weights("normal", tmp_path, download=False)
    with pytest.raises(WeightsError, match="must be a directory"):
        resolve_weights("normal", tmp_path / "nope")


def test_bad_names(tmp_path: Path) -> None:
    path = _fake_checkpoint(tmp_path, "normal", b"x")
    with pytest.raises(WeightsError, match="holds the 'normal' encoder, not 'curvature'"):
        verify_checkpoint(path, "curvature")
    renamed = path.rename(tmp_path / "normal.pth")
    with pytest.raises(WeightsError, match="not named"):
        verify_checkpoint(renamed)


def test_download_success(server, make_checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, root = server
    checkpoint = make_checkpoint("normal")
    # the served random checkpoint stands in for the published file
    monkeypatch.setitem(weights.PUBLISHED, "normal", checkpoint.name)
    (root / checkpoint.name).write_bytes(checkpoint.read_bytes())
    monkeypatch.setenv(weights.URL_ENV, base_url)
    resolved = resolve_weights("normal")
    assert resolved.path == weights.cache_dir() / checkpoint.name
    assert resolved.kind == "published"
    assert resolved.path.read_bytes() == checkpoint.read_bytes()
    # ... and it loads through the same code path as any checkpoint
    from neurotask.features.encoders import load_encoder

    assert tuple(load_encoder("normal").conv1.weight.shape) == (64, 3, 7, 7)


def test_download_checksum_mismatch(server, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, root = server
    name = f"normal_encoder-{hashlib.sha256(b'expected').hexdigest()}.pth"
    monkeypatch.setitem(weights.PUBLISHED, "normal", name)
    (root / name).write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="checksum mismatch.*not kept"):
        weights.download_weights("normal", base_url=base_url)
    assert not weights.cache_dir().exists() or not list(weights.cache_dir().iterdir())


def test_download_server_down(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that was free: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/weights/"
    with pytest.raises(WeightsError, match=rf"cannot download the 'normal'.*127\.0\.0\.1:{port}/weights/normal_encoder-f5e2.*put it in"):
        resolve_weights("normal", tmp_path, base_url=url)
    assert not (weights.cache_dir() / weights.PUBLISHED["normal"]).exists()
