"""Device and precision, chosen once at the edge (app, CLI, training script) and passed down.

Library code never names a device itself; it takes the `torch.device` and `torch.dtype` these functions return.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(name: str = "auto") -> torch.device:
    """`"auto"` picks CUDA, then Apple's MPS, then the CPU; an explicit name ("cpu", "cuda", "cuda:1", "mps") is
    checked against what this machine has, so a wrong choice fails here with a message instead of deep in a model."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"Unknown device {name!r}. Use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {name!r} was asked for, but PyTorch sees no CUDA GPU here. Use cpu (or auto).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"Device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                "numbered from 0."
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"Device {name!r} was asked for, but Apple's MPS is not available here. Use cpu (or auto)."
            )
    elif device.type != "cpu":
        raise ValueError(f"Device {name!r} is not supported. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def select_dtype(device: torch.device, precision: str = "auto", large_model: bool = False) -> torch.dtype:
    """`"auto"` is fp16 on CUDA; on a CPU that computes bf16 natively, bf16 for a `large_model` (SD 1.5-sized);
    fp32 everywhere else. "fp32", "fp16" and "bf16" are taken as asked when the device can run them."""
    if precision == "auto":
        # Half precision halves memory and is what the released weights are usually run in on a GPU. On MPS some
        # attention kernels still misbehave in it. On a CPU with AMX or AVX-512 BF16, a full-size denoising step
        # took 2.2 s in bf16 against 6.9 s in fp32 (2 cores, 256x384, 2 frames); the built-in model stays in fp32,
        # which its quality was measured in, at 0.2 s a window either way.
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and large_model and cpu_has_fast_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}. Use auto, {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "fp16 is not supported on the CPU (many CPU kernels have no half-precision version). Use fp32, or bf16 "
            "on a CPU that supports it."
        )
    # Compute capability 8.0 (Ampere) is where bf16 runs natively; torch.cuda.is_bf16_supported() also says yes
    # to older GPUs that only emulate it, slowly.
    if precision == "bf16" and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"{name} has no native bf16 support (it needs an Ampere or newer GPU). Use fp16 or fp32.")
    return PRECISIONS[precision]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (Intel AMX or AVX-512 BF16), as Linux reports it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags
