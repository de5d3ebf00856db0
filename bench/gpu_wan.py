"""Wan2.2-Animate's transformer at full size on a GPU: time per denoising step and peak memory for one segment, with
the weights resident, in 8 bits, and group-offloaded. Prints tables and writes gpu_wan.json; asserts nothing.

    python bench/gpu_wan.py --out DIR              # on a CUDA GPU (meant to finish within 3 minutes on one H200)
    python bench/gpu_wan.py --cpu-smoke --out DIR  # every part at a tiny size on the CPU, in seconds

The transformer is diffusers' WanAnimateTransformer3DModel at its default configuration, which is the released 14B one
(40 blocks of width 5120, the motion and face encoders), with random weights in bf16; the VAE is AutoencoderKLWan at its
default (Wan 2.1's) configuration, in fp32 as the app runs it. Random weights give the real speed and memory. The
inputs are one segment as the app's engine builds them (animate/engines/wan_animate.py): 77 frames at 832x480, so 20
latent frames plus the reference frame, the pose latents, 77 face crops at the motion encoder's 512 px, 512 prompt
tokens (random, in place of umt5-xxl's) and the character's 257 CLIP tokens. The text and image encoders run once per
job and are left out.

Parts; each is guarded, so one that fails prints its error and the others still run:
  resident   the transformer and the VAE on the GPU: the FLOPs of one step (counted), 2 timed steps, the floor (FLOPs
             over the measured bf16 matmul rate), decoding the segment, and the peak memory
  int8       the same steps with the transformer's linear weights in int8 (torchao weight-only), when torchao imports
  offload    the same steps with the transformer group-offloaded layer by layer (the app's memory mode "lowest")

It imports torch, diffusers (and torchao for int8), bench/gpu.py's helpers and the tiny configs and weight sizes of
this repository, none of the app's libraries (gradio, video or pose), so it runs on a bare GPU machine.
Not yet run on a GPU (2026-12-04): the figures in the README are estimates until it is.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import Clock, _gb, guarded, matmul_rate  # noqa: E402 - bench/gpu.py's helpers

from animate.engines.wan_tiny import TINY_TRANSFORMER, TINY_VAE  # noqa: E402
from animate.memory import tensor_bytes  # noqa: E402

# (width, height, frames, steps, matmul size)
FULL = {"width": 832, "height": 480, "frames": 77, "steps": 2, "matmul": 8192}
SMOKE = {"width": 64, "height": 48, "frames": 9, "steps": 2, "matmul": 256}


def build(smoke: bool, device: torch.device):
    """The transformer (bf16) and the VAE (fp32) with random weights on `device`, and the seconds it took."""
    from diffusers import AutoencoderKLWan, WanAnimateTransformer3DModel

    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanAnimateTransformer3DModel(**(TINY_TRANSFORMER if smoke else {})).to(torch.bfloat16).eval()
        vae = AutoencoderKLWan(**(TINY_VAE if smoke else {})).eval()
    # As from_pretrained(torch_dtype=bf16) leaves it: the norms, time embedding, modulation and rope stay in fp32.
    keep = set(transformer._keep_in_fp32_modules or ())
    for name, module in transformer.named_modules():
        if keep & set(name.split(".")):
            module.to(torch.float32)
    return transformer, vae, time.perf_counter() - start


def segment_inputs(config, sizes: dict, device: torch.device) -> dict:
    """One segment's transformer inputs, shaped as WanAnimatePipeline builds them."""
    generator = torch.Generator(device).manual_seed(0)
    latent_frames = (sizes["frames"] - 1) // 4 + 1
    height, width = sizes["height"] // 8, sizes["width"] // 8

    def noise(*shape):
        return torch.randn(*shape, generator=generator, device=device, dtype=torch.bfloat16)

    face = config.motion_encoder_size
    return {
        "hidden_states": noise(1, config.in_channels, latent_frames + 1, height, width),
        "encoder_hidden_states": noise(1, 512, config.text_dim),
        "encoder_hidden_states_image": noise(1, 257, config.image_dim),
        "pose_hidden_states": noise(1, config.latent_channels, latent_frames, height, width),
        "face_pixel_values": noise(1, 3, sizes["frames"], face, face).clamp(-1, 1),
    }


def steps(transformer, inputs: dict, count: int, clock: Clock) -> dict:
    """`count` denoising steps (guidance 1: one transformer call each), after one warm-up call."""
    with torch.inference_mode():
        timestep = torch.tensor([999.0], device=inputs["hidden_states"].device)
        transformer(**inputs, timestep=timestep, return_dict=False)  # warm-up: kernels, offloading streams
        clock.reset()
        start = clock.now()
        for _ in range(count):
            output = transformer(**inputs, timestep=timestep, return_dict=False)[0]
        seconds = (clock.now() - start) / count
    return {"seconds_per_step": seconds, "finite": bool(torch.isfinite(output).all()), **clock.peaks()}


