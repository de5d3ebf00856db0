"""The built-in model as committed in weights/tiny: it loads, it animates a held-out puppet better than copying the
reference, and damaged files give an error that says how to repair them."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import animate.engines.animate_anyone
from animate.checkpoints import CheckpointError
from animate.eval import held_out_clips, score
from animate.generate import load_model, model_defaults
from animate.weights import WEIGHTS_DIR

BUILTIN = WEIGHTS_DIR / "tiny"


def test_shipped_weights_animate_a_held_out_puppet_better_than_the_copied_reference():
    pipeline, files = load_model(BUILTIN, torch.float32)
    assert {path.parent.name for path in files} >= {"denoising_unet", "reference_unet", "pose_guider", "vae"}
    defaults = model_defaults(BUILTIN)
    clip = held_out_clips(1, 8, 128, 192, seed=0)[0]
    frames = pipeline(
        clip.reference,
        list(clip.skeletons),
        height=192,
        width=128,
        num_inference_steps=defaults["steps"],
        guidance_scale=defaults["guidance"],
        generator=torch.Generator().manual_seed(0),
    ).frames
    copied = np.repeat(clip.reference[None].astype(np.float32) / 255, len(clip.frames), axis=0)
    model, baseline = score(frames, clip), score(copied, clip)
    print(f"character PSNR: model {model.character_psnr:.2f} dB, copied reference {baseline.character_psnr:.2f} dB")
    assert model.character_psnr > baseline.character_psnr


@pytest.fixture
def builtin_copy(tmp_path, monkeypatch):
    """A copy of the built-in model where the code looks for it, to damage."""
    folder = tmp_path / "tiny"
    shutil.copytree(BUILTIN, folder, ignore=shutil.ignore_patterns("examples"))
    monkeypatch.setattr(animate.engines.animate_anyone, "WEIGHTS_DIR", tmp_path)
    return folder


def test_weights_of_the_wrong_shape_name_the_problem_and_the_repair(builtin_copy):
    path = builtin_copy / "pose_guider" / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    name = next(name for name, tensor in weights.items() if tensor.ndim == 4)
    weights[name] = torch.zeros(1, *weights[name].shape[1:])
    save_file(weights, path)
    with pytest.raises(CheckpointError, match=rf"{name} expected shape .*git checkout weights/tiny"):
        load_model(builtin_copy, torch.float32)


def test_a_missing_weights_file_names_the_folder_and_the_repair(builtin_copy):
    (builtin_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete .*no file named diffusion_pytorch_model.safetensors .*vae"):
        load_model(builtin_copy, torch.float32)
