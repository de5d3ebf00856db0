"""Training Animate Anyone (Hu et al. 2023, §3.3): stage 1 on image pairs, stage 2 on clips; read it top to bottom.

`train(config)` is one script: accelerator -> components -> freezing -> optimizer -> resume -> loop (validation,
checkpoints) -> export. What each stage trains follows the reference (Moore-AnimateAnyone's train_stage_1.py and
train_stage_2.py): stage 1 trains ReferenceNet (but its last up block), the 2D denoising UNet and the Pose Guider on
(reference frame, target frame, target skeleton); stage 2 trains only the motion modules, on clips. Both use
v-prediction on zero-terminal-SNR betas, a noise offset, min-SNR weighting and a 10% unconditional drop.

Two choices make a resumed run continue exactly, after a kill at any moment: every random draw of a micro-step
(sample indices, VAE posterior noise, timesteps, drop mask, noise) is a pure function of (seed, step, rank,
micro-step), so nothing depends on restored RNG state; and a checkpoint is written to a temporary folder, synced and
renamed, so a checkpoint-* folder is always complete and resume takes the newest one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DistributedDataParallelKwargs
from diffusers import DDIMScheduler, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from animate.architecture import ARCHITECTURES, build_pipeline, motion_adapter
from animate.checkpoints import (
    ANIMATE_ANYONE_SCHEDULER,
    PROFILES,
    load_released_pipeline,
    motion_adapter_from_state_dict,
    read_state_dict,
    save_released_format,
)
from animate.export import side_by_side
from animate.pipeline import AnimateAnyonePipeline, to_uint8
from animate.training.config import TrainConfig
from animate.training.dataset import PuppetSamples, VideoSamples, make_samples
from animate.training.objective import (
    AnimateAnyoneTrainingModel,
    _uint8,
    diffusion_loss,
    seeded_generator,
    trainable_parameters,
)
from animate.unet import extend_motion_position_encoding
from pose.video import VideoWriter

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.json"  # written last into a checkpoint: the step and the config
VALIDATION_DRAWS = 4  # noise/timestep draws per validation sample: one draw's loss depends too much on its timestep
VALIDATION_FPS = 8


def train(config: TrainConfig) -> AnimateAnyonePipeline:
    """Runs (or resumes) the training `config` describes, exports the result, and returns the trained pipeline."""
    run_dir = config.run_dir
    # 1. Processes, precision, accumulation and trackers, from accelerate (and its launcher's environment)
    if config.deepspeed_config and importlib.util.find_spec("deepspeed") is None:
        raise ImportError("deepspeed_config needs DeepSpeed, which is not installed: pip install deepspeed")
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=config.deepspeed_config) if config.deepspeed_config else None,
        # A micro-batch whose samples all drop the reference leaves ReferenceNet without gradients (the reference
        # sets the same flag in stage 1).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.stage == 1)],
        log_with="tensorboard",
        project_dir=run_dir,
    )
    if accelerator.state.deepspeed_plugin is not None:  # we feed batches ourselves, so DeepSpeed cannot infer these
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
        accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] = config.max_grad_norm
    rank, world = accelerator.process_index, accelerator.num_processes

    # 2. Components: every weight stays float32 (autocast gives the speed), so an export holds exactly the weights
    # that were loaded plus what was trained.
    pipeline = load_pipeline(config)

    # 3. Freezing (what each stage trains) and gradient checkpointing
    parameters = trainable_parameters(pipeline, config.stage)
    if config.gradient_checkpointing:  # diffusers' default is non-reentrant, which reference attention needs
        pipeline.denoising_unet.enable_gradient_checkpointing()
        if config.stage == 1:
            pipeline.reference_unet.enable_gradient_checkpointing()
    pipeline.to(accelerator.device)
    model = AnimateAnyoneTrainingModel(pipeline)

    # 4. Optimizer (the learning rate is set at every step from the step number)
    if config.use_8bit_adam:
        try:
            import bitsandbytes
        except ImportError:
            raise ImportError(
                "use_8bit_adam needs bitsandbytes, which is not installed: pip install bitsandbytes"
            ) from None
        optimizer_class = bitsandbytes.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    optimizer = optimizer_class(
        parameters,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    model, optimizer = accelerator.prepare(model, optimizer)

    # 5. Resume from the newest complete checkpoint
    checkpoints = run_dir / "checkpoints"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        for folder in checkpoints.glob("*"):  # what a kill can leave: one being written, or being deleted
            if not (folder.name.startswith("checkpoint-") and (folder / STATE_FILE).is_file()):
                shutil.rmtree(folder)
    accelerator.wait_for_everyone()
    first_step = 0
    checkpoint = latest_checkpoint(checkpoints)
    if checkpoint is not None:
        if not config.resume:
            raise ValueError(
                f"{run_dir} already has checkpoints: set resume=true to continue, or pick another run_name"
            )
        accelerator.load_state(checkpoint)
        state = json.loads((checkpoint / STATE_FILE).read_text())
        first_step = state["step"]
        changed = {key for key, value in dataclasses.asdict(config).items() if state["config"].get(key) != value}
        if accelerator.is_main_process:
            logger.info("Resuming %s from step %d", run_dir, first_step)
            if changed:
                logger.warning("The config differs from the checkpoint's in: %s", ", ".join(sorted(changed)))
            _truncate_metrics(run_dir / "metrics.jsonl", first_step)
    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard", config=dataclasses.asdict(config))

    # 6. Data: sample indices are a pure function of (step, micro-step, rank), from the first step on
    samples = make_samples(
        config.data, config.num_frames, config.width, config.height, seed=config.seed, frame_stride=config.frame_stride
    )
    batches = iter(
        torch.utils.data.DataLoader(
            samples,
            batch_sampler=batch_indices(config, first_step, rank, world),
            num_workers=config.num_workers,
            pin_memory=accelerator.device.type == "cuda",
        )
    )

    # 7. The loop
    if first_step == 0 and config.validate_every:
        validate(accelerator, model, pipeline, samples, config, 0)
    for step in range(first_step, config.max_steps):
        started = time.perf_counter()
        learning_rate = config.learning_rate_at(step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        losses = []
        for micro_step in range(config.gradient_accumulation_steps):
            batch = next(batches)
            generator = seeded_generator(config.seed, 0, step, rank, micro_step)
            with accelerator.accumulate(model):
                try:
                    loss = diffusion_loss(accelerator, model, pipeline, batch, generator, config)
                    accelerator.backward(loss)
                finally:  # after backward: checkpointed blocks read the features again while recomputing
                    pipeline.reference_features.clear()
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        done = step + 1
        if done % config.log_every == 0 or done == config.max_steps:  # the same on every process: reduce matches
            loss = accelerator.reduce(torch.stack(losses).mean(), "mean").item()
            seconds = time.perf_counter() - started
            clips = config.batch_size * config.gradient_accumulation_steps * world
            metrics = {"loss": loss, "lr": learning_rate, "step_time": seconds, "samples_per_s": clips / seconds}
            log_metrics(accelerator, run_dir, done, metrics)
        if config.validate_every and done % config.validate_every == 0:
            validate(accelerator, model, pipeline, samples, config, done)
        if done % config.checkpoint_every == 0 or done == config.max_steps:
            save_checkpoint(accelerator, checkpoints, done, config)

    # 8. Export, in our format and in the released one
    if accelerator.is_main_process:
        export(pipeline, config, max(first_step, config.max_steps))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return pipeline


def load_pipeline(config: TrainConfig) -> AnimateAnyonePipeline:
    """The model training starts from (see `TrainConfig.init_from`), with new motion modules for stage 2, the
    training scheduler and motion position encodings that cover `num_frames`."""
    source = Path(config.init_from)
    if config.init_from in ARCHITECTURES:
        pipeline = build_pipeline(config.init_from, seed=config.seed, motion=False)
    elif (source / "model_index.json").is_file():
        pipeline = AnimateAnyonePipeline.from_pretrained(source)
    elif (source / "reference_unet.pth").is_file():
        pipeline = load_released_pipeline(source, motion=False)
    else:
        raise ValueError(
            f"init_from={config.init_from!r} is neither an architecture ({', '.join(ARCHITECTURES)}), a saved "
            "pipeline folder (with model_index.json) nor a released-weights folder (with reference_unet.pth)"
        )
    has_motion = isinstance(pipeline.denoising_unet, UNetMotionModel)
    if config.stage == 1 and has_motion:
        raise ValueError(f"Stage 1 trains the image model, but {source} has motion modules (a stage-2 model)")
    if has_motion and config.motion_module:
        raise ValueError(f"{source} already has motion modules; leave motion_module empty to go on training them")
    if config.stage == 2 and not has_motion:
        pipeline = AnimateAnyonePipeline(
            **{**pipeline.components, "denoising_unet": add_motion_modules(pipeline, config)}
        )
    pipeline.scheduler = DDIMScheduler(**{**ANIMATE_ANYONE_SCHEDULER, "beta_schedule": config.beta_schedule})
    pipeline.set_progress_bar_config(disable=True)
    if isinstance(pipeline.denoising_unet, UNetMotionModel):
        extend_motion_position_encoding(pipeline.denoising_unet, config.num_frames)
    return pipeline


def add_motion_modules(pipeline: AnimateAnyonePipeline, config: TrainConfig) -> UNetMotionModel:
    """The stage-1 2D UNet with AnimateDiff motion modules, loaded from `config.motion_module` or new."""
    unet = pipeline.denoising_unet
    channels = tuple(unet.config.block_out_channels)
    if config.motion_module:
        state_dict = read_state_dict(config.motion_module)
        adapter = motion_adapter_from_state_dict(
            state_dict, channels, config.motion_num_attention_heads, config.motion_module
        )
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            adapter = motion_adapter(unet.config, config.motion_num_attention_heads)  # 32 frames, as AnimateDiff v2
        # AnimateDiff zero-initialises each temporal transformer's output projection: every motion module then
        # adds nothing to its residual, and stage 2 starts exactly at the stage-1 model.
        for module in adapter.modules():
            if isinstance(module, AnimateDiffTransformer3D):
                torch.nn.init.zeros_(module.proj_out.weight)
                torch.nn.init.zeros_(module.proj_out.bias)
    return UNetMotionModel.from_unet2d(unet, adapter)


def sample_index(config: TrainConfig, index: int) -> int:
    """Which sample the `index`-th draw reads: all of them in turn, or the first `num_samples` over and over."""
    return index % config.num_samples if config.num_samples else index


def batch_indices(config: TrainConfig, first_step: int, rank: int, world: int) -> Iterator[list[int]]:
    """The sample indices of every micro-batch from `first_step` on, for one process: consecutive blocks, so no
    two processes or micro-steps share a sample and a resumed run reads what an uninterrupted one would."""
    accumulation, size = config.gradient_accumulation_steps, config.batch_size
    for step in itertools.count(first_step):
        for micro_step in range(accumulation):
            first = ((step * accumulation + micro_step) * world + rank) * size
            yield [sample_index(config, index) for index in range(first, first + size)]


@torch.no_grad()
def validate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    pipeline: AnimateAnyonePipeline,
    samples: PuppetSamples | VideoSamples,
    config: TrainConfig,
    step: int,
) -> None:
    """On the main process: the loss of the first validation samples at fixed noise and timesteps (comparable across
    steps), and a generated image (stage 1) or mp4 (stage 2) per sample in the run folder's samples/."""
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model)
        conditional = dataclasses.replace(config, uncond_ratio=0.0)
        losses = []
        folder = config.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(config.validation_samples):
            sample = samples[sample_index(config, index)]
            batch = {name: tensor[None] for name, tensor in sample.items()}
            for draw in range(VALIDATION_DRAWS):
                try:
                    generator = seeded_generator(config.seed, 1, index, draw)
                    losses.append(diffusion_loss(accelerator, model, pipeline, batch, generator, conditional).item())
                finally:
                    pipeline.reference_features.clear()
            write_validation_sample(accelerator, pipeline, sample, config, folder / f"step{step:07d}-sample{index}")
        log_metrics(accelerator, config.run_dir, step, {"val_loss": float(np.mean(losses))})
    accelerator.wait_for_everyone()


