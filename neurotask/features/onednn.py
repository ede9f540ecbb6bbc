"""Exact CPU inference of a ``TaskonomyEncoder`` on oneDNN tensors: visualpriors' numbers, fewer passes.

Why. In exact mode (the module as ``visualpriors`` builds it, NCHW) torch runs every convolution
of the encoder through oneDNN, whose kernels want a blocked layout (``aBcd16b``: 16 channels
innermost). Each of the 54 convolution calls therefore reorders its input from NCHW into that
layout, its weights into a blocked layout, and its output back to NCHW; batch norms, ReLUs and
the residual adds then run on NCHW, each another pass over memory. oneDNN's trace
(``ONEDNN_VERBOSE=1``, batch 2, 2 threads) counts 161 reorders per forward for 54 convolutions.
Here the activations stay in oneDNN's layout from the first convolution to the last: each
convolution runs the very same oneDNN primitive on the same blocked data, and the reorders of
activations are gone (2 per forward instead of 107; the weights are still reordered per call, as
before: prepacking them would hold a second ~95 MB copy per model). Measured on the shared 2-core
machine, ``extract_features`` on 128 images x 2 encoders, the previous code and this one
alternating (load 1.2-2.0): 38.8 / 40.2 s before, 37.5 / 33.2 s after; ``bench_extract.py --images
256`` in one run: 1.16x the naive visualpriors loop (was 0.96-1.07x).

Why the numbers are the same, bit for bit:

* convolutions: the same primitive (same problem, same src/weights/dst formats) on the same
  values, so the same sums; torch's own call adds nothing to them;
* batch norm: torch's eval kernel computes ``fma(x, alpha, beta)`` per channel, ``alpha``
  and ``beta`` in float32 from the running statistics. oneDNN's computes
  ``fma((x - mean) / sqrt(var + eps), scale, shift)``; given ``mean = 0``, ``var = 1``, ``eps = 0``
  it is ``fma(x, scale, shift)``, and ``scale``/``shift`` are torch's ``alpha``/``beta`` read back
  from torch's own kernel (``alpha = bn(1)`` with the mean and bias zeroed, ``beta = bn(0)``).
  :func:`batch_norm_matches` checks that identity on this machine once per process (it holds
  where torch's kernel uses FMA, as its AVX2/AVX-512 kernels do) and the plan is not used otherwise;
* ReLU, max pooling and the residual add are exact (no rounding, or one), in any layout;
* the final GroupNorm runs on the dense output with the module's own layer.

When. Only where torch would itself run every convolution of the dense module through oneDNN:
CPU, float32, oneDNN enabled, and more than one intra-op thread or a batch of 16 or more. With
one thread torch runs small-batch 1x1 convolutions with its own kernel, which sums in another
order (the 7.8e-5 of a one-thread Dask worker, ``benchmarks/README.md``); there
:func:`applies` is False and the dense module runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Plan", "plan", "applies", "batch_norm_matches", "forward"]

# torch runs a small-batch, unstrided 1x1 convolution through oneDNN only with > 1 thread or
# from this batch size on (aten/src/ATen/native/ConvUtils.h, ConvParams::use_mkldnn)
_ONEDNN_MIN_BATCH = 16


@dataclass(frozen=True)
class _Conv:
    """A convolution's weight (dense, as loaded) and geometry."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    padding: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)


@dataclass(frozen=True)
class _Norm:
    """An eval-mode batch norm as oneDNN's ``fma(x, alpha, beta)``; shapes (channels,)."""

    alpha: torch.Tensor
    beta: torch.Tensor
    zeros: torch.Tensor
    ones: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.batch_norm(x, self.alpha, self.beta, self.zeros, self.ones, False, 0.0, 0.0, False)


@dataclass(frozen=True)
class _Block:
    """A bottleneck block; ``shortcut`` is a (conv, norm) pair, a max-pool stride, or None (identity)."""

    layers: tuple[tuple[_Conv, _Norm], ...]
    shortcut: tuple[_Conv, _Norm] | int | None


@dataclass(frozen=True)
class Plan:
    """A ``TaskonomyEncoder``'s layers prepared for :func:`forward` (weights shared, not copied)."""

    stem: tuple[_Conv, _Norm]
    pool: nn.MaxPool2d
    blocks: tuple[_Block, ...]
    compress: tuple[_Conv, _Norm]
    groupnorm: nn.Module | None


def _conv(conv: nn.Conv2d) -> _Conv:
    return _Conv(conv.weight.detach(), None if conv.bias is None else conv.bias.detach(), tuple(conv.padding),
                 tuple(conv.stride), tuple(conv.dilation), conv.groups)


def _norm(norm: nn.BatchNorm2d) -> _Norm:
    """torch's own per-channel ``alpha`` and ``beta`` of an eval batch norm, read from its kernel."""
    n = norm.num_features
    zeros, ones = torch.zeros(n), torch.ones(n)
    with torch.inference_mode():
        # fma(1, alpha, 0) = alpha and fma(0, alpha, beta) = beta exactly (alpha needs neither mean nor bias)
        alpha = F.batch_norm(torch.ones(1, n, 1, 1), zeros, norm.running_var, norm.weight, zeros, False, 0.0, norm.eps)
        beta = F.batch_norm(torch.zeros(1, n, 1, 1), norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            False, 0.0, norm.eps)
    return _Norm(alpha.reshape(n).clone(), beta.reshape(n).clone(), zeros, ones)


