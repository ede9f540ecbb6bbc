"""Encoder inputs from 8-bit pixels, prepared on the host (CPU) or on the encoder's device (GPU).

On a CPU the inputs are prepared in numpy (:data:`neurotask.stimuli.MODEL_INPUTS`). For a GPU
the decoded uint8 pixels of an image chunk are copied to the device once (a quarter of the bytes
of float32 inputs) and stay there while every model of the unit encodes them; each batch is
converted on the device with the same arithmetic:

* RGB, ``x / 255 * 2 - 1``: the same correctly rounded float32 operations, so the same bits;
* colorization's CIE-Lab L*: the same float64 sRGB linearization table and luminance row, the
  cube root as ``y ** (1/3)`` refined by one Newton step (torch has no ``cbrt``), then rounded to
  float32: the same bits as the numpy path for every one of the 2**24 8-bit colors (without the
  Newton step, one color differs by one ulp).
"""

from __future__ import annotations

import numpy as np
import torch

from neurotask.stimuli import LIGHTNESS_KNEE, LUMINANCE_FROM_LINEAR_RGB, MODEL_INPUTS, SRGB_TO_LINEAR

__all__ = ["HOST_DEVICE_TYPES", "prepared_on_device", "ChunkPixels", "rgb_input", "lightness_input", "DEVICE_INPUTS"]

#: Device types whose inputs are prepared in numpy on the host (the encoder then reads host memory).
HOST_DEVICE_TYPES = frozenset({"cpu"})


def prepared_on_device(device: torch.device) -> bool:
    """Whether inputs for ``device`` are prepared there (its type is not in :data:`HOST_DEVICE_TYPES`)."""
    return device.type not in HOST_DEVICE_TYPES


def rgb_input(pixels: torch.Tensor) -> torch.Tensor:
    """:func:`neurotask.stimuli.rgb_input` in torch, on the tensor's device (bit-identical).

    Parameters
    ----------
    pixels : torch.Tensor of uint8, shape (n, height, width, 3)

    Returns
    -------
    torch.Tensor of float32, shape (n, height, width, 3)
    """
    return pixels.to(torch.float32) / 255 * 2 - 1


def lightness_input(pixels: torch.Tensor) -> torch.Tensor:
    """:func:`neurotask.stimuli.lightness_input` (L* / 50 - 1) in torch, on the tensor's device.

    Parameters
    ----------
    pixels : torch.Tensor of uint8, shape (n, height, width, 3)

    Returns
    -------
    torch.Tensor of float32, shape (n, height, width, 1)
        Computed in float64; the same bits as the numpy function for every 8-bit color.
    """
    table = torch.as_tensor(SRGB_TO_LINEAR, device=pixels.device)
    row = LUMINANCE_FROM_LINEAR_RGB
    linear = table[pixels.to(torch.int64)]
    y = linear[..., 0] * row[0] + linear[..., 1] * row[1] + linear[..., 2] * row[2]
    cube = y.clamp(min=LIGHTNESS_KNEE)  # the cube-root branch only where it is taken
    root = cube.pow(1 / 3)
    root = root - (root * root * root - cube) / (3 * root * root)
    f = torch.where(y > LIGHTNESS_KNEE, root, 7.787 * y + 16 / 116)
    return ((116 * f - 16) / 50 - 1).to(torch.float32)[..., None]


#: Model input kinds (as :data:`neurotask.stimuli.MODEL_INPUTS`) prepared in torch.
DEVICE_INPUTS = {"rgb": rgb_input, "lightness": lightness_input}


class ChunkPixels:
    """An image chunk's decoded pixels, served as encoder inputs batch by batch.

    Parameters
    ----------
    pixels : numpy.ndarray of uint8, shape (n, height, width, 3)
    device : torch.device
        The encoders' device. Unless its type is in :data:`HOST_DEVICE_TYPES`, the pixels are
        copied there once, here, and every batch is prepared there.
    """

    def __init__(self, pixels: np.ndarray, device: torch.device) -> None:
        self.on_device = prepared_on_device(device)
        self.pixels = torch.from_numpy(np.ascontiguousarray(pixels)).to(device) if self.on_device else pixels

    def batch(self, kind: str, start: int, stop: int) -> np.ndarray | torch.Tensor:
        """Inputs of images ``start:stop`` for a model of input ``kind`` ("rgb" or "lightness").

        Returns
        -------
        numpy.ndarray or torch.Tensor of float32, shape (stop - start, height, width, channels)
            A tensor on the device, or an array on the host.
        """
        if self.on_device:
            return DEVICE_INPUTS[kind](self.pixels[start:stop])
        return MODEL_INPUTS[kind](self.pixels[start:stop])
