"""Taskonomy encoders: ``visualpriors``' ``TaskonomyEncoder``, built, loaded, cached and run.

The architecture comes from ``visualpriors`` (a ResNet-50 trunk compressed to 8 x 16 x 16 for a
256 x 256 input); only ``colorization`` differs: its published checkpoint was trained on one input
channel, so its first convolution is rebuilt with one input channel (``visualpriors`` builds three
and fails with a size mismatch on ``conv1.weight``).

Two defects of ``visualpriors`` 0.3.5 are avoided rather than patched: it calls
``torch.utils.model_zoo.load_url`` without importing ``torch.utils.model_zoo`` (an
AttributeError in recent torch), and it relies on ``torch.load``'s old default
``weights_only=False``. Here checkpoints are read with ``torch.load(weights_only=True)`` from
files verified by sha256 (:mod:`neurotask.features.weights`); :func:`fix_visualpriors` makes
the package's own functions usable for comparison.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from visualpriors.taskonomy_network import TaskonomyEncoder

from neurotask.features import onednn
from neurotask.features.registry import INPUTS, resolve_task
from neurotask.features.weights import Checkpoint, WeightsError, record_verified, resolve_weights

__all__ = [
    "ENCODER",
    "OUTPUT_SHAPE",
    "N_FEATURES",
    "MODEL_CACHE_SIZE",
    "build_encoder",
    "random_state_dict",
    "save_random_checkpoint",
    "load_encoder",
    "cached_encoder",
    "cache_info",
    "clear_cache",
    "encode",
    "resolve_device",
    "default_batch_size",
    "DEFAULT_BATCH_SIZE",
    "fix_visualpriors",
]

#: What the features store records as its encoder.
ENCODER = "visualpriors.TaskonomyEncoder (ResNet-50 trunk, compress1 to 8x16x16 for 256x256 inputs)"
OUTPUT_SHAPE = (8, 16, 16)
N_FEATURES = int(np.prod(OUTPUT_SHAPE))

#: Encoders kept per process by :func:`cached_encoder` (``NEUROTASK_MODEL_CACHE`` overrides);
#: ~95 MB each, so all 25 fit in ~2.4 GB.
MODEL_CACHE_SIZE = int(os.environ.get("NEUROTASK_MODEL_CACHE", "25"))

#: Images per forward pass when none is given, by device type. On CPU small batches are fastest
#: (measured on 2 cores, images/s at batch 1 / 2 / 4: exact NCHW 19.5 / 21.0 / 14.7; fast mode
#: 24 / 28 / 28: larger batches spill the caches); GPUs want larger batches.
DEFAULT_BATCH_SIZE: dict[str, int] = {"cpu": 2, "cuda": 16}


def fix_visualpriors() -> None:
    """Make ``visualpriors.representation_transform`` work on recent torch.

    Imports ``torch.utils.model_zoo``, which the package uses without importing. Its default
    loader still cannot build ``colorization`` (use :func:`load_encoder`).
    """
    import torch.utils.model_zoo  # noqa: F401


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; any other torch device string as is."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return resolved


def default_batch_size(device: str | torch.device = "auto") -> int:
    """Images per forward pass for a device (see :data:`DEFAULT_BATCH_SIZE`; other types: CPU's)."""
    return DEFAULT_BATCH_SIZE.get(resolve_device(device).type, DEFAULT_BATCH_SIZE["cpu"])


def build_encoder(task: str, *, normalize_outputs: bool = True) -> TaskonomyEncoder:
    """An untrained encoder for a task, in eval mode, without gradients.

    Parameters
    ----------
    task : str
        Task name or alias; ``colorization`` gets a 1-input-channel ``conv1``.
    normalize_outputs : bool
        Apply ``visualpriors``' final GroupNorm (its default for representations).

    Returns
    -------
    visualpriors.taskonomy_network.TaskonomyEncoder
    """
    task = resolve_task(task)
    encoder = TaskonomyEncoder(normalize_outputs=normalize_outputs, eval_only=True)
    if INPUTS[task] == "lightness":
        encoder.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=0, bias=False)
        encoder.conv1.weight.requires_grad_(False)
    return encoder.eval()


