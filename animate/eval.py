"""How well a model animates unseen puppets: `python -m animate.eval [--model weights/tiny] [options]`.

Held-out puppet clips (characters and dances never trained on, `puppet_seeds("heldout")`) are generated from their
reference image and exact skeletons and compared with the true frames the renderer drew:

- PSNR and SSIM over the whole frame, computed in float on [0, 1] (not after rounding to 8 bits);
- PSNR over the character's own pixels (the renderer's mask): the background is easy, the character is the task;
- flicker: the mean absolute difference between the generated and the true frame-to-frame changes, so a video that
  changes where and as much as the truth scores 0, and one that shimmers or jumps scores higher.

Beside the model, two baselines: the reference image copied to every frame, and the model's stage-1 form (its own
spatial weights without the motion modules: stage 2 trains only the motion modules, so this is exactly the
stage-1 model it was built on), which shows what the temporal stage adds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel, UNetMotionModel
from skimage.metrics import structural_similarity

from animate.generate import model_defaults
from animate.pipeline import AnimateAnyonePipeline
from animate.training.dataset import PuppetSamples
from animate.training.puppets import PuppetClip, render_clip
from animate.weights import WEIGHTS_DIR
from pose.video import VideoWriter


@dataclass
class Scores:
    psnr: float  # dB, whole frame
    ssim: float
    character_psnr: float  # dB, the character's pixels only
    flicker: float  # mean |generated change - true change| between consecutive frames, on [0, 1]


def score(generated: np.ndarray, clip: PuppetClip) -> Scores:
    """Scores of (frames, H, W, 3) float frames in [0, 1] against a clip's true frames, averaged over its frames."""
    truth = clip.frames.astype(np.float64) / 255
    generated = generated.astype(np.float64)
    squared_error = (generated - truth) ** 2  # (frames, H, W, 3)
    psnr = [10 * np.log10(1 / max(error.mean(), 1e-12)) for error in squared_error]
    character_psnr = [
        10 * np.log10(1 / max(error[mask].mean(), 1e-12)) for error, mask in zip(squared_error, clip.masks, strict=True)
    ]
    ssim = [structural_similarity(g, t, channel_axis=-1, data_range=1.0) for g, t in zip(generated, truth, strict=True)]
    flicker = np.abs(np.diff(generated, axis=0) - np.diff(truth, axis=0)).mean() if len(truth) > 1 else 0.0
    return Scores(float(np.mean(psnr)), float(np.mean(ssim)), float(np.mean(character_psnr)), float(flicker))


def spatial_unet(unet: UNetMotionModel, reference_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The UNet2DConditionModel with `unet`'s spatial weights: the model without its motion modules.

    Animate Anyone's ReferenceNet has the denoising UNet's 2D architecture (both are SD1.5's UNet), so its config
    builds it; the strict load fails loudly if a model breaks that.
    """
    image_unet = UNet2DConditionModel.from_config(reference_unet.config)
    spatial = {key: value for key, value in unet.state_dict().items() if ".motion_modules." not in key}
    image_unet.load_state_dict(spatial, strict=True, assign=True)  # shares `unet`'s tensors: same device and dtype
    return image_unet


def held_out_clips(count: int, num_frames: int, width: int, height: int, seed: int) -> list[PuppetClip]:
    seeds = PuppetSamples(num_frames, width, height, seed=seed, split="heldout")
    return [render_clip(*seeds.clip_seeds(index), num_frames, width, height) for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animate.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=WEIGHTS_DIR / "tiny", help="a saved pipeline folder")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips (default: 8)")
    parser.add_argument("--frames", type=int, default=24, help="frames per clip (default: 24)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=(128, 192))
    parser.add_argument("--seed", type=int, default=0, help="picks the clips and the initial noise")
    parser.add_argument("--videos", type=Path, help="also write truth | baselines | model videos here")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        print(f"error: {args.model} is not a saved model folder (no model_index.json)", file=sys.stderr)
        return 2
    defaults = model_defaults(args.model)
    steps = args.steps or defaults["steps"]
    guidance = defaults["guidance"] if args.guidance is None else args.guidance
    width, height = args.size
    pipeline = AnimateAnyonePipeline.from_pretrained(args.model)
    pipeline.set_progress_bar_config(disable=True)
    methods = {"reference copied to every frame": None}
    if isinstance(pipeline.denoising_unet, UNetMotionModel):
        image_unet = spatial_unet(pipeline.denoising_unet, pipeline.reference_unet)
        image_model = AnimateAnyonePipeline(**{**pipeline.components, "denoising_unet": image_unet})
        image_model.set_progress_bar_config(disable=True)
        methods["stage 1 (no motion modules)"] = image_model
    methods[f"{args.model.name} (stage 2)" if len(methods) > 1 else args.model.name] = pipeline

    clips = held_out_clips(args.clips, args.frames, width, height, args.seed)
    if args.videos:
        args.videos.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[Scores]] = {name: [] for name in methods}
    started = time.monotonic()
    for index, clip in enumerate(clips):
        outputs = {}
        for name, model in methods.items():
            if model is None:
                outputs[name] = np.repeat(clip.reference[None].astype(np.float32) / 255, len(clip.frames), axis=0)
            else:
                outputs[name] = model(
                    clip.reference,
                    list(clip.skeletons),
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(args.seed + index),
                    context_frames=defaults["context_frames"],
                    context_overlap=defaults["context_overlap"],
                ).frames
            scores[name].append(score(outputs[name], clip))
        if args.videos:
            panels = [clip.frames, clip.skeletons, *(np.round(o * 255).astype(np.uint8) for o in outputs.values())]
            with VideoWriter(args.videos / f"heldout_{index}.mp4", 8.0) as writer:
                writer.write_all(np.concatenate(frames, axis=1) for frames in zip(*panels, strict=True))
        print(f"clip {index + 1}/{len(clips)} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)

    print(
        f"\nHeld-out puppets: {len(clips)} clips x {args.frames} frames at {width}x{height}, {steps} steps, "
        f"guidance {guidance}, model {args.model}\n"
    )
    print("| method | PSNR (dB) | SSIM | character PSNR (dB) | flicker |")
    print("|---|---|---|---|---|")
    table = {}
    for name, values in scores.items():
        mean = {item.name: float(np.mean([getattr(v, item.name) for v in values])) for item in fields(Scores)}
        table[name] = mean
        columns = f"{mean['psnr']:.2f} | {mean['ssim']:.3f} | {mean['character_psnr']:.2f} | {mean['flicker']:.4f}"
        print(f"| {name} | {columns} |")
    if args.json:
        settings = vars(args) | {"steps": steps, "guidance": guidance}
        args.json.write_text(json.dumps({"settings": settings, "scores": table}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
