"""Numeric precision of a training run (``train.precision``) and the CPU features it follows.

* ``fp32``: every operation in float32.
* ``bf16``: ``torch.autocast`` with ``torch.bfloat16`` on the run's device (CPU or CUDA). The
  master weights, the gradients and AdamW's state stay float32 (autocast casts a matrix
  product's inputs to bfloat16 and leaves the parameters alone); normalisations, softmax and
  the loss run in float32 (autocast's own fp32 list, and :func:`uwe.train.step.step_scores`
  scores in float32 outside the autocast region).
* ``auto``: ``bf16`` where the hardware runs bfloat16 matrix products natively, else ``fp32``:
  on CUDA when ``torch.cuda.is_bf16_supported()``; on a CPU that reports AMX tiles or
  AVX512-BF16 (:func:`cpu_isa`, read once from torch's own CPU-feature probes, the ones that
  pick its oneDNN kernels). Without those instructions bfloat16 is emulated and slower than
  float32, so ``auto`` keeps float32 there.

Measured with ``scripts/bench_train.py`` (``docs/training-on-a-cpu.md``): on a 2-core Intel
Xeon with AMX and on a 2-core AMD EPYC with AVX512-BF16, a bf16 step of the cpu recipe takes
about half the time of a float32 step. The precision a run used and the CPU's features are
written into ``metrics/train.json``, the model's config (model card) and every recipe result,
since bfloat16 rounding changes the trained weights.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

PRECISIONS = ("auto", "bf16", "fp32")

# torch.cpu probe -> the /proc/cpuinfo flag it reads
_PROBES = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported",
           "avx512_vnni": "_is_vnni_supported", "avx512": "_is_avx512_supported",
           "avx2": "_is_avx2_supported"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def cpu_isa() -> dict[str, Any]:
    """This CPU's model name, torch's kernel capability (``AVX512``, ``AVX2``, ...) and the
    instruction-set features that decide bfloat16 speed, as torch detects them:
    ``{"cpu": str, "capability": str, "amx_bf16": bool, "avx512_bf16": bool,
    "avx512_vnni": bool, "avx512": bool, "avx2": bool}``. Read once per process."""
    import torch

    flags = {}
    for name, probe in _PROBES.items():
        fn = getattr(torch.cpu, probe, None)
        try:
            flags[name] = bool(fn()) if fn is not None else False
        except RuntimeError:  # pragma: no cover - a probe torch could not run
            flags[name] = False
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        capability = "unknown"
    return {"cpu": _cpu_model(), "capability": capability, **flags}


def native_bf16(isa: dict[str, Any]) -> bool:
    """True when the CPU has bfloat16 matrix instructions (AMX tiles or AVX512-BF16)."""
    return bool(isa.get("amx_bf16") or isa.get("avx512_bf16"))


def isa_line(isa: dict[str, Any] | None = None) -> str:
    """One line for a benchmark's header: model, capability and the bf16-relevant flags."""
    isa = cpu_isa() if isa is None else isa
    on = [k for k in ("amx_bf16", "avx512_bf16", "avx512_vnni") if isa.get(k)]
    return (f"CPU: {isa['cpu']} (torch capability {isa['capability']}; "
            f"{', '.join(on) if on else 'no native bf16'})")


def resolve_precision(requested: str, device, isa: dict[str, Any] | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: the precision a run on ``device`` (a ``torch.device``) uses
    for ``requested`` (module docstring). ValueError names an unknown value. ``isa`` defaults
    to :func:`cpu_isa` (tests pass a fake one)."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if native_bf16(cpu_isa() if isa is None else isa) else "fp32"
    return "fp32"


def autocast(precision: str, device):
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for fp32)."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(precision: str, device, isa: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a result records about its arithmetic: the precision used, the device and, on a
    CPU, :func:`cpu_isa`."""
    out: dict[str, Any] = {"precision": precision, "device": str(device)}
    if device.type == "cpu":
        out["cpu"] = cpu_isa() if isa is None else isa
    return out
