"""The one device picker: CUDA, then MPS, then the CPU.

torch is imported on the first call, not with this module, so commands that load no model stay light.
"""

from __future__ import annotations

DEVICE_TYPES = ("cuda", "mps", "cpu")


def available(device_type: str) -> bool:
    """Whether a device of this type ('cuda', 'mps', 'cpu') is there; False for any other type."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available())
    if device_type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and bool(mps.is_available())
    return device_type == "cpu"


def best_device() -> str:
    """'cuda', then 'mps', then 'cpu': the first one there (v0.6's 'cuda' default cannot run without a GPU)."""
    return next(t for t in DEVICE_TYPES if available(t))