def write_validation_sample(
    accelerator: Accelerator,
    pipeline: AnimateAnyonePipeline,
    sample: dict[str, torch.Tensor],
    config: TrainConfig,
    path: Path,
) -> None:
    """`reference | skeleton | generated | target`, as a PNG (one frame) or an mp4."""
    reference = _uint8(sample["reference"][None])[0]
    poses = to_uint8(sample["poses"])
    with accelerator.autocast():
        generated = pipeline(
            reference,
            poses,
            height=config.height,
            width=config.width,
            num_inference_steps=config.validation_inference_steps,
            guidance_scale=config.validation_guidance,
            generator=torch.Generator().manual_seed(config.seed),
            context_frames=config.num_frames,
            context_overlap=0,
            output_type="pt",
        ).frames
    results = [np.concatenate(pair, axis=1) for pair in zip(to_uint8(generated), _uint8(sample["frames"]), strict=True)]
    panels = side_by_side(reference, poses, results)
    if config.num_frames == 1:
        PIL.Image.fromarray(next(panels)).save(path.with_suffix(".png"))
    else:
        with VideoWriter(path.with_suffix(".mp4"), VALIDATION_FPS) as writer:
            writer.write_all(panels)


def log_metrics(accelerator: Accelerator, run_dir: Path, step: int, metrics: dict[str, float]) -> None:
    """To TensorBoard and to run_dir/metrics.jsonl (one JSON object per line, which the app plots)."""
    accelerator.log(metrics, step=step)
    if accelerator.is_main_process:
        with (run_dir / "metrics.jsonl").open("a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        logger.info("step %d: %s", step, ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops the records after `step` (written before a kill) and a torn last line, so the file is one curve."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record["step"] <= step:
            kept.append(line + "\n")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("".join(kept))
    os.replace(partial, path)


def checkpoint_step(folder: Path) -> int:
    """The step a `checkpoint-<step>` folder was saved at."""
    return int(folder.name.split("-")[1])


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    complete = [folder for folder in checkpoints.glob("checkpoint-*") if (folder / STATE_FILE).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def save_checkpoint(accelerator: Accelerator, checkpoints: Path, step: int, config: TrainConfig) -> None:
    """accelerate's full training state, written so that a kill at any moment leaves the last good checkpoint
    intact: into a temporary folder, synced to disk, then renamed (atomically) to checkpoint-<step>; the oldest
    beyond `keep_checkpoints` are deleted only after that."""
    partial = checkpoints / f".partial-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)  # on every process: DeepSpeed shards, per-process RNG states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / STATE_FILE).write_text(json.dumps({"step": step, "config": dataclasses.asdict(config)}))
        _sync_tree(partial)
        final = checkpoints / f"checkpoint-{step:08d}"
        os.replace(partial, final)
        _sync(checkpoints)
        complete = sorted(checkpoints.glob("checkpoint-*"), key=checkpoint_step)
        for old in complete[: -config.keep_checkpoints]:
            doomed = old.with_name(f".deleting-{old.name}")
            os.replace(old, doomed)
            shutil.rmtree(doomed)
        logger.info("Saved %s", final)
    accelerator.wait_for_everyone()


def export(pipeline: AnimateAnyonePipeline, config: TrainConfig, step: int) -> Path:
    """Writes the trained model to export_dir/run_name: our `save_pretrained` folder (which the app lists), the
    released .pth format in released/ (loadable with `load_released_pipeline`), and training.json (config, step).

    It is assembled next to export_dir, not in it, so that the app never lists a half-written model, then renamed
    into place.
    """
    target = config.export_path
    staging = target.parent.parent / f".{target.parent.name}.partial"
    partial, previous = staging / target.name, staging / f"{target.name}.previous"
    for folder in (partial, previous):
        shutil.rmtree(folder, ignore_errors=True)
    pipeline.save_pretrained(partial)
    released = partial / "released"
    save_released_format(pipeline, released)
    # The rest of the released layout (Moore-AnimateAnyone's pretrained_weights/): the UNet config, and the VAE
    # and image encoder, which training never changes, as links to our copies.
    pipeline.reference_unet.save_config(released / "stable-diffusion-v1-5" / "unet")
    (released / "sd-vae-ft-mse").symlink_to(Path("..") / "vae", target_is_directory=True)
    (released / "image_encoder").symlink_to(Path("..") / "image_encoder", target_is_directory=True)
    # The released format records neither the betas nor the motion modules' heads: its loader assumes the
    # released model's.
    profile = PROFILES["animate_anyone"]
    assumed = {"beta_schedule": (pipeline.scheduler.config.beta_schedule, profile.scheduler["beta_schedule"])}
    if isinstance(pipeline.denoising_unet, UNetMotionModel):
        heads = pipeline.denoising_unet.config.motion_num_attention_heads
        assumed["motion_num_attention_heads"] = (heads, profile.motion_num_attention_heads)
    for name, (ours, released_value) in assumed.items():
        if ours != released_value:
            logger.warning(
                "%s is %s; loading released/ with load_released_pipeline assumes %s", name, ours, released_value
            )
    record = {"stage": config.stage, "step": step, "config": dataclasses.asdict(config)}
    (partial / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    _sync_tree(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(partial, target)
    _sync(target.parent)
    shutil.rmtree(previous, ignore_errors=True)
    with contextlib.suppress(OSError):  # other runs may be exporting through it
        staging.rmdir()
    logger.info("Exported %s (step %d) to %s", config.run_name, step, target)
    return target


def _sync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if not path.is_symlink():
            _sync(path)
    _sync(folder)


def _sync(path: Path) -> None:
    """fsync a file or a folder (a folder's entries are what makes a rename durable)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