def random_state_dict(task: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random float32 weights for a task's encoder (tests and demos).

    Convolutions are He-normal (fan-out); batch norms get random affine parameters and running
    statistics, so loading them is visible in the output; the last batch norm of each residual
    branch is scaled down (as zero-init residual schemes do) to keep activations O(1).
    """
    rng = np.random.default_rng(seed)  # numpy's generator: ~4x faster than torch's for 23M values
    with torch.device("meta"):  # shapes only: no time spent on the module's own init
        template = build_encoder(task).state_dict()
    state = {}
    for name, meta in template.items():
        shape = tuple(meta.shape)
        if not meta.is_floating_point():
            state[name] = torch.zeros(shape, dtype=meta.dtype)
            continue
        if meta.ndim == 4:
            fan_out = shape[0] * shape[2] * shape[3]
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32((2 / fan_out) ** 0.5)
        elif name.endswith("running_var"):
            values = 0.5 + rng.random(shape, dtype=np.float32)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            values = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        else:  # batch-norm weights
            scale = 0.2 if name.endswith("bn3.weight") else 1.0
            values = scale * (0.5 + rng.random(shape, dtype=np.float32))
        state[name] = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return state


def save_random_checkpoint(task: str, directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a seeded random-weight checkpoint for a task, named like a published one.

    The weights come from :func:`random_state_dict` (He-normal convolutions, random batch-norm
    statistics, float32), so outputs are neither constant nor exploding. The file is
    ``<task>_encoder-<sha256>.pth`` with the sha256 of the bytes written; it loads through the
    same code path as a published checkpoint and is recorded as ``"custom"``. These are random
    encoders, for tests and demos only: their features mean nothing.

    Parameters
    ----------
    task : str
        Task name or alias (``colorization`` gets a 1-channel first convolution).
    directory : path-like
        Created if missing.
    seed : int
        Seed of the weights; the same seed gives the same file.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> save_random_checkpoint("normal", "weights", seed=0)  # doctest: +SKIP
    PosixPath('weights/normal_encoder-….pth')
    """
    task = resolve_task(task)
    buffer = io.BytesIO()
    torch.save({"state_dict": random_state_dict(task, seed)}, buffer)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(directory) / f"{task}_encoder-{sha256}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)
    record_verified(path, sha256)
    return path


def _read_state_dict(checkpoint: Checkpoint) -> Mapping[str, torch.Tensor]:
    try:
        loaded: Any = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        if checkpoint.kind != "published":  # torch's own hint (weights_only=False) would run untrusted code
            why = "holds objects other than tensors" if zipfile.is_zipfile(checkpoint.path) else \
                "is not a torch.save file (a zip archive)"
            raise WeightsError(
                f"checkpoint {str(checkpoint.path)!r} {why} ({type(error).__name__}: {str(error).splitlines()[0]}); "
                f"replace it with a file written by torch.save({{'state_dict': encoder.state_dict()}}, path)"
            ) from error
        # the published files are verified against visualpriors' hashes, so trusted
        loaded = torch.load(checkpoint.path, map_location="cpu", weights_only=False)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"checkpoint {str(checkpoint.path)!r} holds no state dict (expected {{'state_dict': {{name: tensor}}}})"
        )
    return state


