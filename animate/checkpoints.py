"""The released Animate Anyone checkpoint format: loading it exactly, and writing it from our models.

The public weights (MooreThreads/Moore-AnimateAnyone, on the Hub as `patrolli/AnimateAnyone`; MusePose uses the
same format) are four plain fp32 state dicts in a folder laid out like the reference's `pretrained_weights/`:

    denoising_unet.pth   the SD1.5 UNet2DConditionModel state dict (the video UNet without motion modules)
    reference_unet.pth   the same minus `conv_norm_out.*` / `conv_out.*` (ReferenceNet's output is never used)
    pose_guider.pth      the Pose Guider; its channels are read off the tensor shapes
    motion_module.pth    the AnimateDiff-named motion-module keys, including the `pos_encoder.pe` tables
    stable-diffusion-v1-5/unet/config.json, sd-vae-ft-mse/, image_encoder/   (shared SD components)

Every key is accounted for: a missing, unexpected or misshapen tensor is a `CheckpointError` naming the file and
the keys. (The reference loads with `strict=False`, so a wrong or missing motion module silently gives noise.)
Models are built on the meta device and the loaded tensors assigned into them, so a 3.4 GB UNet is never
initialised randomly first and the files are memory-mapped rather than copied.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
from transformers import CLIPVisionModelWithProjection

from animate.pipeline import AnimateAnyonePipeline, clip_processor
from animate.pose_guider import PoseGuider
from animate.unet import sinusoidal_position_encoding

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

# Reference-implementation inference settings (its configs/inference/inference_v2.yaml): DDIM, v-prediction with
# zero-terminal-SNR rescaling and trailing timesteps.
ANIMATE_ANYONE_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class ReleasedProfile:
    """Where a family of released weights lives under the weights folder and what its files do not record."""

    name: str
    subfolder: str  # folder of the four .pth files, relative to the weights folder
    motion_num_attention_heads: int = 8  # not visible in tensor shapes
    scheduler: dict = field(default_factory=lambda: dict(ANIMATE_ANYONE_SCHEDULER))


PROFILES = {
    "animate_anyone": ReleasedProfile("animate_anyone", ""),
    # MusePose's inference config (configs/inference_v2.yaml) samples with the same scheduler settings; its motion
    # modules were trained with a 128-frame position encoding, which is read off motion_module.pth.
    "musepose": ReleasedProfile("musepose", "MusePose"),
}
RELEASED_FILES = ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth")
REFERENCE_UNET_UNUSED = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")
DOWNLOAD_HINT = "Run `python -m animate.weights download` (or copy your Moore-AnimateAnyone pretrained_weights/)."


class CheckpointError(ValueError):
    """A weight file that is missing or does not match the model; the message names the file and the keys."""


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Loads a `.pth`/`.bin` state dict safely (`weights_only=True`), memory-mapped when the format allows."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Missing weight file {path}. {DOWNLOAD_HINT}")
    try:
        # Only the zip format of torch.save (the default since torch 1.6) can be memory-mapped.
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:
        raise CheckpointError(f"Cannot read {path}: {error}. The file may be truncated; download it again.") from error
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f"{path} is not a plain state dict of tensors (the released .pth format).")
    return state_dict


def check_keys(
    state_dict: StateDict, expected: dict[str, torch.Size], source: str | os.PathLike, allowed_missing=()
) -> None:
    """Raises `CheckpointError` listing missing, unexpected and misshapen keys of `source`."""
    missing = sorted(set(expected) - set(state_dict) - set(allowed_missing))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(expected[key])})"
        for key in sorted(set(state_dict) & set(expected))
        if state_dict[key].shape != expected[key]
    ]
    problems = [
        f"{len(keys)} {what}: {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", misshapen))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))


def load_exactly(module: torch.nn.Module, state_dict: StateDict, source: str | os.PathLike, allowed_missing=()):
    """Assigns `state_dict` into `module` (possibly built on the meta device) after checking every key."""
    expected = {key: value.shape for key, value in module.state_dict().items()}
    check_keys(state_dict, expected, source, allowed_missing)
    module.load_state_dict(state_dict, strict=not allowed_missing, assign=True)


def pose_guider_from_state_dict(state_dict: StateDict, source: str | os.PathLike) -> PoseGuider:
    """Builds the Pose Guider whose channels the checkpoint has ((16, 32, 96, 256) released; (16, 32, 64, 128)...)."""
    try:
        conditioning_channels = state_dict["conv_in.weight"].shape[1]
        embedding_channels = state_dict["conv_out.weight"].shape[0]
        # conv_in, then per stage a same-width conv and a stride-2 conv (odd block indices) that sets the width
        stride_convs = sorted(
            int(key.split(".")[1]) for key in state_dict if re.fullmatch(r"blocks\.\d*[13579]\.weight", key)
        )
        channels = [state_dict["conv_in.weight"].shape[0]] + [
            state_dict[f"blocks.{i}.weight"].shape[0] for i in stride_convs
        ]
    except KeyError as error:
        raise CheckpointError(f"{source} is not a Pose Guider checkpoint: it has no {error.args[0]}") from error
    with torch.device("meta"):
        pose_guider = PoseGuider(embedding_channels, conditioning_channels, tuple(channels))
    load_exactly(pose_guider, state_dict, source)
    return pose_guider


def motion_adapter_from_state_dict(
    state_dict: StateDict, block_out_channels: tuple[int, ...], num_attention_heads: int, source: str | os.PathLike
) -> MotionAdapter:
    """AnimateDiff-format motion modules -> a diffusers MotionAdapter, with the position encodings checked."""
    position_keys = [key for key in state_dict if key.endswith("pos_encoder.pe")]
    if not position_keys:
        raise CheckpointError(f"{source} has no temporal position encoding (pos_encoder.pe); not a v2 motion module")
    max_frames = state_dict[position_keys[0]].shape[1]
    layers_per_block = 1 + max(
        int(match.group(1))
        for key in state_dict
        if (match := re.match(r"down_blocks\.0\.motion_modules\.(\d+)\.", key))
    )
    with torch.device("meta"):
        adapter = MotionAdapter(
            block_out_channels=tuple(block_out_channels),
            motion_layers_per_block=layers_per_block,
            motion_num_attention_heads=num_attention_heads,
            motion_max_seq_length=max_frames,
            use_motion_mid_block=any(key.startswith("mid_block.") for key in state_dict),
        )
    converted = convert_animatediff_checkpoint_to_diffusers(state_dict)
    # The converter drops the `pos_encoder.pe` tables (diffusers rebuilds them). We check they are the sinusoid
    # diffusers builds and load them, so that every key of the file is accounted for.
    for key in position_keys:
        table = state_dict[key]
        if not torch.allclose(table.float(), sinusoidal_position_encoding(table.shape[1], table.shape[2]), atol=1e-5):
            raise CheckpointError(f"{source}: {key} is not the sinusoidal position encoding this model supports")
        block_key = re.sub(r"\.attention_blocks\.\d+\.pos_encoder\.pe$", ".pos_embed.pe", key)
        converted[block_key.replace(".temporal_transformer", "")] = table
    load_exactly(adapter, converted, source)
    return adapter


def read_unet_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Missing UNet config {path}. {DOWNLOAD_HINT}")
    return json.loads(path.read_text())


def build_released_unets(
    unet_config: dict,
    reference_state: StateDict,
    denoising_state: StateDict,
    motion_state: StateDict | None,
    folder: Path,
    motion_num_attention_heads: int = 8,
) -> tuple[UNet2DConditionModel, UNetMotionModel | UNet2DConditionModel]:
    """ReferenceNet and the denoising UNet from released state dicts (no motion state: the stage-1 2D UNet)."""
    with torch.device("meta"):
        reference_unet = UNet2DConditionModel.from_config(unet_config)
    # conv_norm_out / conv_out are absent by design; they only shape ReferenceNet's discarded output.
    reference_state = dict(reference_state)
    for key in REFERENCE_UNET_UNUSED:
        shape = reference_unet.state_dict()[key].shape
        reference_state[key] = torch.ones(shape) if key == "conv_norm_out.weight" else torch.zeros(shape)
    load_exactly(reference_unet, reference_state, folder / "reference_unet.pth")

    with torch.device("meta"):
        unet_2d = UNet2DConditionModel.from_config(unet_config)
    if motion_state is None:
        load_exactly(unet_2d, denoising_state, folder / "denoising_unet.pth")
        return reference_unet, unet_2d
    check_keys(denoising_state, {k: v.shape for k, v in unet_2d.state_dict().items()}, folder / "denoising_unet.pth")
    adapter = motion_adapter_from_state_dict(
        motion_state, unet_config["block_out_channels"], motion_num_attention_heads, folder / "motion_module.pth"
    )
    motion_modules_state = adapter.state_dict()  # taken first: from_unet2d moves the adapter to the meta device
    with torch.device("meta"):
        denoising_unet = UNetMotionModel.from_unet2d(unet_2d, adapter, load_weights=False)
    load_exactly(denoising_unet, {**denoising_state, **motion_modules_state}, folder / "motion_module.pth")
    return reference_unet, denoising_unet


def load_released_pipeline(
    weights_dir: str | os.PathLike,
    profile: str = "animate_anyone",
    torch_dtype: torch.dtype = torch.float32,
    motion: bool = True,
) -> AnimateAnyonePipeline:
    """An `AnimateAnyonePipeline` from a folder in the released layout (see the module docstring).

    `motion=False` skips motion_module.pth and returns the image (stage-1) model. The released weights are fp32;
    `torch_dtype` casts everything once here.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    settings = PROFILES[profile]
    weights_dir = Path(weights_dir)
    folder = weights_dir / settings.subfolder
    unet_config = read_unet_config(weights_dir / "stable-diffusion-v1-5" / "unet" / "config.json")
    reference_state = read_state_dict(folder / "reference_unet.pth")
    denoising_state = read_state_dict(folder / "denoising_unet.pth")
    motion_state = read_state_dict(folder / "motion_module.pth") if motion else None
    reference_unet, denoising_unet = build_released_unets(
        unet_config, reference_state, denoising_state, motion_state, folder, settings.motion_num_attention_heads
    )
    pose_guider = pose_guider_from_state_dict(read_state_dict(folder / "pose_guider.pth"), folder / "pose_guider.pth")
    vae = _from_pretrained_exactly(AutoencoderKL, weights_dir / "sd-vae-ft-mse")
    image_encoder = _from_pretrained_exactly(CLIPVisionModelWithProjection, weights_dir / "image_encoder")
    image_size = image_encoder.config.image_size
    pipeline = AnimateAnyonePipeline(
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=DDIMScheduler(**settings.scheduler),
        feature_extractor=clip_processor(image_size),
    )
    return pipeline.to(dtype=torch_dtype)


