"""Generation speed against the compute floor, and memory against video length. Prints tables; asserts nothing.

    python bench/generate.py                 # tiny, small (built-in) and full-size (SD1.5-shaped) UNet steps; memory
    python bench/generate.py --skip-full     # without the full-size model (it needs ~12 GB of RAM on a CPU)

1. Denoising step: one window of `--frames` frames through the denoising UNet with classifier-free guidance (batch 2),
   reference attention and pose features, exactly as the pipeline calls it. Its FLOPs are counted with
   torch.utils.flop_counter; the machine's matmul rate is measured on a large fp32 matmul; their ratio is how close
   the step runs to the compute floor.
2. Memory: the whole job (reference, windows, window-by-window decoding into a sink) for 24, 96 and 384 frames in
   fresh processes, reporting each one's peak resident memory. Skeleton frames are drawn on demand, as the app does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animate.architecture import build_pipeline  # noqa: E402
from animate.unet import denoise  # noqa: E402


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of a square matmul, the best of `repeats` runs."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_benchmark(architecture: str, frames: int, height: int, width: int, repeats: int) -> dict:
    """Seconds and FLOPs of one guided denoising step over one window of `frames` frames."""
    device = "meta" if architecture == "sd15" else "cpu"
    pipeline = build_pipeline(architecture, seed=0, device=device)
    models = [pipeline.reference_unet, pipeline.denoising_unet, pipeline.pose_guider]
    if device == "meta":  # random weights for the full-size UNets only (VAE and CLIP are not part of the step)
        for model in models:
            model.to_empty(device="cpu")
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.normal_(0, 0.02)
            for name, buffer in model.named_buffers():
                if name.endswith("pos_embed.pe"):
                    from animate.unet import sinusoidal_position_encoding

                    buffer.copy_(sinusoidal_position_encoding(buffer.shape[1], buffer.shape[2]))
    latent_height, latent_width = height // 8, width // 8
    channels = pipeline.reference_unet.config.in_channels  # 4 for SD's VAE, 8 for the built-in model's
    cross_dim = pipeline.reference_unet.config.cross_attention_dim
    context = torch.randn(1, 1, cross_dim)
    with torch.no_grad():
        pipeline.reference_unet(torch.randn(1, channels, latent_height, latent_width), 0, encoder_hidden_states=context)
    pipeline.reference_features.reading = torch.tensor([False, True])
    latents = torch.randn(2, channels, frames, latent_height, latent_width)  # [unconditional, conditional]
    contexts = torch.cat([torch.zeros_like(context), context])
    skeletons = torch.rand(frames, 3, height, width)

    def step() -> torch.Tensor:
        with torch.no_grad():
            pose_features = pipeline.pose_guider(skeletons).repeat(2, 1, 1, 1)
            return denoise(pipeline.denoising_unet, latents, 999, contexts, pose_features)

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    parameters = sum(p.numel() for p in pipeline.denoising_unet.parameters())
    return {"seconds": min(times), "flops": counter.get_total_flops(), "parameters": parameters}


MEMORY_JOB = """
import sys, time, torch
import numpy as np
from collections.abc import Sequence
from animate.architecture import build_pipeline
from animate.pipeline import to_uint8
from pose.draw import draw_pose
from pose.keypoints import Person, PoseFrame

frames, height, width = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

class DancingSkeletons(Sequence):  # drawn on demand, like pose.SkeletonFrames
    def __len__(self):
        return frames
    def __getitem__(self, index):
        person = Person.empty()
        angle = index / 8
        for joint, (x, y) in enumerate([(0.5, 0.15), (0.5, 0.25), (0.4, 0.25), (0.35, 0.4), (0.3, 0.5), (0.6, 0.25),
                                         (0.65, 0.4), (0.7, 0.5), (0.45, 0.55), (0.45, 0.7), (0.45, 0.85),
                                         (0.55, 0.55), (0.55, 0.7), (0.55, 0.85)]):
            person.body[joint] = (x + 0.05 * np.sin(angle + joint), y, 1.0)
        return draw_pose(PoseFrame([person], width, height), width, height)

torch.manual_seed(0)
pipeline = build_pipeline("tiny")
pipeline.set_progress_bar_config(disable=True)
reference = np.full((height, width, 3), 128, np.uint8)
start = time.perf_counter()
latents = pipeline(reference, DancingSkeletons(), height=height, width=width, num_inference_steps=2,
                   output_type="latent").latents
written = 0
for chunk in pipeline.decode_latents(latents):
    written += len(to_uint8(chunk))  # a video writer would take them here
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so a child of the large full-size process
# would report the parent's peak.
peak_kib = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print(peak_kib / 1024, written, seconds)
"""


def memory_benchmark(frames: int, height: int, width: int) -> tuple[float, int, float]:
    """Peak RSS (MiB), frames produced and seconds of one whole tiny-model job in a fresh process."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_JOB, str(frames), str(height), str(width)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    peak, written, seconds = result.stdout.split()[-3:]
    return float(peak), int(written), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size (SD1.5-shaped) step")
    parser.add_argument("--frames", type=int, default=8, help="frames in the benchmarked window")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_rate()
    print(f"measured fp32 matmul rate: {rate / 1e9:.1f} GFLOP/s (2048x2048, best of 10)\n")

    configurations = [("tiny", 128, 128, 5), ("small", 192, 128, 5)]  # small: the built-in model's architecture
    if not args.skip_full:
        configurations.append(("sd15", 256, 256, 2))
    rows = []
    print(
        "| model | window | size | UNet params | step time | per frame per step | GFLOP per step | achieved | of matmul rate |"  # noqa: E501
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for architecture, height, width, repeats in configurations:
        result = step_benchmark(architecture, args.frames, height, width, repeats)
        achieved = result["flops"] / result["seconds"]
        rows.append({"model": architecture, "height": height, "width": width, "frames": args.frames, **result})
        print(
            f"| {architecture} | {args.frames} frames x2 (CFG) | {width}x{height} | {result['parameters'] / 1e6:.1f} M "
            f"| {result['seconds']:.3f} s | {result['seconds'] / args.frames * 1000:.1f} ms "
            f"| {result['flops'] / 1e9:.1f} | {achieved / 1e9:.1f} GFLOP/s | {achieved / rate:.0%} |"
        )

    print("\n| frames | peak RSS | job time (2 steps, tiny, 64x64) |")
    print("|---|---|---|")
    memory = []
    for frames in (24, 96, 384):
        peak, written, seconds = memory_benchmark(frames, 64, 64)
        assert written == frames, f"the job produced {written} frames, not {frames}"
        memory.append({"frames": frames, "peak_rss_mib": peak, "seconds": seconds})
        print(f"| {frames} | {peak:.0f} MiB | {seconds:.1f} s |")
    if args.json:
        args.json.write_text(json.dumps({"matmul_flops": rate, "steps": rows, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