def _check_shapes(task: str, encoder: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    expected = {name: tuple(t.shape) for name, t in encoder.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = {n: (got[n], expected[n]) for n in expected if n in got and got[n] != expected[n]}
    if missing or unexpected or wrong:
        detail = "; ".join(
            [f"{n}: checkpoint {g}, expected {e}" for n, (g, e) in list(wrong.items())[:5]]
            + ([f"missing {missing[:5]}"] if missing else [])
            + ([f"unexpected {unexpected[:5]}"] if unexpected else [])
        )
        raise WeightsError(
            f"checkpoint {path!r} does not fit the {task!r} encoder ({detail}); the {task!r} encoder expects "
            f"conv1.weight of shape {expected['conv1.weight']}. Is it another task's or network's checkpoint?"
        )


def load_encoder(
    task: str,
    weights: str | os.PathLike[str] | Checkpoint | None = None,
    *,
    device: str | torch.device = "cpu",
    normalize_outputs: bool = True,
    fast: bool = False,
) -> TaskonomyEncoder:
    """Build a task's encoder and load its verified checkpoint.

    Parameters
    ----------
    task : str
        Task name or alias.
    weights : path-like or Checkpoint, optional
        A checkpoint directory (see :func:`neurotask.features.weights.resolve_weights`) or an
        already resolved :class:`~neurotask.features.weights.Checkpoint`.
    device : str or torch.device
        Where the module lives (``"auto"`` allowed).
    normalize_outputs : bool
        Apply the final GroupNorm, as ``visualpriors.representation_transform`` does.
    fast : bool
        The fast inference mode: batch norms folded into the convolutions before them and
        convolutions run channels-last (NHWC): ~1.3x faster on CPU, the same function in another
        float32 summation order, so outputs differ from ``visualpriors`` by rounding (up to
        ~3e-4 after the GroupNorm on random weights). ``False`` (the default) keeps
        ``visualpriors``' modules and NCHW layout: its exact numbers.

    Returns
    -------
    visualpriors.taskonomy_network.TaskonomyEncoder
        In eval mode, without gradients.

    Raises
    ------
    WeightsError
        If the checkpoint is missing, corrupt or does not fit (naming the task and expected shape).
    """
    task = resolve_task(task)
    checkpoint = weights if isinstance(weights, Checkpoint) else resolve_weights(task, weights)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        encoder = build_encoder(task, normalize_outputs=normalize_outputs)
    state = _read_state_dict(checkpoint)
    _check_shapes(task, encoder, state, str(checkpoint.path))
    encoder.load_state_dict(state, strict=True, assign=True)
    if fast:
        _fold_batch_norms(encoder)
    encoder = encoder.to(resolve_device(device))
    if fast:
        encoder = encoder.to(memory_format=torch.channels_last)
    encoder.channels_last = fast  # read by encode() to lay out its input alike
    # read by encode(): the exact module run on oneDNN tensors, the same numbers in fewer passes
    encoder.onednn_plan = onednn.plan(encoder) if not fast and resolve_device(device).type == "cpu" else None
    return encoder


def _fold_batch_norms(encoder: TaskonomyEncoder) -> None:
    """Fold each eval-mode batch norm into the convolution before it, in place (inference only).

    ``bn(conv(x)) = conv'(x)`` with ``w' = w * gamma / sqrt(var + eps)`` and a bias: one pass
    over each activation fewer (~10-25% faster on CPU), the same function up to float32 rounding.
    """
    pairs = [(encoder, "conv1", "bn1"), (encoder, "compress1", "compress_bn")]
    for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
        for block in layer:
            pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2"), (block, "conv3", "bn3")]
            if block.downsample is not None and isinstance(block.downsample[-1], nn.BatchNorm2d):
                pairs.append((block.downsample, "0", "1"))
    for module, conv_name, norm_name in pairs:
        conv, norm = getattr(module, conv_name), getattr(module, norm_name)
        weight, bias = fuse_conv_bn_weights(  # new tensors: no copy of the module as fuse_conv_bn_eval
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
        )
        conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
        setattr(module, norm_name, nn.Identity())


_CACHE: OrderedDict[tuple[Any, ...], TaskonomyEncoder] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_STATS = {"loads": 0, "hits": 0}


def cached_encoder(
    checkpoint: Checkpoint,
    *,
    device: str | torch.device = "cpu",
    normalize_outputs: bool = True,
    fast: bool = False,
) -> TaskonomyEncoder:
    """:func:`load_encoder`, cached per process by (task, file, sha256, device, options).

    Each Dask worker process thus loads a model once, however many image batches it encodes;
    the least recently used model is dropped beyond :data:`MODEL_CACHE_SIZE`.
    """
    device = resolve_device(device)
    key = (checkpoint.task, str(checkpoint.path), checkpoint.sha256, str(device), normalize_outputs, fast)
    with _CACHE_LOCK:
        if key in _CACHE:
            _STATS["hits"] += 1
            _CACHE.move_to_end(key)
            return _CACHE[key]
        encoder = load_encoder(
            checkpoint.task, checkpoint, device=device, normalize_outputs=normalize_outputs,
            fast=fast,
        )
        _STATS["loads"] += 1
        _CACHE[key] = encoder
        while len(_CACHE) > MODEL_CACHE_SIZE:
            _CACHE.popitem(last=False)
        return encoder


def cache_info() -> dict[str, int]:
    """This process's encoder cache: ``loads``, ``hits`` and ``size``."""
    return {**_STATS, "size": len(_CACHE)}


def clear_cache() -> None:
    """Drop every cached encoder and reset the counters."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(loads=0, hits=0)


def encode(encoder: nn.Module, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Run an encoder on a batch of preprocessed images.

    Parameters
    ----------
    encoder : torch.nn.Module
        From :func:`load_encoder` (its device is used).
    inputs : numpy.ndarray or torch.Tensor of float32, shape (n, 256, 256, channels)
        Images in [-1, 1], channels last (3 for RGB, 1 for colorization's L*); a tensor may
        already be on the encoder's device (:class:`neurotask.features.inputs.ChunkPixels`).

    Returns
    -------
    numpy.ndarray of float32, shape (n, 2048)
        The (8, 16, 16) output of each image flattened in C order: feature ``c * 256 + y * 16 + x``.
    """
    device = next(encoder.parameters()).device
    # an NHWC array seen as NCHW is already channels-last in memory; the input's layout picks
    # the convolution kernels, so an NCHW encoder gets an NCHW input
    if not isinstance(inputs, torch.Tensor):
        inputs = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    x = inputs.to(torch.float32).permute(0, 3, 1, 2)
    if not getattr(encoder, "channels_last", False):
        x = x.contiguous()
    x = x.to(device)
    plan = getattr(encoder, "onednn_plan", None)
    with torch.inference_mode(), _full_float32(device):
        y = onednn.forward(plan, x) if plan is not None and onednn.applies(len(x)) else encoder(x)
    return y.contiguous().reshape(y.shape[0], -1).float().cpu().numpy()


@contextlib.contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    # TF32 convolutions (cuDNN's default) change features at ~1e-3: keep float32 on GPUs
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        previous = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = previous
        return
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous
