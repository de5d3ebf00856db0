"""Every training hyperparameter in one place: `TrainConfig`, read from a YAML preset and `--key=value` overrides.

Presets live in `configs/`: `stage1.yaml` / `stage2.yaml` are the reference's paper-scale settings for GPUs
(Moore-AnimateAnyone's configs/train/stage1.yaml and stage2.yaml), `tiny_stage1.yaml` / `tiny_stage2.yaml` run the
tiny architecture on a CPU in seconds per step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from animate import WEIGHTS_DIR

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
RUNS_DIR = WEIGHTS_DIR.parent / "runs"
Config = TypeVar("Config")


@dataclass
class TrainConfig:
    # --- run ---
    stage: int = 1  # 1: image stage (ReferenceNet, 2D denoising UNet, Pose Guider); 2: temporal stage (motion modules)
    run_name: str = "stage1"  # names the run folder (output_dir/run_name) and the export (export_dir/run_name)
    output_dir: str = str(RUNS_DIR)  # run folders: checkpoints/, metrics.jsonl, TensorBoard logs, validation samples
    export_dir: str = str(WEIGHTS_DIR / "trained")  # the app lists every export_dir/<name>/ with a model_index.json
    seed: int = 0  # data order, noise, timesteps, drop masks and fresh weights are pure functions of it and the step
    resume: bool = True  # continue from the newest complete checkpoint in the run folder (False: refuse to reuse it)

    # --- model ---
    # Where the weights start: a folder of released Animate Anyone weights (Moore-AnimateAnyone's pretrained_weights/
    # layout, as `python -m animate.weights download` fills weights/) to fine-tune, a saved pipeline folder
    # (model_index.json: base weights, or a stage-1 export for stage 2), or an architecture name ("tiny", "sd15")
    # for freshly initialised weights of that shape.
    init_from: str = str(WEIGHTS_DIR)
    # Stage 2: AnimateDiff-format motion weights to start from (.ckpt/.pth: mm_sd_v15_v2.ckpt, as the reference, or a
    # released motion_module.pth); "": new motion modules whose output projections are zero, as AnimateDiff
    # initialises them, so that stage 2 starts exactly at the stage-1 model.
    motion_module: str = ""
    # Heads of new or AnimateDiff motion modules (not recorded in their files; 8 in AnimateDiff v2 and the released
    # model, which is also what loading our released-format export assumes).
    motion_num_attention_heads: int = 8

    # --- data ---
    # "puppets" (procedural characters) or a dataset index JSON (from python -m animate.training.dataset build FOLDER)
    data: str = "puppets"
    num_samples: int = 0  # > 0: cycle through the first N samples only (1 overfits one clip: does the loop learn?)
    width: int = 768  # training resolution, a multiple of 8 (the reference: 768 in stage 1, 512 in stage 2)
    height: int = 768  # a multiple of 8
    num_frames: int = 1  # frames per clip: 1 in stage 1, 24 in stage 2 (the reference's n_sample_frames)
    frame_stride: int = 1  # dataset videos: take every k-th frame (the reference's sample_rate is 4)
    batch_size: int = 4  # clips per process and micro-step (the reference: 4 in stage 1, 1 in stage 2)
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step
    num_workers: int = 4  # DataLoader worker processes (0: load in the training process)

    # --- diffusion objective ---
    # Training betas. The reference trains with "scaled_linear" but samples with "linear"; we train with the betas we
    # sample with, and the export's DDIM scheduler carries them (the released format implies "linear").
    beta_schedule: str = "linear"
    uncond_ratio: float = 0.1  # per sample: zero image embedding and no reference attention (the CFG branch)
    noise_offset: float = 0.05  # std of a per-video, per-channel constant added to the noise (the reference's value)
    snr_gamma: float = 5.0  # min-SNR weighting (Hang et al. 2023), in the reference's v-prediction form; 0: off
    # Training timesteps are drawn uniformly from [min_timestep, 1000) (every scheduler here has 1000). 0: all of them,
    # as the reference; higher trains only the noisier end, where a few-step sampler spends its steps (1 step: t=999).
    min_timestep: int = 0
    # Stage 2: adds this times the mean squared frame-to-frame change of the prediction error, which is the eval's
    # flicker as a loss: an error shared by neighbouring frames costs nothing extra, one that differs from frame to
    # frame (what the per-frame noise leaves) costs more. 0: the paper's loss alone.
    temporal_loss_weight: float = 0.0

    # --- optimisation ---
    learning_rate: float = 1e-5  # AdamW (the reference: 1e-5 in both stages, not scaled with the batch)
    lr_warmup_steps: int = 1  # linear warm-up, then constant (the reference: constant after 1 step)
    # Linear decay to 0 over the last N of max_steps (warm-up, stable, decay); 0: constant to the end, as the
    # reference. Decaying lowers the loss at the end of a short run; a constant rate lets a run be extended exactly.
    lr_decay_steps: int = 0
    max_steps: int = 30000  # optimizer steps (the reference: 30k in stage 1, 10k in stage 2)
    adam_beta1: float = 0.9  # AdamW's settings, the reference's
    adam_beta2: float = 0.999  # (AdamW)
    adam_weight_decay: float = 1e-2  # (AdamW)
    adam_epsilon: float = 1e-8  # (AdamW)
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm
    use_8bit_adam: bool = False  # bitsandbytes' AdamW8bit (pip install bitsandbytes); the reference uses it in stage 2
    mixed_precision: str = "fp16"  # "no", "fp16" or "bf16": autocast compute; every weight stays in float32
    gradient_checkpointing: bool = False  # recompute activations in backward (non-reentrant): less memory, ~30% slower
    deepspeed_config: str = ""  # a DeepSpeed JSON (configs/deepspeed_zero2.json: ZeRO-2); needs pip install deepspeed

    # --- checkpoints and monitoring ---
    checkpoint_every: int = 2000  # optimizer steps between accelerate state checkpoints (and one at the end)
    keep_checkpoints: int = 2  # complete checkpoints kept in the run folder; older ones are deleted
    log_every: int = 10  # optimizer steps between metrics.jsonl / TensorBoard records of loss, lr, speed
    validate_every: int = 200  # steps between validations (and one before training): loss, samples; 0: never
    validation_samples: int = 2  # the first N samples: fixed-noise loss, and an image (stage 1) or mp4 each
    validation_inference_steps: int = 20  # DDIM steps of the generated validation samples
    validation_guidance: float = 3.5  # classifier-free guidance scale of the generated validation samples

    def __post_init__(self):
        checks = {
            "stage": self.stage in (1, 2),
            "num_frames": self.num_frames >= 1 and (self.stage == 2 or self.num_frames == 1),
            "width": self.width > 0 and self.width % 8 == 0,
            "height": self.height > 0 and self.height % 8 == 0,
            "beta_schedule": self.beta_schedule in ("linear", "scaled_linear"),
            "mixed_precision": self.mixed_precision in ("no", "fp16", "bf16"),
            "uncond_ratio": 0 <= self.uncond_ratio <= 1,
            "motion_module": self.stage == 2 or not self.motion_module,
            "run_name": bool(self.run_name) and os.sep not in self.run_name and not self.run_name.startswith("."),
        }
        checks |= {
            name: getattr(self, name) >= 1
            for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "checkpoint_every",
                         "lr_warmup_steps", "keep_checkpoints", "log_every", "validation_inference_steps",
                         "frame_stride")
        }  # fmt: skip
        checks |= {name: getattr(self, name) >= 0 for name in ("num_samples", "num_workers", "validate_every")}
        checks["lr_decay_steps"] = 0 <= self.lr_decay_steps <= self.max_steps
        checks["min_timestep"] = 0 <= self.min_timestep < 1000
        checks["temporal_loss_weight"] = self.temporal_loss_weight >= 0
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"Invalid training config: {values} (see the comments in animate/training/config.py)")

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based): warm-up, then constant, then the decay."""
        warm_up = min(1.0, (step + 1) / self.lr_warmup_steps)
        decay = min(1.0, (self.max_steps - step) / self.lr_decay_steps) if self.lr_decay_steps else 1.0
        return self.learning_rate * min(warm_up, decay)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def export_path(self) -> Path:
        return Path(self.export_dir) / self.run_name


