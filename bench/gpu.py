"""The full-size model on a GPU: precision, speed, memory modes and training at the released shapes. Prints tables and
writes gpu.json; asserts nothing.

    python bench/gpu.py --out DIR              # on a CUDA GPU (meant to finish within 5 minutes on one H200)
    python bench/gpu.py --cpu-smoke --out DIR  # every part at a tiny size on the CPU, in about a minute

The model has random weights at the released shapes (architecture "sd15": the SD 1.5 UNet as ReferenceNet and as the
denoising UNet, the sd-vae-ft-mse VAE, the image encoder of sd-image-variations, the Pose Guider and the AnimateDiff
motion modules). It is written in the released format and loaded through `load_released_pipeline`, the path a user's
downloaded files take. Random weights give the real speed and memory; their activations are not the trained ones', so
the precision part shows where half precision loses accuracy, and the real weights must confirm it stays finite.

Parts; each is guarded, so one that fails prints its error and the others still run:
  precision  fp16 and bf16 against fp32: one denoising-UNet call, a 4-step 8-frame clip at 256x384 (its latents and
             its frames), the VAE decode alone, and the largest output of any attention layer, with inf/NaN counts
  speed      24 frames at 512x768, 25 steps, guidance 3.5, fp16: wall time, time per frame per step, peak memory
             (allocated and reserved), the step's FLOPs over the measured fp16 matmul rate (the floor); then 72
             frames (2 steps): the peak must not grow with the length
  offload    the same 24 frames (3 steps) in memory modes model-offload and lowest (animate/memory.py)
  training   one step at 512x768 of stage 1 (4 images) and of stage 2 (one 24-frame clip), with gradient
             checkpointing, mixed precision, and 8-bit Adam when bitsandbytes imports

It imports torch, diffusers, transformers, accelerate, safetensors and this repository's model code, nothing of the
app (no gradio, video or pose libraries), so that it runs on a bare GPU machine with diffusers installed from a wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animate.architecture import build_pipeline  # noqa: E402
from animate.checkpoints import load_released_pipeline, save_released_format  # noqa: E402
from animate.memory import apply_memory_mode  # noqa: E402
from animate.pipeline import AnimateAnyonePipeline  # noqa: E402
from animate.unet import denoise  # noqa: E402
from animate.windows import context_windows  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Sizes:
    architecture: str
    precision_clip: tuple[int, int, int, int]  # frames, width, height, steps
    speed_clip: tuple[int, int, int, int]
    window: int  # frames the motion modules see at once
    long_frames: int  # the length whose peak memory is compared with speed_clip's
    offload_steps: int
    train_size: tuple[int, int]  # width, height
    stage1_images: int
    stage2_frames: int
    matmul_size: int


FULL = Sizes("sd15", (8, 256, 384, 4), (24, 512, 768, 25), 24, 72, 3, (512, 768), 4, 24, 8192)
SMOKE = Sizes("tiny", (4, 64, 96, 2), (8, 64, 96, 2), 4, 16, 1, (64, 96), 2, 4, 512)


class Clock:
    """Wall time with the GPU's queue drained first, and the peak memory since `reset`."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peaks(self) -> dict[str, float | None]:
        if not self.cuda:
            return {"peak_allocated_gb": None, "peak_reserved_gb": None}
        return {
            "peak_allocated_gb": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gb": torch.cuda.max_memory_reserved() / 2**30,
        }


def write_model(sizes: Sizes, folder: Path, device: torch.device) -> float:
    """Random weights at the architecture's shapes, written as the released files are laid out; returns seconds."""
    start = time.perf_counter()
    pipeline = build_pipeline(sizes.architecture, seed=0, device=device)
    save_released_format(pipeline, folder)
    pipeline.vae.save_pretrained(folder / "sd-vae-ft-mse")
    pipeline.image_encoder.save_pretrained(folder / "image_encoder")
    pipeline.reference_unet.save_config(folder / "stable-diffusion-v1-5" / "unet")
    del pipeline
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return time.perf_counter() - start


