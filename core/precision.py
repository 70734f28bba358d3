"""Which floating-point precision to run in. "auto" picks bf16 only on a GPU that supports it and
fp32 on the CPU: fp32 is right on every CPU, while bf16 there is fast only with bf16 matrix units
(AVX512-BF16/AMX) and emulated, far slower, without them (docs/smolvlm.md, "Precision on the CPU")."""

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
