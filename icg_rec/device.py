"""One meaning of `device` and `dtype` for every heavy class (trainers, rewards, refresh, ranker).

Every heavy class takes `device: str = "cpu"` and, where precision is a choice, `dtype: str = "float32"`:

- `device`: where the class computes, "cpu" or "cuda" / "cuda:N". The class moves what it owns (the
  pipeline it trains or samples from, its own network) there when it starts work, never in `__init__`.
  Asking for CUDA on a host without it raises `DeviceError` naming the device and what this torch has.
- `dtype`: the precision of the heavy arithmetic, "float32", "bfloat16" or "float16". Trainers keep
  float32 weights and run their forward passes under autocast in `dtype` (mixed precision); inference
  (the refresh) casts its weights to `dtype`. float16 needs CUDA; float16 *training* is refused (it needs
  loss scaling, which bfloat16 does not), so train in bfloat16.

Random draws stay on the CPU generator in every class, so the same seed draws the same noise, batches
and timesteps on any device; results then differ only by the device's arithmetic.
"""

from contextlib import AbstractContextManager, nullcontext

import torch

from icg_rec.errors import IcgRecError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(IcgRecError):
    """A device or dtype that this host, or this use, cannot give."""


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for a `device` setting, checked against this host.

    Args:
        device: "cpu", "cuda" or "cuda:N" (a torch.device is accepted too).

    Returns:
        The torch.device; "cuda" without an index becomes the current CUDA device.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DeviceError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {str(device)!r} was asked for, but CUDA is not available on this host (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu'"
        )
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {str(device)!r} was asked for, but this host has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, training: bool = False) -> torch.dtype:
    """The torch dtype for a `dtype` setting, checked against the device and the use.

    Args:
        dtype: "float32", "bfloat16" or "float16" (a torch.dtype of these is accepted too).
        device: the resolved device it will run on.
        training: True for trainers (float16 is refused: it needs loss scaling).

    Returns:
        The torch.dtype.
    """
    names = {v: k for k, v in DTYPES.items()}
    name = names.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype
    if name not in DTYPES:
        raise DeviceError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if name == "float16" and device.type != "cuda":
        raise DeviceError(
            "dtype 'float16' needs a CUDA device (CPU float16 kernels are slow or missing); "
            "use 'bfloat16' or 'float32' on CPU"
        )
    if name == "float16" and training:
        raise DeviceError(
            "float16 training needs loss scaling, which this trainer does not do; use dtype='bfloat16'"
        )
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Mixed precision for a trainer's forward passes: autocast in `dtype`, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on CPU), so host clocks time finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