def _block(block: nn.Module) -> _Block:
    layers = tuple((_conv(getattr(block, f"conv{i}")), _norm(getattr(block, f"bn{i}"))) for i in (1, 2, 3))
    shortcut: tuple[_Conv, _Norm] | int | None = None
    if block.downsample is not None:
        first = block.downsample[0]
        if isinstance(first, nn.MaxPool2d):  # visualpriors' strided last block: a 1x1 max pool
            shortcut = int(first.stride)
        else:
            shortcut = (_conv(first), _norm(block.downsample[1]))
    return _Block(layers, shortcut)


def plan(encoder: nn.Module) -> Plan:
    """Prepare an exact-mode (unfolded, NCHW, CPU) encoder for :func:`forward`.

    Parameters
    ----------
    encoder : visualpriors.taskonomy_network.TaskonomyEncoder
        In eval mode, batch norms not folded.

    Returns
    -------
    Plan
        It shares the encoder's weights (no copy): ~100 kB of per-channel batch-norm terms.
    """
    blocks = tuple(_block(b) for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)
                   for b in layer)
    return Plan(
        stem=(_conv(encoder.conv1), _norm(encoder.bn1)), pool=encoder.maxpool, blocks=blocks,
        compress=(_conv(encoder.compress1), _norm(encoder.compress_bn)),
        groupnorm=encoder.groupnorm if encoder.normalize_outputs else None,
    )


def _blocked(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a oneDNN tensor in the blocked layout a convolution outputs (an exact identity 1x1 convolution)."""
    channels = x.shape[1]
    identity = torch.eye(channels).reshape(channels, channels, 1, 1)
    return torch.mkldnn_convolution(x.to_mkldnn(), identity, None, (0, 0), (1, 1), (1, 1), 1)


@functools.cache
def batch_norm_matches() -> bool:
    """Whether oneDNN's batch norm reproduces torch's eval kernel bit for bit here (see the module notes).

    Probed on blocked data (what every batch norm of :func:`forward` gets from its convolution;
    oneDNN's kernel for plain NCHW data rounds ``x * scale`` before adding ``shift``), with 64
    channels and with 8 (the last layer's, padded to a block of 16).
    """
    generator = torch.Generator().manual_seed(0)
    for channels in (64, 8):
        norm = nn.BatchNorm2d(channels).eval()
        with torch.no_grad():
            for tensor, low, high in ((norm.weight, 0.2, 2.0), (norm.bias, -1.0, 1.0),
                                      (norm.running_mean, -1.0, 1.0), (norm.running_var, 0.1, 2.0)):
                tensor.copy_(torch.rand(channels, generator=generator) * (high - low) + low)
        x = torch.randn(2, channels, 16, 16, generator=generator) * 4
        with torch.inference_mode():
            ours = _norm(norm)(_blocked(x)).to_dense()
            if not torch.equal(ours.view(torch.int32), norm(x).view(torch.int32)):
                return False
    return True


def applies(batch: int) -> bool:
    """Whether :func:`forward` gives the dense module's numbers for a batch in this thread's setting."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return (torch.get_num_threads() > 1 or batch >= _ONEDNN_MIN_BATCH) and batch_norm_matches()


def _bottleneck(block: _Block, x: torch.Tensor) -> torch.Tensor:
    out = x
    for i, (conv, norm) in enumerate(block.layers):
        out = norm(conv(out))
        if i < 2:
            out = torch.relu(out)
    if isinstance(block.shortcut, tuple):
        conv, norm = block.shortcut
        residual = norm(conv(x))
    elif isinstance(block.shortcut, int):
        residual = torch.max_pool2d(x, 1, block.shortcut)
    else:
        residual = x
    return torch.relu(out + residual)


def forward(plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """``TaskonomyEncoder.forward`` on oneDNN tensors (call under ``torch.inference_mode``).

    Parameters
    ----------
    plan : Plan
        From :func:`plan`.
    x : torch.Tensor, shape (n, channels, 256, 256)
        Dense float32 NCHW input (made contiguous here, as visualpriors' callers pass it).

    Returns
    -------
    torch.Tensor, shape (n, 8, 16, 16)
        Dense, equal bit for bit to the encoder's own output where :func:`applies` holds.
    """
    conv, norm = plan.stem
    x = F.pad(x.contiguous(), (3, 3, 3, 3)).to_mkldnn()  # visualpriors pads the input, then convolves unpadded
    x = torch.relu(norm(conv(x)))
    pool = plan.pool
    x = torch.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
    for block in plan.blocks:
        x = _bottleneck(block, x)
    conv, norm = plan.compress
    x = torch.relu(norm(conv(x))).to_dense()
    return x if plan.groupnorm is None else plan.groupnorm(x)
