"""Array backends of the ridge and permutation kernels: numpy, or torch on a CPU or CUDA device.

Torch is imported only inside the functions that need it, so numpy users never pay for it.

* :func:`check_backend` — validate ``backend`` / ``device`` arguments (names them in errors);
* :func:`resolve` — ``"auto"`` becomes torch on CUDA where the calling process sees a GPU
  (``torch.cuda.is_available()`` evaluated where the task runs), otherwise numpy;
* :func:`torch_device`, :func:`tf32` — the torch device, with TF32 GEMMs off unless asked;
* :func:`voxel_batch` — columns per device step: bounded by the device's free memory on CUDA
  (``torch.cuda.mem_get_info``), the caller's chunk elsewhere;
* :func:`gpu_resources` — ``{"GPU": 1}`` when a Dask client's workers advertise a ``GPU`` resource;
  :func:`workers_see_cuda` — whether any of its workers sees a CUDA device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKENDS", "DEVICES", "Backend", "check_backend", "gpu_resources", "resolve", "tf32",
           "torch_device", "voxel_batch", "workers_see_cuda"]

BACKENDS = ("auto", "numpy", "torch")
DEVICES = ("auto", "cpu", "cuda")
#: Fraction of the device's free memory one voxel batch may use.
_FREE_FRACTION = 0.5


@dataclass(frozen=True)
class Backend:
    """A requested array backend (resolved where the work runs, see :func:`resolve`).

    Attributes
    ----------
    name : {"auto", "numpy", "torch"}
    device : {"auto", "cpu", "cuda"} or "cuda:N"
    allow_tf32 : bool
        Let CUDA GEMMs use TF32 (faster, ~1e-3 relative error); off by default.
    """

    name: str = "numpy"
    device: str = "auto"
    allow_tf32: bool = False

    @property
    def attrs(self) -> dict[str, Any]:
        """The request as result attrs (``backend``, ``device``, ``allow_tf32``)."""
        name, device = resolve(self)
        return {"backend": name, "device": device, "allow_tf32": bool(self.allow_tf32)}


def check_backend(backend: str, device: str, allow_tf32: bool = False, *, function: str) -> Backend:
    """Validate the ``backend`` and ``device`` arguments of ``function``.

    Raises
    ------
    ValueError
        Unknown names, ``device="cuda"`` with the numpy backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"The 'backend' parameter of {function} must be one of {list(BACKENDS)}. Got {backend!r}.")
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ValueError(f"The 'device' parameter of {function} must be 'auto', 'cpu', 'cuda' or 'cuda:N'. "
                         f"Got {device!r}.")
    if backend == "numpy" and device.startswith("cuda"):
        raise ValueError(f"{function}: backend='numpy' runs on the CPU only; pass backend='torch' (or 'auto') "
                         f"with device={device!r}.")
    return Backend(backend, device, bool(allow_tf32))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve(backend: Backend) -> tuple[str, str]:
    """``(name, device)`` with ``"auto"`` resolved in this process.

    ``name="auto"``: torch on CUDA when this process sees a GPU, else numpy on the CPU.
    ``device="auto"`` with torch: CUDA when available, else the CPU.
    """
    name, device = backend.name, backend.device
    if name == "auto":
        if device == "cpu" or not _cuda_available():
            return "numpy", "cpu"
        return "torch", "cuda" if device == "auto" else device
    if name == "numpy":
        return "numpy", "cpu"
    if device == "auto":
        device = "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda") and not _cuda_available():
        raise RuntimeError(f"device={device!r} was requested but torch sees no CUDA device here; pass device='cpu' "
                           "or 'auto'.")
    return "torch", device


def torch_device(device: str) -> Any:
    """The ``torch.device`` of a resolved device name."""
    import torch

    return torch.device(device)


@contextmanager
def tf32(allow: bool) -> Iterator[None]:
    """Set torch's TF32 GEMM switches (CUDA matmul and cuDNN) inside the block, restoring them after."""
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(allow)
    torch.backends.cudnn.allow_tf32 = bool(allow)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def voxel_batch(n_voxels: int, bytes_per_voxel: int, device: str, limit: int | None = None) -> int:
    """Voxel columns per device step.

    On CUDA: as many as fit in half the device's free memory (``torch.cuda.mem_get_info``) at
    ``bytes_per_voxel`` each; on the CPU: all ``n_voxels`` (the caller's chunk bounds memory).
    ``limit`` caps it (a forced small batch). At least 1.
    """
    batch = n_voxels
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        batch = min(batch, int(free * _FREE_FRACTION) // max(1, bytes_per_voxel))
    if limit is not None:
        batch = min(batch, int(limit))
    return max(1, batch)


def gpu_resources(client: Any) -> dict[str, int] | None:
    """``{"GPU": 1}`` when any of the client's workers advertise a ``GPU`` resource, else None."""
    if client is None:
        return None
    workers = client.scheduler_info().get("workers", {})
    if any(float(info.get("resources", {}).get("GPU", 0)) > 0 for info in workers.values()):
        return {"GPU": 1}
    return None


def workers_see_cuda(client: Any) -> bool:
    """Whether any worker of a Dask client sees a CUDA device (``torch.cuda.is_available()`` run there)."""
    if client is None:
        return False
    return any(client.run(_cuda_available).values())
