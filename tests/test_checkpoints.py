"""Loading the released checkpoint format: every key accounted for, at full size and on the tiny fixture."""

import json
import os
import re
import shutil

import pytest
import torch

from animate.architecture import SD15_UNET, build_pipeline
from animate.checkpoints import (
    CheckpointError,
    build_released_unets,
    load_released_pipeline,
    pose_guider_from_state_dict,
    read_state_dict,
    released_state_dicts,
    save_released_format,
)
from animate.unet import sinusoidal_position_encoding


@pytest.fixture(scope="module")
def manifest(reference_dir) -> dict:
    return json.loads((reference_dir / "moore_checkpoint_keys.json").read_text())


def meta_state_dict(entry: dict) -> dict[str, torch.Tensor]:
    """Tensors of the manifest's shapes on the meta device; the position-encoding tables are real (we check them)."""
    state = {}
    for key, shape in entry["keys"]:
        if key.endswith("pos_encoder.pe"):
            state[key] = sinusoidal_position_encoding(shape[1], shape[2])
        else:
            state[key] = torch.empty(shape, device="meta")
    return state


def test_full_size_model_accepts_exactly_the_released_keys_and_shapes(manifest, tmp_path):
    assert manifest["_about"]["sd15_unet_config"]["block_out_channels"] == SD15_UNET["block_out_channels"]
    reference_unet, denoising_unet = build_released_unets(
        manifest["_about"]["sd15_unet_config"],
        meta_state_dict(manifest["reference_unet.pth"]),
        meta_state_dict(manifest["denoising_unet.pth"]),
        meta_state_dict(manifest["motion_module.pth"]),
        tmp_path,
    )
    pose_guider = pose_guider_from_state_dict(meta_state_dict(manifest["pose_guider.pth"]), "pose_guider.pth")
    assert tuple(pose_guider.config.block_out_channels) == (16, 32, 96, 256)
    assert pose_guider.config.conditioning_embedding_channels == 320
    assert denoising_unet.config.motion_max_seq_length == 32
    motion_norms = [key for key in denoising_unet.state_dict() if re.search(r"motion_modules\.\d+\.norm\.weight", key)]
    assert len(motion_norms) == 21
    # Every tensor of the model came from the files. The released motion file stores each transformer block's
    # position table twice (once per attention block); the model holds it once.
    tables = [shape for key, shape in manifest["motion_module.pth"]["keys"] if key.endswith("pos_encoder.pe")]
    duplicated = sum(shape[1] * shape[2] for shape in tables) // 2
    released = manifest["denoising_unet.pth"]["num_elements"] + manifest["motion_module.pth"]["num_elements"]
    assert sum(tensor.numel() for tensor in denoising_unet.state_dict().values()) == released - duplicated
    assert sum(t.numel() for t in reference_unet.state_dict().values()) > manifest["reference_unet.pth"]["num_elements"]


def test_full_size_model_round_trips_to_the_released_key_names(manifest):
    """What training exports (`save_released_format`) has exactly the released files' keys and shapes."""
    pipeline = build_pipeline("sd15", device="meta")
    state = released_state_dicts(pipeline)
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth"):
        expected = {key: tuple(shape) for key, shape in manifest[name]["keys"]}
        assert {key: tuple(value.shape) for key, value in state[name].items()} == expected, name


def rewrite(path, state: dict) -> None:
    """Replaces a weight file atomically: writing over a memory-mapped file in place would pull the pages out
    from under the mapping (our own writers always replace files this way too)."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


@pytest.fixture
def weights_copy(reference_dir, tmp_path):
    """A writable copy of the fixture's released-format weights folder."""
    folder = tmp_path / "weights"
    shutil.copytree(reference_dir / "moore_tiny" / "pretrained_weights", folder)
    return folder


def test_missing_motion_module_is_an_error_naming_the_file(weights_copy):
    (weights_copy / "motion_module.pth").unlink()
    with pytest.raises(CheckpointError, match=r"Missing weight file .*motion_module\.pth.*animate\.weights download"):
        load_released_pipeline(weights_copy)


def test_stray_key_is_an_error_naming_file_and_key(weights_copy):
    state = read_state_dict(weights_copy / "denoising_unet.pth")
    state["conv_in.extra"] = torch.zeros(3)
    rewrite(weights_copy / "denoising_unet.pth", state)
    with pytest.raises(CheckpointError, match=r"denoising_unet\.pth does not match.*1 unexpected: conv_in\.extra"):
        load_released_pipeline(weights_copy)


def test_missing_motion_key_is_an_error_naming_file_and_key(weights_copy):
    state = read_state_dict(weights_copy / "motion_module.pth")
    key = "up_blocks.3.motion_modules.2.temporal_transformer.proj_out.weight"
    del state[key]
    rewrite(weights_copy / "motion_module.pth", state)
    message = r"motion_module\.pth does not match.*1 missing: up_blocks\.3\.motion_modules\.2\.proj_out\.weight"
    with pytest.raises(CheckpointError, match=message):
        load_released_pipeline(weights_copy)


def test_misshapen_key_is_an_error_with_both_shapes(weights_copy):
    state = read_state_dict(weights_copy / "reference_unet.pth")
    state["conv_in.weight"] = torch.zeros(32, 4, 1, 1)
    rewrite(weights_copy / "reference_unet.pth", state)
    message = r"reference_unet\.pth.*conv_in\.weight \(32, 4, 1, 1\) \(expected \(32, 4, 3, 3\)\)"
    with pytest.raises(CheckpointError, match=message):
        load_released_pipeline(weights_copy)


def test_truncated_file_is_a_clear_error(weights_copy):
    path = weights_copy / "pose_guider.pth"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"Cannot read .*pose_guider\.pth.*download it again"):
        load_released_pipeline(weights_copy)


def test_non_sinusoidal_position_encoding_is_rejected(weights_copy):
    state = read_state_dict(weights_copy / "motion_module.pth")
    key = next(key for key in state if key.endswith("pos_encoder.pe"))
    state[key] = state[key] + 1
    rewrite(weights_copy / "motion_module.pth", state)
    with pytest.raises(CheckpointError, match="not the sinusoidal position encoding"):
        load_released_pipeline(weights_copy)


def test_pose_guider_channels_are_read_off_the_checkpoint():
    """The (16, 32, 64, 128) variant loads as well as the released (16, 32, 96, 256)."""
    from animate.pose_guider import PoseGuider

    state = PoseGuider(320, block_out_channels=(16, 32, 64, 128)).state_dict()
    assert tuple(pose_guider_from_state_dict(state, "variant.pth").config.block_out_channels) == (16, 32, 64, 128)


def test_export_to_released_format_reloads_identically(reference_dir, tmp_path):
    """Our pipeline -> released .pth files -> our loader gives the same weights (what training exports use)."""
    source = reference_dir / "moore_tiny" / "pretrained_weights"
    pipeline = load_released_pipeline(source)
    folder = tmp_path / "exported"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.pth"))
    save_released_format(pipeline, folder)
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth"):
        original, exported = read_state_dict(source / name), read_state_dict(folder / name)
        assert sorted(original) == sorted(exported), name
        assert all(torch.equal(original[key], exported[key]) for key in original), name
    assert not list(folder.glob(".*partial"))


def test_stage_one_model_loads_without_motion_modules(reference_dir):
    from diffusers import UNet2DConditionModel

    pipeline = load_released_pipeline(reference_dir / "moore_tiny" / "pretrained_weights", motion=False)
    assert type(pipeline.denoising_unet) is UNet2DConditionModel