def load_config(path: str | os.PathLike, overrides: dict[str, str] | None = None) -> TrainConfig:
    """A YAML preset (a path, or the name of one in configs/) with `overrides` (field -> text) applied on top."""
    path = Path(path)
    if not path.is_file() and (CONFIGS_DIR / f"{path}.yaml").is_file():
        path = CONFIGS_DIR / f"{path}.yaml"
    if not path.is_file():
        presets = ", ".join(sorted(preset.stem for preset in CONFIGS_DIR.glob("*stage*.yaml")))
        raise ValueError(f"Config {path} not found; give a YAML file or a preset name ({presets})")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must be a YAML mapping of config fields")
    return config_from(TrainConfig, values | (overrides or {}), f"{path} or the command line")


def config_from(kind: type[Config], values: dict, source: str) -> Config:
    """The dataclass `kind` with `values` (field -> value or text) over its defaults; ValueError names `source`."""
    fields = {item.name: item for item in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"Unknown config field(s) {', '.join(unknown)} in {source}")
    return kind(**{name: _parse(fields[name], value) for name, value in values.items()})


def parse_overrides(arguments: Sequence[str]) -> dict[str, str]:
    """Command-line `--field=value` or `--field value` arguments -> {field: value text}."""
    arguments, overrides = list(arguments), {}
    while arguments:
        option = arguments.pop(0)
        if not option.startswith("--") or len(option) == 2:
            raise ValueError(f"unexpected argument {option!r}: overrides look like --FIELD=VALUE")
        name, equals, value = option[2:].partition("=")
        if not equals:
            if not arguments:
                raise ValueError(f"--{name} needs a value")
            value = arguments.pop(0)
        overrides[name.replace("-", "_")] = value
    return overrides


def _parse(item: dataclasses.Field, value):
    """A YAML or command-line value as the field's type (YAML reads `1e-5` as text, the command line gives text)."""
    kind = item.type  # a string: this module has postponed annotations
    if kind == "bool" and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{item.name} must be true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    try:
        return {"int": int, "float": float, "str": str, "bool": bool}[kind](value)
    except ValueError:
        raise ValueError(f"{item.name} must be {kind}, got {value!r}") from None