def _from_pretrained_exactly(model_class, folder: Path):
    """`from_pretrained` that fails on missing or unexpected weights instead of initialising them randomly."""
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"Missing model folder {folder} (no config.json). {DOWNLOAD_HINT}")
    use_safetensors = any(folder.glob("*.safetensors"))  # else .bin, read with weights_only=True by both libraries
    model, info = model_class.from_pretrained(folder, output_loading_info=True, use_safetensors=use_safetensors)
    problems = {
        what: keys for what in ("missing_keys", "unexpected_keys", "mismatched_keys") if (keys := info.get(what))
    }
    if problems:
        raise CheckpointError(f"{folder} does not match {model_class.__name__}: {problems}")
    return model.eval()


def released_state_dicts(pipeline: AnimateAnyonePipeline) -> dict[str, StateDict]:
    """Our pipeline's weights in the released format (file name -> state dict), for other tools to load.

    The denoising UNet without motion modules (stage 1) gives no motion_module.pth.
    """
    unet_state = pipeline.denoising_unet.state_dict()
    denoising = {key: value for key, value in unet_state.items() if ".motion_modules." not in key}
    reference = {k: v for k, v in pipeline.reference_unet.state_dict().items() if k not in REFERENCE_UNET_UNUSED}
    files = {
        "denoising_unet.pth": denoising,
        "reference_unet.pth": reference,
        "pose_guider.pth": dict(pipeline.pose_guider.state_dict()),
    }
    if isinstance(pipeline.denoising_unet, UNetMotionModel):
        files["motion_module.pth"] = {
            released_key: value
            for key, value in pipeline.denoising_unet.state_dict().items()
            if ".motion_modules." in key
            for released_key in _animatediff_keys(key)
        }
    return {name: {key: value.detach() for key, value in state.items()} for name, state in files.items()}


def _animatediff_keys(key: str) -> list[str]:
    """The AnimateDiff names of a diffusers motion-module key (the inverse of diffusers' converter); a block's
    shared `pos_embed.pe` is stored once per attention block, as AnimateDiff does."""
    prefix, rest = re.match(r"(.*?\.motion_modules\.\d+)\.(.*)", key).groups()
    if rest.endswith("pos_embed.pe"):
        block = rest.removesuffix("pos_embed.pe")
        return [f"{prefix}.temporal_transformer.{block}attention_blocks.{i}.pos_encoder.pe" for i in (0, 1)]
    for ours, theirs in ((".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."),
                         (".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm.")):  # fmt: skip
        rest = rest.replace(ours, theirs)
    return [f"{prefix}.temporal_transformer.{rest}"]


def save_released_format(pipeline: AnimateAnyonePipeline, folder: str | os.PathLike) -> list[Path]:
    """Writes the released `.pth` files (atomically, one by one) and returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, state in released_state_dicts(pipeline).items():
        partial = folder / f".{name}.partial"
        torch.save({key: value.float().cpu().contiguous() for key, value in state.items()}, partial)  # released: fp32
        os.replace(partial, folder / name)
        written.append(folder / name)
    return written
