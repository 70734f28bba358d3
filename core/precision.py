"""Which floating-point precision to run in. On CPU, bf16 matmuls are several times slower than
fp32 (docs/smolvlm.md, CPU precision measurements), so "auto" picks bf16 only on a GPU that
supports it."""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PRECISIONS = ("auto", *DTYPES)


def hardware_precision() -> str:
    """bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """``precision`` with "auto" made concrete for ``device`` (None: this machine's best device).
    Raises ValueError naming the choices for anything else."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device is not None and device.type != "cuda":
        return "fp32"
    return hardware_precision()


def torch_dtype(precision: str) -> torch.dtype:
    return DTYPES[precision]
