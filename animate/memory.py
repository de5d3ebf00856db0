"""How a job fits the machine: the device and its free memory, the memory mode, and the sentence for a GPU that ran out.

Memory modes are diffusers' own offloading, applied to the whole pipeline:

    none           every model stays on the GPU: the fastest.
    model-offload  each model is moved to the GPU when it runs and back when the next one does
                   (`enable_model_cpu_offload`): the GPU holds the largest model, the denoising UNet, at a time.
    lowest         group offloading, layer by layer, overlapped with the computation on a CUDA stream
                   (`enable_group_offload`, leaf level): the GPU holds little more than one window's activations.

"auto" picks the fastest mode whose estimated peak fits in the GPU's free memory. The estimate is the weights the GPU
holds in that mode plus the activations of one window, which grow with the window's frames and the output's pixels:
ACTIVATION_BYTES was measured on the CPU with the full-size model (one guided step over a 4-frame window at 256x384
in fp32 raised the peak by 687 MiB: 916 bytes per pixel of each frame of each guidance branch, 229 per byte of the
dtype). bench/gpu.py measures the real peaks on a GPU for each mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from animate.device import cpu_has_fast_bf16

MEMORY_MODES = ("none", "model-offload", "lowest")
ACTIVATION_BYTES = 229  # per output pixel, frame in the window, guidance branch and byte of the dtype (see above)
SPARE_BYTES = 1 << 30  # the CUDA context, the allocator's slack, the reference features and the VAE's decoding
LOWEST_RESIDENT = 0.05  # the share of the weights group offloading keeps on the GPU at once (a few layers)


@dataclass(frozen=True)
class Fit:
    """The memory mode for a job and why: its estimated peak, and what the device has free (None on a CPU)."""

    mode: str
    needed: int
    free: int | None
    warning: str = ""

    def describe(self) -> str:
        if self.free is None:
            return f"memory mode {self.mode}"
        return f"memory mode {self.mode} (needs about {gib(self.needed)} of {gib(self.free)} free)"


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GB"


def free_memory(device: torch.device) -> tuple[int, int] | None:
    """(free, total) bytes of a CUDA device; None for the CPU and MPS, whose memory is the machine's."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)


def describe_device(device: torch.device) -> str:
    """ "NVIDIA H200, 137.9 GB free of 139.7 GB", or the CPU with its cores."""
    if device.type == "cuda":
        free, total = free_memory(device)
        return f"{torch.cuda.get_device_name(device)}, {gib(free)} free of {gib(total)}"
    if device.type == "mps":
        return "Apple GPU (MPS), sharing the machine's memory"
    bf16 = ", native bf16" if cpu_has_fast_bf16() else ""
    return f"CPU ({os.cpu_count()} cores{bf16}): no CUDA GPU was found"


def is_large(folder: Path) -> bool:
    """Whether the model in `folder` is SD 1.5-sized (over 1 GB of weights: the released files, a full-size
    export) rather than the built-in model's 40 MB."""
    files = [*folder.glob("*.pth"), *folder.glob("*/*.safetensors")]
    return sum(file.stat().st_size for file in files) > 1 << 30


def weight_sizes(pipeline) -> dict[str, int]:
    """Bytes of each model of the pipeline, as loaded."""
    return {
        name: sum(tensor_bytes(tensor) for tensor in [*model.parameters(), *model.buffers()])
        for name, model in pipeline.components.items()
        if isinstance(model, torch.nn.Module)
    }


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: for a torchao-quantized weight, which reports its original dtype, its 8-bit data and
    scales."""
    if hasattr(tensor, "qdata") and hasattr(tensor, "scale"):
        return tensor_bytes(tensor.qdata) + tensor_bytes(tensor.scale)
    return tensor.numel() * tensor.element_size()


def activation_bytes(frames: int, width: int, height: int, dtype: torch.dtype, guidance: bool) -> int:
    branches = 2 if guidance else 1
    return ACTIVATION_BYTES * frames * branches * width * height * torch.finfo(dtype).bits // 8


def estimated_peak(mode: str, sizes: dict[str, int], activations: int) -> int:
    resident = {
        "none": sum(sizes.values()),
        "model-offload": max(sizes.values()),
        "lowest": LOWEST_RESIDENT * max(sizes.values()),
    }[mode]
    return int(resident) + activations + SPARE_BYTES


def choose_memory_mode(
    requested: str,
    sizes: dict[str, int],
    device: torch.device,
    window: int,
    width: int,
    height: int,
    dtype: torch.dtype,
    guidance: bool,
    knob: str | None = None,
) -> Fit:
    """The mode to run in: `requested` itself, or for "auto" the fastest that fits the device's free memory, for the
    models of these `sizes` (`weight_sizes`) and one window of `window` frames at width x height. The warning says
    what to lower when even the lowest mode will not fit (the job still runs: the estimate is rough): `knob`, the
    engine's setting that sizes the activations (default: the window of `window` frames), then the output size."""
    if requested not in ("auto", *MEMORY_MODES):
        raise ValueError(f"Unknown memory mode {requested!r}. Use auto, {', '.join(MEMORY_MODES)}.")
    activations = activation_bytes(window, width, height, dtype, guidance)
    memory = free_memory(device)
    if memory is None:  # the CPU: offloading to the CPU from the CPU saves nothing
        mode = "none" if requested == "auto" else requested
        return Fit(mode, estimated_peak(mode, sizes, activations), None)
    free = memory[0]
    if requested != "auto":
        needed = estimated_peak(requested, sizes, activations)
        warning = "" if needed <= free else _too_big(requested, needed, free, knob or _window(window))
        return Fit(requested, needed, free, warning)
    for mode in MEMORY_MODES:
        needed = estimated_peak(mode, sizes, activations)
        if needed <= free:
            return Fit(mode, needed, free)
    return Fit("lowest", needed, free, _too_big("lowest", needed, free, knob or _window(window)))


def _window(frames: int) -> str:
    return f"the window (now {frames} frames; Advanced)"


def _too_big(mode: str, needed: int, free: int, knob: str) -> str:
    return (
        f"This job needs about {gib(needed)} of GPU memory in memory mode {mode}, and {gib(free)} is free: it may run "
        f"out. Lower {knob}, the output size, or choose memory mode lowest."
    )


def apply_memory_mode(pipeline, mode: str, device: torch.device):
    """Places a pipeline that is on the CPU on `device` in `mode`, and returns it. (On the CPU the offloading hooks
    move nothing, but they run, which is how the tests check that a mode leaves the result unchanged.)"""
    if mode == "none":
        return pipeline.to(device)
    if mode == "model-offload":
        pipeline.enable_model_cpu_offload(device=device)
    elif mode == "lowest":
        pipeline.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=device.type == "cuda",
        )
    else:
        raise ValueError(f"Unknown memory mode {mode!r}. Use {', '.join(MEMORY_MODES)}.")
    return pipeline


def out_of_memory_message(mode: str, window: int, width: int, height: int, knob: str | None = None) -> str:
    """What to lower after a CUDA out-of-memory error, in the order that costs the result least: `knob` (default:
    the window of `window` frames), the output size, then the memory mode."""
    lower = [knob or _window(window), f"the output size (now {width}×{height})"]
    if mode != "lowest":
        following = MEMORY_MODES[MEMORY_MODES.index(mode) + 1]
        lower.append(f"or choose memory mode {following} (now {mode}; Advanced)")
    return f"The GPU ran out of memory. Lower {', '.join(lower)}. Your earlier results are kept."