def step_flops(transformer, inputs: dict) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        transformer(**inputs, timestep=torch.tensor([999.0], device=inputs["hidden_states"].device), return_dict=False)
    return counter.get_total_flops()


def weights_gb(module: torch.nn.Module) -> float:
    return sum(tensor_bytes(tensor) for tensor in module.parameters()) / 2**30


def part_resident(transformer, vae, sizes: dict, device: torch.device, clock: Clock) -> dict:
    inputs = segment_inputs(transformer.config, sizes, device)
    flops = step_flops(transformer, inputs)
    rate = matmul_rate(sizes["matmul"], torch.bfloat16, device, clock)
    result = steps(transformer, inputs, sizes["steps"], clock)
    latents = torch.randn(1, 16, (sizes["frames"] - 1) // 4 + 1, sizes["height"] // 8, sizes["width"] // 8,
                          device=device)  # fmt: skip
    clock.reset()
    start = clock.now()
    with torch.inference_mode():
        frames = vae.decode(latents, return_dict=False)[0].shape[2]
    decode = {"frames": frames, "seconds": clock.now() - start, **clock.peaks()}
    floor = flops / rate
    result.update(step_flops=flops, matmul_flops_per_second=rate, floor_seconds_per_step=floor,
                  of_floor=result["seconds_per_step"] / floor, decode=decode,
                  transformer_gb=weights_gb(transformer), vae_gb=weights_gb(vae))  # fmt: skip
    print(f"A step is {flops / 1e12:.1f} TFLOP; the measured bf16 matmul rate is {rate / 1e12:.1f} TFLOP/s, so the "
          f"floor is {floor:.2f} s per step; the step takes {result['seconds_per_step']:.2f} s "
          f"({result['of_floor']:.2f}x). Decoding {frames} frames: {decode['seconds']:.1f} s, peak "
          f"{_gb(decode['peak_allocated_gb'])}.")  # fmt: skip
    return result


def part_int8(transformer, sizes: dict, device: torch.device, clock: Clock) -> dict:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantized = copy.deepcopy(transformer)
    quantize_(quantized, Int8WeightOnlyConfig())
    try:
        result = steps(quantized, segment_inputs(quantized.config, sizes, device), sizes["steps"], clock)
        result["transformer_gb"] = weights_gb(quantized)
    finally:
        del quantized
    return result


def part_offload(transformer, sizes: dict, device: torch.device, clock: Clock) -> dict:
    """The app's memory mode "lowest": the weights on the CPU, each layer brought over when it runs."""
    transformer.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    transformer.enable_group_offload(
        onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level",
        use_stream=device.type == "cuda",
    )  # fmt: skip
    return steps(transformer, segment_inputs(transformer.config, sizes, device), sizes["steps"], clock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_wan.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="every part at a tiny size on the CPU")
    parser.add_argument("--parts", default="resident,int8,offload", help="comma-separated parts to run, in order")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --cpu-smoke to check the script on the CPU")
    sizes, device = (SMOKE, torch.device("cpu")) if args.cpu_smoke else (FULL, torch.device("cuda"))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    clock = Clock(device)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "cuda": torch.version.cuda},
        "sizes": sizes,
    }
    print(f"{report['device']}; torch {torch.__version__}, diffusers {diffusers.__version__}")
    errors: dict[str, str] = {}
    built = guarded("build", lambda: dict(zip(("transformer", "vae", "seconds"), build(args.cpu_smoke, device),
                                              strict=True)), errors)  # fmt: skip
    if built is not None:
        transformer, vae = built["transformer"], built["vae"]
        report["build_seconds"] = built["seconds"]
        report["parameters"] = sum(parameter.numel() for parameter in transformer.parameters())
        parts = {
            "resident": lambda: part_resident(transformer, vae, sizes, device, clock),
            "int8": lambda: part_int8(transformer, sizes, device, clock),
            "offload": lambda: part_offload(transformer, sizes, device, clock),
        }
        for name in args.parts.split(","):
            report[name] = guarded(name, parts[name], errors)
        print(f"\n## Wan-Animate transformer ({report['parameters'] / 1e9:.2f}B parameters), one segment of "
              f"{sizes['frames']} frames at {sizes['width']}x{sizes['height']}\n")  # fmt: skip
        print("| weights | per step | peak allocated | peak reserved | transformer weights |\n|---|---|---|---|---|")
        for name, label in (("resident", "bf16, resident"), ("int8", "int8, resident"),
                            ("offload", "bf16, group offload")):  # fmt: skip
            row = report.get(name)
            if row:
                print(f"| {label} | {row['seconds_per_step']:.2f} s | {_gb(row['peak_allocated_gb'])} "
                      f"| {_gb(row['peak_reserved_gb'])} | {row.get('transformer_gb', 0):.2f} GB |")  # fmt: skip
    report["errors"] = errors
    report["seconds"] = time.perf_counter() - started
    (args.out / "gpu_wan.json").write_text(json.dumps(report, indent=1))
    print(f"\n{len(errors)} part(s) failed; {report['seconds']:.0f} s in all; {args.out / 'gpu_wan.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
