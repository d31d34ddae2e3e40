"""Arithmetic precision: `--precision auto|fp32|bf16`, and whether a device computes bfloat16
natively (the one place that fact is decided: training, `jiyi env`, `jiyi compress --method bf16`).

jiyi train ... --precision auto   # bf16 autocast where the CPU (avx512_bf16, AMX) or GPU has it
jiyi train ... --bf16             # the older flag: --precision bf16

bf16 autocast runs matrix products in bfloat16 and keeps weights, optimizer state and the loss
in float32. On a CPU without native bf16 it is emulated, slower than fp32.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX), not emulated; False where
    /proc/cpuinfo cannot be read (not Linux).

    >>> cpu_has_bf16("flags : fpu avx2 avx512f avx512_bf16")
    True
    >>> cpu_has_bf16("flags : fpu avx2")
    False
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_has_bf16(device_type: str) -> bool:
    """Native bfloat16 on this device type ("cuda": the GPU says so; "cpu": `cpu_has_bf16`)."""
    if device_type == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device_type == "cpu" and cpu_has_bf16()


def resolve_precision(requested: str, device_type: str) -> tuple[str, str]:
    """The precision to run with ("fp32" or "bf16") and why, for `requested` on `device_type`.

    >>> resolve_precision("fp32", "cpu")
    ('fp32', '--precision fp32')
    """
    native = device_has_bf16(device_type)
    where = "GPU" if device_type == "cuda" else "CPU"
    if requested == "auto":
        if native:
            return "bf16", f"--precision auto: this {where} computes bfloat16 natively"
        return "fp32", f"--precision auto: this {where} has no native bfloat16"
    if requested == "bf16" and not native:
        return "bf16", (
            f"--precision bf16: this {where} has no native bfloat16, so it is emulated and "
            "likely slower than fp32"
        )
    return requested, f"--precision {requested}"