def load(folder: Path, dtype: torch.dtype, device: torch.device, mode: str = "none", motion: bool = True):
    pipeline = load_released_pipeline(folder, torch_dtype=dtype, motion=motion)
    pipeline.set_progress_bar_config(disable=True)
    return apply_memory_mode(pipeline, mode, device)


def inputs(frames: int, width: int, height: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A smooth random character image and skeleton-like frames: a bright bar that moves across a black frame."""
    generator = np.random.default_rng(0)
    coarse = generator.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    reference = np.asarray(PIL.Image.fromarray(coarse).resize((width, height), PIL.Image.BICUBIC))
    poses = []
    for index in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        x = int((0.2 + 0.6 * index / max(frames - 1, 1)) * width)
        frame[height // 4 : 3 * height // 4, max(x - 3, 0) : x + 3] = (255, 85, 0)
        frame[height // 4 : height // 4 + 6, width // 4 : 3 * width // 4] = (0, 170, 255)
        poses.append(frame)
    return reference, poses


def unet_call(pipeline: AnimateAnyonePipeline, reference: np.ndarray, poses: list[np.ndarray]) -> torch.Tensor:
    """One guided call of the denoising UNet at timestep 500 on fixed noise, with the reference's features, as the
    pipeline makes it (float32 on the CPU)."""
    height, width = reference.shape[:2]
    with torch.no_grad():
        context = pipeline.prepare_reference(PIL.Image.fromarray(reference), height, width, "squash", True)
        output = guided_step(pipeline, context, poses, height, width)
        pipeline.reference_features.clear()
    return output.float().cpu()


def guided_step(pipeline: AnimateAnyonePipeline, context: torch.Tensor, poses, height: int, width: int):
    """The Pose Guider and the denoising UNet on both guidance branches of one window, on fixed noise."""
    device = pipeline._execution_device
    channels, factor = pipeline.vae.config.latent_channels, pipeline.vae_scale_factor
    shape = (2, channels, len(poses), height // factor, width // factor)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    latents = latents.to(device, pipeline.denoising_unet.dtype)
    pose_features = pipeline.encode_poses(poses, list(range(len(poses))), height, width).repeat(2, 1, 1, 1)
    return denoise(pipeline.denoising_unet, latents, torch.tensor(500, device=device), context, pose_features)


class AttentionWatch:
    """The largest magnitude any attention layer outputs, and how many outputs held inf or NaN, while it is open."""

    def __init__(self, pipeline: AnimateAnyonePipeline):
        from diffusers.models.attention_processor import Attention

        self.largest, self.nonfinite = 0.0, 0
        self.handles = [
            module.register_forward_hook(self.record)
            for model in (pipeline.reference_unet, pipeline.denoising_unet)
            for module in model.modules()
            if isinstance(module, Attention)
        ]

    def record(self, module, args, output) -> None:
        output = output[0] if isinstance(output, tuple) else output
        finite = torch.isfinite(output)
        self.nonfinite += int(not finite.all())
        self.largest = max(self.largest, float(output.detach().abs().where(finite, 0).max()))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def difference(value: torch.Tensor, baseline: torch.Tensor) -> dict[str, float]:
    value, baseline = value.float(), baseline.float()
    nonfinite = int((~torch.isfinite(value)).sum())
    delta = (value - baseline).abs().nan_to_num(posinf=float("inf"))
    return {"max_abs": float(delta.max()), "mean_abs": float(delta.mean()), "nonfinite": nonfinite}


def part_precision(folder: Path, sizes: Sizes, device: torch.device) -> dict:
    frames, width, height, steps = sizes.precision_clip
    reference, poses = inputs(frames, width, height)
    results, baseline = {}, {}
    for name in ("fp32", "fp16", "bf16"):
        pipeline = load(folder, DTYPES[name], device)
        watch = AttentionWatch(pipeline)
        unet = unet_call(pipeline, reference, poses)
        clip = pipeline(
            reference, poses, height=height, width=width, num_inference_steps=steps, guidance_scale=3.5,
            generator=torch.Generator().manual_seed(0), context_frames=frames, context_overlap=0,
            output_type="latent",
        ).latents.float().cpu()  # fmt: skip
        watch.close()
        frames_out = torch.cat(list(pipeline.decode_latents(clip)))
        vae_alone = torch.cat(list(pipeline.decode_latents(baseline.get("latents", clip))))
        if name == "fp32":
            baseline = {"unet": unet, "latents": clip, "frames": frames_out, "vae": vae_alone}
        results[name] = {
            "unet_call": difference(unet, baseline["unet"]),
            "clip_latents": difference(clip, baseline["latents"]),
            "clip_frames": difference(frames_out, baseline["frames"]),
            "vae_decode_alone": difference(vae_alone, baseline["vae"]),
            "attention_largest_output": watch.largest,
            "attention_outputs_with_inf_or_nan": watch.nonfinite,
        }
        del pipeline
    print(f"\n## precision: {frames} frames at {width}x{height}, {steps} steps, against fp32\n")
    print("| dtype | UNet call max / mean | clip latents max / mean | clip frames max / mean | VAE alone max | "
          "largest attention output | inf/NaN |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, row in results.items():
        cells = [f"{row[key]['max_abs']:.4g} / {row[key]['mean_abs']:.3g}" for key in ("unet_call", "clip_latents")]
        cells.append(f"{row['clip_frames']['max_abs']:.4g} / {row['clip_frames']['mean_abs']:.3g}")
        nonfinite = sum(row[key]["nonfinite"] for key in ("unet_call", "clip_latents", "clip_frames"))
        nonfinite += row["attention_outputs_with_inf_or_nan"]
        print(f"| {name} | {' | '.join(cells)} | {row['vae_decode_alone']['max_abs']:.4g} "
              f"| {row['attention_largest_output']:.4g} | {nonfinite} |")  # fmt: skip
    return results


def matmul_rate(size: int, dtype: torch.dtype, device: torch.device, clock: Clock) -> float:
    """FLOP/s of a square matmul in `dtype`, the best of 10 after 3 warm-ups."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        start = clock.now()
        a @ b
        best = min(best, clock.now() - start)
    return 2 * size**3 / best


def run_clip(pipeline, frames: int, width: int, height: int, steps: int, window: int, clock: Clock) -> dict:
    """A whole job (reference, denoising, decoding into a sink) with its time, its denoising time per step and peak."""
    reference, poses = inputs(frames, width, height)
    step_ends = []
    clock.reset()
    start = clock.now()
    result = pipeline(
        reference, poses, height=height, width=width, num_inference_steps=steps, guidance_scale=3.5,
        generator=torch.Generator().manual_seed(0), context_frames=window, context_overlap=min(4, window - 1),
        output_type="latent", callback_on_step_end=lambda *_: step_ends.append(clock.now()) or {},
    )  # fmt: skip
    denoised = clock.now()
    decoded = sum(len(chunk) for chunk in pipeline.decode_latents(result.latents, chunk_size=4))
    end = clock.now()
    per_step = (step_ends[-1] - step_ends[0]) / (steps - 1) if steps > 1 else step_ends[0] - start
    return {
        "frames": decoded, "width": width, "height": height, "steps": steps, "window": window,
        "seconds": end - start, "denoising_seconds": denoised - start, "decoding_seconds": end - denoised,
        "seconds_per_step": per_step, "ms_per_frame_step": 1000 * (end - start) / (frames * steps),
        "finite": bool(torch.isfinite(result.latents).all()), **clock.peaks(),
    }  # fmt: skip


def step_flops(pipeline: AnimateAnyonePipeline, frames: int, width: int, height: int) -> int:
    """FLOPs of one guided denoising step over one window: the Pose Guider and the UNet on both branches."""
    reference, poses = inputs(frames, width, height)
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        context = pipeline.prepare_reference(PIL.Image.fromarray(reference), height, width, "squash", True)
        with counter:  # the reference's encoders and ReferenceNet run once per job, not per step
            guided_step(pipeline, context, poses, height, width)
        pipeline.reference_features.clear()
    return counter.get_total_flops()


def part_speed(folder: Path, sizes: Sizes, device: torch.device, dtype: torch.dtype) -> dict:
    clock = Clock(device)
    frames, width, height, steps = sizes.speed_clip
    pipeline = load(folder, dtype, device)
    run_clip(pipeline, min(frames, sizes.window), width, height, 2, sizes.window, clock)  # warm-up (kernels, caches)
    clip = run_clip(pipeline, frames, width, height, steps, sizes.window, clock)
    long = run_clip(pipeline, sizes.long_frames, width, height, 2, sizes.window, clock)
    flops = step_flops(pipeline, sizes.window, width, height)
    rate = matmul_rate(sizes.matmul_size, dtype, device, clock)
    windows = len(context_windows(frames, sizes.window, min(4, sizes.window - 1)))  # UNet calls per step
    floor = flops * windows / rate
    result = {"clip": clip, "long": long, "step_flops_per_window": flops, "matmul_flops_per_second": rate,
              "floor_seconds_per_step": floor, "of_floor": clip["seconds_per_step"] / floor}  # fmt: skip
    print(f"\n## speed: {str(dtype).removeprefix('torch.')}, window {sizes.window}\n")
    print("| frames | size | steps | wall | per frame-step | denoising per step | peak allocated | peak reserved |")
    print("|---|---|---|---|---|---|---|---|")
    for row in (clip, long):
        print(f"| {row['frames']} | {row['width']}x{row['height']} | {row['steps']} | {row['seconds']:.1f} s "
              f"| {row['ms_per_frame_step']:.1f} ms | {row['seconds_per_step']:.2f} s "
              f"| {_gb(row['peak_allocated_gb'])} | {_gb(row['peak_reserved_gb'])} |")  # fmt: skip
    print(f"\nA step is {flops * windows / 1e12:.2f} TFLOP; the measured matmul rate is {rate / 1e12:.1f} TFLOP/s, so "
          f"the floor is {floor:.3f} s per step and the pipeline takes {result['of_floor']:.2f}x that.")  # fmt: skip
    if long["peak_allocated_gb"] is not None:
        growth = long["peak_allocated_gb"] - clip["peak_allocated_gb"]
        print(f"Peak memory from {frames} to {sizes.long_frames} frames: {growth:+.2f} GB.")
    return result


def part_offload(folder: Path, sizes: Sizes, device: torch.device, dtype: torch.dtype) -> dict:
    clock = Clock(device)
    frames, width, height, _ = sizes.speed_clip
    results = {}
    for mode in ("model-offload", "lowest"):
        pipeline = load(folder, dtype, device, mode)
        results[mode] = run_clip(pipeline, frames, width, height, sizes.offload_steps, sizes.window, clock)
        del pipeline
    print(f"\n## memory modes: {frames} frames at {width}x{height}, {sizes.offload_steps} steps\n")
    print("| mode | wall | per frame-step | peak allocated | peak reserved |")
    print("|---|---|---|---|---|")
    for mode, row in results.items():
        print(f"| {mode} | {row['seconds']:.1f} s | {row['ms_per_frame_step']:.1f} ms "
              f"| {_gb(row['peak_allocated_gb'])} | {_gb(row['peak_reserved_gb'])} |")  # fmt: skip
    return results


def training_step(folder: Path, sizes: Sizes, device: torch.device, stage: int) -> dict:
    """One optimiser step of the stage, timed after one untimed step, on random frames."""
    from accelerate import Accelerator

    from animate.training.config import TrainConfig
    from animate.training.objective import AnimateAnyoneTrainingModel, diffusion_loss, trainable_parameters

    clock = Clock(device)
    width, height = sizes.train_size
    videos, frames = (sizes.stage1_images, 1) if stage == 1 else (1, sizes.stage2_frames)
    config = TrainConfig(stage=stage, width=width, height=height, num_frames=frames, batch_size=videos)
    accelerator = Accelerator(mixed_precision="fp16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    pipeline = load_released_pipeline(folder, motion=stage == 2)  # fp32 weights, autocast compute, as training runs
    pipeline.set_progress_bar_config(disable=True)
    parameters = trainable_parameters(pipeline, stage)
    pipeline.denoising_unet.enable_gradient_checkpointing()
    if stage == 1:
        pipeline.reference_unet.enable_gradient_checkpointing()
    pipeline.to(device)
    try:
        import bitsandbytes

        optimizer, adam = bitsandbytes.optim.AdamW8bit(parameters, lr=1e-5), "8-bit AdamW"
    except ImportError:
        optimizer, adam = torch.optim.AdamW(parameters, lr=1e-5), "AdamW (bitsandbytes is not installed)"
    model, optimizer = accelerator.prepare(AnimateAnyoneTrainingModel(pipeline), optimizer)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.rand(videos, frames, 3, height, width, generator=generator) * 2 - 1,
        "reference": torch.rand(videos, 3, height, width, generator=generator) * 2 - 1,
        "poses": torch.rand(videos, frames, 3, height, width, generator=generator),
    }
    times = []
    clock.reset()
    for step in range(2):
        start = clock.now()
        loss = diffusion_loss(accelerator, model, pipeline, batch, torch.Generator().manual_seed(step), config)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        pipeline.reference_features.clear()
        times.append(clock.now() - start)
    trained = sum(parameter.numel() for parameter in parameters)
    shape = {"stage": stage, "videos": videos, "frames": frames, "width": width, "height": height}
    return {**shape, "optimizer": adam, "trained_parameters": trained, "seconds_per_step": times[-1],
            "loss": loss.item(), **clock.peaks()}  # fmt: skip


def part_training(folder: Path, sizes: Sizes, device: torch.device) -> dict:
    results = {f"stage{stage}": training_step(folder, sizes, device, stage) for stage in (1, 2)}
    print("\n## training: one step, gradient checkpointing, mixed precision\n")
    print("| stage | batch | size | trained parameters | optimizer | per step | peak allocated | peak reserved |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results.values():
        batch = f"{row['videos']} images" if row["stage"] == 1 else f"{row['frames']} frames"
        print(f"| {row['stage']} | {batch} | {row['width']}x{row['height']} | {row['trained_parameters'] / 1e6:.0f} M "
              f"| {row['optimizer']} | {row['seconds_per_step']:.2f} s | {_gb(row['peak_allocated_gb'])} "
              f"| {_gb(row['peak_reserved_gb'])} |")  # fmt: skip
    return results


def _gb(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.2f} GB"


def guarded(name: str, part: Callable[[], dict], errors: dict) -> dict | None:
    print(f"\n# {name}", flush=True)
    start = time.perf_counter()
    try:
        result = part()
    except Exception as error:  # a failing part is reported and the others still run
        errors[name] = f"{type(error).__name__}: {error}"
        print(f"{name} failed: {errors[name]}")
        traceback.print_exc()
        return None
    finally:
        print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="every part at a tiny size on the CPU")
    parser.add_argument("--parts", default="precision,speed,offload,training", help="comma-separated parts to run")
    parser.add_argument("--weights", type=Path, help="a folder for the written model (default: a temporary one)")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --cpu-smoke to check the script on the CPU")
    sizes, device = (SMOKE, torch.device("cpu")) if args.cpu_smoke else (FULL, torch.device("cuda"))
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16  # fp16 kernels on a CPU are slow
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # fp16 on the CPU (--cpu-smoke) is slow, and diffusers says so
    transformers.utils.logging.disable_progress_bar()

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },  # fmt: skip
        "sizes": asdict(sizes),
    }
    print(f"{report['device']}; torch {torch.__version__}, diffusers {diffusers.__version__}; {sizes.architecture}")
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.weights or Path(temporary)
        report["write_seconds"] = guarded("write the model", lambda: {"s": write_model(sizes, folder, device)}, errors)
        parts = {
            "precision": lambda: part_precision(folder, sizes, device),
            "speed": lambda: part_speed(folder, sizes, device, dtype),
            "offload": lambda: part_offload(folder, sizes, device, dtype),
            "training": lambda: part_training(folder, sizes, device),
        }
        for name in args.parts.split(","):
            report[name] = guarded(name, parts[name], errors)
    report["errors"] = errors
    report["seconds"] = time.perf_counter() - started
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(f"\n{len(errors)} part(s) failed; {report['seconds']:.0f} s in all; {args.out / 'gpu.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
