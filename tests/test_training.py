"""Training both stages on tiny components and puppets, on the CPU: what trains, checkpoints and exact resume,
exports that load, data parallelism, monitoring, and the config and command line.

Every process runs one thread: on two shared cores, OpenMP threads spinning against other jobs make a tiny model's
step ten times slower.
"""

import dataclasses
import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from accelerate import Accelerator
from diffusers import DDIMScheduler, UNetMotionModel
from PIL import Image

from animate.checkpoints import ANIMATE_ANYONE_SCHEDULER, load_released_pipeline
from animate.pipeline import AnimateAnyonePipeline
from animate.training.__main__ import main
from animate.training.config import CONFIGS_DIR, TrainConfig, load_config
from animate.training.dataset import make_samples
from animate.training.objective import (
    AnimateAnyoneTrainingModel,
    diffusion_loss,
    prediction_error,
    seeded_generator,
    trainable_parameters,
)
from animate.training.train import (
    batch_indices,
    latest_checkpoint,
    load_pipeline,
    train,
    validate,
)
from animate.weights import list_models
from conftest import ROOT
from pose.video import probe_video

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(root: Path, preset: str = "tiny_stage1", **changes) -> TrainConfig:
    """A tiny preset writing under `root`, with `changes`."""
    config = load_config(preset)
    return dataclasses.replace(config, output_dir=str(root / "runs"), export_dir=str(root / "trained"), **changes)


def cli(root: Path, stage: int, *overrides: str) -> list[str]:
    return [
        sys.executable, "-m", "animate.training", "--stage", str(stage), "--config", f"tiny_stage{stage}",
        f"--output_dir={root / 'runs'}", f"--export_dir={root / 'trained'}", *overrides,
    ]  # fmt: skip


def records(run_dir: Path, key: str) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {record["step"]: record[key] for record in map(json.loads, lines) if key in record}


def batch_of(samples, indices) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([samples[index] for index in indices])


def generate(pipeline: AnimateAnyonePipeline, frames: int) -> np.ndarray:
    reference = np.zeros((64, 64, 3), np.uint8)
    reference[8:56, 24:40] = (200, 120, 40)
    poses = [np.roll(reference, 4 * index, axis=1) for index in range(frames)]
    pipeline.set_progress_bar_config(disable=True)
    output = pipeline(reference, poses, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    return output.frames


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> tuple[TrainConfig, AnimateAnyonePipeline]:
    config = tiny(
        tmp_path_factory.mktemp("stage1"), run_name="s1", max_steps=4, checkpoint_every=2, keep_checkpoints=1,
        log_every=1, validate_every=2, validation_samples=1, validation_inference_steps=2, lr_warmup_steps=2,
        lr_decay_steps=2,
    )  # fmt: skip
    return config, train(config)


@pytest.fixture(scope="module")
def stage2(stage1, tmp_path_factory) -> tuple[TrainConfig, AnimateAnyonePipeline]:
    config = tiny(
        tmp_path_factory.mktemp("stage2"), "tiny_stage2", run_name="s2", init_from=str(stage1[0].export_path),
        num_frames=4, max_steps=2, log_every=1, validate_every=2, validation_inference_steps=2,
    )  # fmt: skip
    return config, train(config)


def test_stage1_writes_rotated_checkpoints_metrics_samples_and_an_export_the_app_lists(stage1):
    config, _ = stage1
    run_dir = config.run_dir
    assert [folder.name for folder in (run_dir / "checkpoints").iterdir()] == ["checkpoint-00000004"]  # keep 1
    checkpoint = run_dir / "checkpoints" / "checkpoint-00000004"
    assert json.loads((checkpoint / "training_state.json").read_text())["step"] == 4
    optimizer_state = torch.load(checkpoint / "optimizer.bin", weights_only=False)
    assert {int(state["step"]) for state in optimizer_state["state"].values()} == {4}
    losses = records(run_dir, "loss")
    assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(list(losses.values())))
    assert sorted(records(run_dir, "val_loss")) == [0, 2, 4]
    assert {"lr", "step_time", "samples_per_s"} <= set(
        json.loads((run_dir / "metrics.jsonl").read_text().split("\n")[1])
    )
    rate = config.learning_rate
    assert records(run_dir, "lr") == pytest.approx({1: rate / 2, 2: rate, 3: rate, 4: rate / 2})  # warm-up, decay
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert sorted(path.name for path in (run_dir / "samples").iterdir()) == [
        f"step{step:07d}-sample0.png" for step in (0, 2, 4)
    ]
    export = config.export_path
    assert json.loads((export / "training.json").read_text())["step"] == 4
    assert json.loads((export / "training.json").read_text())["config"]["run_name"] == "s1"
    trained = list_models(Path(config.export_dir).parent)
    assert any(model.name == "trained/s1" and model.path == export for model in trained)
    assert not list(Path(config.export_dir).parent.glob(".*partial*"))  # staging cleaned up


def test_stage1_export_loads_in_both_formats_with_the_training_scheduler(stage1):
    config, trained = stage1
    ours = AnimateAnyonePipeline.from_pretrained(config.export_path)
    released = load_released_pipeline(config.export_path / "released", motion=False)
    for name in ("reference_unet", "denoising_unet", "pose_guider"):
        expected = getattr(trained, name).state_dict()
        for loaded in (ours, released):
            state = getattr(loaded, name).state_dict()
            keys = state.keys() - {"conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias"}
            assert all(torch.equal(state[key], expected[key].cpu()) for key in keys), name
    training_scheduler = DDIMScheduler(**{**ANIMATE_ANYONE_SCHEDULER, "beta_schedule": config.beta_schedule})
    assert torch.equal(ours.scheduler.alphas_cumprod, training_scheduler.alphas_cumprod)
    assert ours.scheduler.config.prediction_type == "v_prediction" and ours.scheduler.alphas_cumprod[-1] == 0
    frames = generate(ours, 2)
    assert frames.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(generate(released, 2), frames, atol=1e-4)


def test_the_export_keeps_the_betas_it_was_trained_with(tmp_path):
    config = tiny(tmp_path, beta_schedule="scaled_linear", max_steps=1, validate_every=0)
    train(config)
    scheduler = AnimateAnyonePipeline.from_pretrained(config.export_path).scheduler
    expected = DDIMScheduler(**{**ANIMATE_ANYONE_SCHEDULER, "beta_schedule": "scaled_linear"})
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert torch.equal(scheduler.alphas_cumprod, expected.alphas_cumprod)


def test_stage2_trains_only_the_motion_modules_and_exports_both_formats(stage1, stage2):
    config, trained = stage2
    before = AnimateAnyonePipeline.from_pretrained(stage1[0].export_path)
    after = AnimateAnyonePipeline.from_pretrained(config.export_path)
    assert isinstance(after.denoising_unet, UNetMotionModel)
    for name in ("vae", "image_encoder", "reference_unet", "pose_guider", "denoising_unet"):
        old, new = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(new[key], value) for key, value in old.items()), f"{name} changed in stage 2"
    motion = {key: value for key, value in after.denoising_unet.state_dict().items() if "motion_modules." in key}
    initial_output = [value for key, value in motion.items() if key.endswith("proj_out.weight")]
    assert initial_output and all(value.abs().sum() > 0 for value in initial_output)  # trained from zero
    released = load_released_pipeline(config.export_path / "released")
    assert isinstance(released.denoising_unet, UNetMotionModel)
    np.testing.assert_allclose(generate(released, 4), generate(after, 4), atol=1e-4)
    assert probe_video(config.run_dir / "samples" / "step0000002-sample0.mp4").num_frames == 4


def make_model(config: TrainConfig) -> tuple[Accelerator, AnimateAnyonePipeline, AnimateAnyoneTrainingModel]:
    pipeline = load_pipeline(config)
    trainable_parameters(pipeline, config.stage)
    return Accelerator(mixed_precision="no"), pipeline, AnimateAnyoneTrainingModel(pipeline)


def gradients(config: TrainConfig, model, accelerator, pipeline, batch) -> dict[str, torch.Tensor]:
    loss = diffusion_loss(accelerator, model, pipeline, batch, seeded_generator(0, 1), config)
    loss.backward()
    pipeline.reference_features.clear()
    modules = {name: module for name, module in pipeline.components.items() if isinstance(module, torch.nn.Module)}
    return {
        f"{component}.{name}": parameter.grad
        for component, module in modules.items()
        for name, parameter in module.named_parameters()
        if parameter.grad is not None
    }


def test_stage1_gradients_reach_exactly_referencenet_but_its_last_up_block_the_unet_and_the_pose_guider(tmp_path):
    config = tiny(tmp_path, uncond_ratio=0.0)  # every sample reads the reference
    accelerator, pipeline, model = make_model(config)
    with torch.no_grad():  # as after some training: a new Pose Guider's output conv is zero
        pipeline.pose_guider.conv_out.weight.normal_(std=0.1)
    batch = batch_of(make_samples("puppets", 1, 64, 64), [0, 1])
    found = gradients(config, model, accelerator, pipeline, batch)
    last_up_block = f"up_blocks.{len(pipeline.reference_unet.up_blocks) - 1}."
    unused = (last_up_block, "conv_norm_out.", "conv_out.")
    expected = {
        f"{component}.{name}"
        for component in ("reference_unet", "denoising_unet", "pose_guider")
        for name, _ in getattr(pipeline, component).named_parameters()
        if component != "reference_unet" or not name.startswith(unused)
    }
    assert set(found) == expected
    assert all(gradient.abs().sum() > 0 for gradient in found.values())


def test_stage2_gradients_reach_only_the_motion_modules(stage1, tmp_path):
    config = tiny(tmp_path, "tiny_stage2", init_from=str(stage1[0].export_path), num_frames=4, uncond_ratio=0.0)
    accelerator, pipeline, model = make_model(config)
    with torch.no_grad():  # as after some training: new motion modules have zero output projections
        for name, parameter in pipeline.denoising_unet.named_parameters():
            if "motion_modules." in name and "proj_out" in name:
                parameter.normal_(std=0.1)
    batch = batch_of(make_samples("puppets", 4, 64, 64), [0])
    found = gradients(config, model, accelerator, pipeline, batch)
    motion = {
        f"denoising_unet.{name}" for name, _ in pipeline.denoising_unet.named_parameters() if "motion_modules." in name
    }
    assert set(found) == motion
    assert all(gradient.abs().sum() > 0 for gradient in found.values())


def test_gradient_checkpointing_gives_the_same_gradients_and_the_reference_bank_does_not_grow(tmp_path):
    config = tiny(tmp_path, uncond_ratio=0.0)
    batch = batch_of(make_samples("puppets", 1, 64, 64), [0, 1])
    results = {}
    for checkpointing in (False, True):
        accelerator, pipeline, model = make_model(config)
        if checkpointing:
            pipeline.reference_unet.enable_gradient_checkpointing()
            pipeline.denoising_unet.enable_gradient_checkpointing()
        loss = diffusion_loss(accelerator, model, pipeline, batch, seeded_generator(0, 1), config)
        bank = dict(pipeline.reference_features.features)
        loss.backward()
        after = pipeline.reference_features.features
        assert after.keys() == bank.keys()  # assigned by name, never appended
        # Recomputation really happened: the writers ran again and replaced their entries.
        assert all((after[name] is bank[name]) != checkpointing for name in bank)
        pipeline.reference_features.clear()
        results[checkpointing] = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert results[True].keys() == results[False].keys()
    reference = [name for name in results[True] if name.startswith("reference_unet.")]
    assert reference and all(results[True][name].abs().sum() > 0 for name in reference)
    for name, gradient in results[False].items():
        torch.testing.assert_close(results[True][name], gradient, rtol=1e-5, atol=1e-7)


def test_both_training_branches_are_the_predictions_inference_makes(tmp_path):
    """The unconditional drop is inference's CFG branch: zero image embedding, no reference attention, but the pose."""
    config = tiny(tmp_path)
    accelerator, pipeline, model = make_model(config)
    torch.nn.init.normal_(pipeline.pose_guider.conv_out.weight, std=1.0)  # fresh ones add nothing: let the pose show
    sample = make_samples("puppets", 1, 64, 64)[0]
    reference = ((sample["reference"].permute(1, 2, 0) / 2 + 0.5) * 255).round().byte().numpy()
    pose = (sample["poses"][0].permute(1, 2, 0) * 255).round().byte().numpy()
    latents = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    timestep = torch.tensor([500])
    with torch.no_grad():
        image_embeds = pipeline.encode_reference_image(Image.fromarray(reference), "squash")
        reference_latents = pipeline.encode_reference_latents(Image.fromarray(reference), 64, 64)
        pipeline.reference_unet(reference_latents, 0, encoder_hidden_states=image_embeds)
        pipeline.reference_features.reading = torch.tensor([False, True])
        context = torch.cat([torch.zeros_like(image_embeds), image_embeds])
        # guidance 0 and 1 return the unconditional and the conditional prediction of the pipeline's CFG batch
        inference = {
            scale: pipeline.predict_window(latents, timestep[0], context, [pose], [0], 64, 64, scale)
            for scale in (0.0, 1.0)
        }
        pipeline.reference_features.clear()
        poses = torch.from_numpy(pose).permute(2, 0, 1)[None, None].float() / 255
        for reading, scale in ((False, 0.0), (True, 1.0)):
            training = model(latents, timestep, reference_latents, image_embeds, poses, torch.tensor([reading]))
            pipeline.reference_features.clear()
            torch.testing.assert_close(training, inference[scale], rtol=1e-4, atol=1e-5)
        other_reference = model(latents, timestep, -reference_latents, image_embeds * 2, poses, torch.tensor([False]))
        other_pose = model(latents, timestep, reference_latents, image_embeds, 1 - poses, torch.tensor([False]))
        pipeline.reference_features.clear()
    torch.testing.assert_close(other_reference, inference[0.0], rtol=1e-4, atol=1e-5)  # the reference is unseen
    assert (other_pose - inference[0.0]).abs().max() > 1e-3  # the pose is not


def test_training_timesteps_start_at_min_timestep(tmp_path):
    config = tiny(tmp_path, batch_size=8)
    accelerator, pipeline, model = make_model(config)
    batch = batch_of(make_samples("puppets", 8, 64, 64), range(8))
    drawn = {}
    for low in (0, 900):
        seen = []

        def recording(noisy_latents, timesteps, *inputs, seen=seen):
            seen.extend(timesteps.tolist())
            return model(noisy_latents, timesteps, *inputs)

        with torch.no_grad():
            for step in range(4):
                generator = seeded_generator(0, step)
                diffusion_loss(
                    accelerator, recording, pipeline, batch, generator, dataclasses.replace(config, min_timestep=low)
                )
                pipeline.reference_features.clear()
        drawn[low] = seen
    assert min(drawn[0]) < 900 and max(drawn[0]) < 1000  # 32 uniform draws: P(all >= 900) = 0.1 ** 32
    assert len(drawn[900]) == 32 and all(900 <= timestep < 1000 for timestep in drawn[900])
    with pytest.raises(ValueError, match="min_timestep=1000"):
        TrainConfig(min_timestep=1000)


def test_the_temporal_loss_charges_only_errors_that_change_between_frames():
    target = torch.randn(2, 4, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    steady = target + 0.5  # the same error in every frame
    flickering = target + 0.5 * torch.tensor([1.0, -1.0] * 3)[:, None, None]  # as large, but alternating
    for prediction in (steady, flickering):
        torch.testing.assert_close(prediction_error(prediction, target, 0.0), torch.full((2,), 0.25))
    torch.testing.assert_close(prediction_error(steady, target, 2.0), torch.full((2,), 0.25))
    torch.testing.assert_close(prediction_error(flickering, target, 2.0), torch.full((2,), 0.25 + 2.0 * 1.0))
    one_frame = flickering[:, :, :1]
    torch.testing.assert_close(prediction_error(one_frame, target[:, :, :1], 2.0), torch.full((2,), 0.25))


def test_new_motion_modules_start_exactly_at_the_stage1_model(stage1, tmp_path):
    config = tiny(tmp_path, "tiny_stage2", init_from=str(stage1[0].export_path), num_frames=4)
    _, stage2_pipeline, stage2_model = make_model(config)
    _, _, stage1_model = make_model(dataclasses.replace(config, stage=1, num_frames=1))
    batch = batch_of(make_samples("puppets", 4, 64, 64), [0])
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    inputs = (torch.randn(1, 4, 8, 8), torch.randn(1, 1, 32), batch["poses"], torch.tensor([True]))
    with torch.no_grad():
        video = stage2_model(latents, torch.tensor([300]), *inputs)
        stage2_pipeline.reference_features.clear()
        # the stage-1 model, frame by frame
        frames = [
            stage1_model(latents[:, :, [i]], torch.tensor([300]), *inputs[:2], inputs[2][:, [i]], inputs[3])
            for i in range(4)
        ]
    torch.testing.assert_close(video, torch.cat(frames, dim=2), rtol=1e-4, atol=1e-5)


def test_training_on_one_clip_lowers_the_fixed_noise_loss_clearly(tmp_path):
    config = tiny(
        tmp_path, num_samples=1, learning_rate=1e-3, max_steps=100, validate_every=100, validation_samples=1,
        validation_inference_steps=1, log_every=50,
    )  # fmt: skip
    train(config)
    validation = records(config.run_dir, "val_loss")  # the one clip at fixed noise and timesteps
    print(f"fixed-noise loss on the clip: {validation[0]:.4f} at step 0, {validation[100]:.4f} at step 100")
    assert validation[100] < 0.7 * validation[0]


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path):
    steps = {"max_steps": 10, "checkpoint_every": 3, "log_every": 1, "validate_every": 0}
    train(tiny(tmp_path, run_name="whole", **steps))
    killed = tiny(tmp_path, run_name="killed", **steps)
    overrides = ["--run_name=killed", *(f"--{name}={value}" for name, value in steps.items())]
    process = subprocess.Popen(
        cli(tmp_path, 1, *overrides), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    while not (killed.run_dir / "metrics.jsonl").is_file() or len(records(killed.run_dir, "loss")) < 5:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(records(killed.run_dir, "loss")) < 10  # killed mid-run, after the checkpoint of step 3
    assert latest_checkpoint(killed.run_dir / "checkpoints") is not None
    train(killed)  # picks up from the newest checkpoint
    whole, resumed = records(tmp_path / "runs" / "whole", "loss"), records(killed.run_dir, "loss")
    assert list(resumed) == list(range(1, 11))
    assert resumed == whole  # bit for bit
    exports = [AnimateAnyonePipeline.from_pretrained(tmp_path / "trained" / name) for name in ("whole", "killed")]
    for name in ("reference_unet", "denoising_unet", "pose_guider"):
        old, new = (getattr(export, name).state_dict() for export in exports)
        assert all(torch.equal(new[key], value) for key, value in old.items())


def test_resume_takes_the_newest_complete_checkpoint_and_clears_interrupted_writes(stage1, tmp_path):
    config = stage1[0]
    copy = tmp_path / "runs" / config.run_name
    shutil.copytree(config.run_dir, copy)
    checkpoints = copy / "checkpoints"
    (checkpoints / ".partial-00000006").mkdir()  # killed while writing
    (checkpoints / ".partial-00000006" / "model.safetensors").write_bytes(b"torn")
    (checkpoints / "checkpoint-00000005").mkdir()  # not complete: no training_state.json
    (checkpoints / "checkpoint-00000005" / "model.safetensors").write_bytes(b"torn")
    assert latest_checkpoint(checkpoints).name == "checkpoint-00000004"
    train(
        dataclasses.replace(
            config, output_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "trained"), max_steps=5
        )
    )
    assert sorted(records(copy, "loss")) == [1, 2, 3, 4, 5]
    assert not (checkpoints / ".partial-00000006").exists()
    assert latest_checkpoint(checkpoints).name == "checkpoint-00000005"
    assert json.loads((latest_checkpoint(checkpoints) / "training_state.json").read_text())["step"] == 5


def test_a_run_with_checkpoints_is_not_restarted_silently(stage1, tmp_path):
    with pytest.raises(ValueError, match="resume=true"):
        train(dataclasses.replace(stage1[0], resume=False, max_steps=6))


def test_batches_are_a_pure_function_of_step_rank_and_micro_step():
    config = TrainConfig(batch_size=2, gradient_accumulation_steps=3)
    stream = batch_indices(config, 0, rank=1, world=2)
    from_start = [next(stream) for _ in range(5 * 3)]
    resumed = batch_indices(config, 4, rank=1, world=2)
    assert [next(resumed) for _ in range(3)] == from_start[12:]
    other_rank = batch_indices(config, 0, rank=0, world=2)
    seen = [index for batch in from_start + [next(other_rank) for _ in range(15)] for index in batch]
    assert len(seen) == len(set(seen))  # no sample twice, across ranks, steps and micro-steps
    assert torch.equal(
        torch.randn(3, generator=seeded_generator(0, 5, 1, 2)), torch.randn(3, generator=seeded_generator(0, 5, 1, 2))
    )
    assert not torch.equal(
        torch.randn(3, generator=seeded_generator(0, 5, 1, 2)), torch.randn(3, generator=seeded_generator(0, 5, 1, 1))
    )


def test_gradient_accumulation_steps_the_optimizer_once_per_step(tmp_path):
    config = tiny(tmp_path, batch_size=1, gradient_accumulation_steps=2, max_steps=2, validate_every=0)
    train(config)
    optimizer_state = torch.load(
        latest_checkpoint(config.run_dir / "checkpoints") / "optimizer.bin", weights_only=False
    )
    assert {int(state["step"]) for state in optimizer_state["state"].values()} == {2}


DDP_DRIVER = """
import hashlib, json, sys
from accelerate import PartialState
from animate.training.config import load_config
from animate.training.train import train
config = load_config("tiny_stage1", dict(arg.split("=", 1) for arg in sys.argv[1:]))
pipeline = train(config)
digest = hashlib.sha256()
for model in (pipeline.reference_unet, pipeline.denoising_unet, pipeline.pose_guider):
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.cpu().numpy().tobytes())
state = PartialState()
(config.run_dir / f"rank{state.process_index}.json").write_text(
    json.dumps({"world": state.num_processes, "sha256": digest.hexdigest()})
)
"""


def test_two_process_data_parallel_training_keeps_the_replicas_identical(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DDP_DRIVER)
    run_dir = tmp_path / "runs" / "ddp"
    overrides = [f"output_dir={tmp_path / 'runs'}", f"export_dir={tmp_path / 'trained'}", "run_name=ddp"]
    overrides += ["max_steps=3", "checkpoint_every=3", "validate_every=0", "batch_size=1", "learning_rate=1e-3"]
    # accelerate's own --cpu launch of several processes needs MPI; torchrun + ACCELERATE_USE_CPU gives gloo.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(driver)]
    result = subprocess.run(
        [*command, *overrides],
        env={**ENV, "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((run_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["world"] for rank in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert next(iter(records(run_dir, "samples_per_s").values())) > 0
    single = tiny(tmp_path, max_steps=1)  # the weights did change: not what a fresh model has
    untrained = load_pipeline(single)
    digest = hashlib.sha256()
    for model in (untrained.reference_unet, untrained.denoising_unet, untrained.pose_guider):
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode() + tensor.numpy().tobytes())
    assert digest.hexdigest() != ranks[0]["sha256"]


def test_validation_does_not_leak_memory(tmp_path):
    config = tiny(tmp_path, validation_samples=1, validation_inference_steps=2)
    accelerator, pipeline, model = make_model(config)
    samples = make_samples("puppets", 1, 64, 64)
    process = psutil.Process()

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(item, torch.Tensor) for item in gc.get_objects())

    for step in range(3):  # warm-up: allocator pools, lazily built modules
        validate(accelerator, model, pipeline, samples, config, step)
    tensors, memory = live_tensors(), process.memory_info().rss
    for step in range(3, 15):
        validate(accelerator, model, pipeline, samples, config, step)
    assert live_tensors() == tensors
    assert process.memory_info().rss - memory < 16 * 2**20
    assert not pipeline.reference_features.features and pipeline.reference_features.reading is None
    assert len(list((config.run_dir / "samples").glob("*.png"))) == 15


def test_presets_load_with_the_reference_settings():
    presets = {path.stem: load_config(path) for path in CONFIGS_DIR.glob("*stage*.yaml")}
    assert set(presets) >= {"stage1", "stage2", "tiny_stage1", "tiny_stage2"}  # every preset loads
    stage1, stage2 = presets["stage1"], presets["stage2"]
    assert (stage1.stage, stage1.width, stage1.height, stage1.learning_rate, stage1.max_steps) == (
        1,
        768,
        768,
        1e-5,
        30000,
    )
    assert (stage2.stage, stage2.num_frames, stage2.width, stage2.learning_rate) == (2, 24, 512, 1e-5)
    assert presets["tiny_stage1"].init_from == "tiny" and presets["tiny_stage2"].stage == 2
    deepspeed = json.loads((CONFIGS_DIR / "deepspeed_zero2.json").read_text())
    assert deepspeed["zero_optimization"]["stage"] == 2


def test_learning_rate_warms_up_stays_then_decays_to_zero():
    config = TrainConfig(learning_rate=1e-3, lr_warmup_steps=10, max_steps=100, lr_decay_steps=20)
    rates = [config.learning_rate_at(step) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)  # linear warm-up over 10 steps
    assert rates[10:80] == [1e-3] * 70  # stable
    assert rates[80] == pytest.approx(1e-3) and rates[90] == pytest.approx(5e-4) and rates[99] == pytest.approx(5e-5)
    assert all(later <= earlier for earlier, later in zip(rates[80:], rates[81:], strict=False))
    constant = dataclasses.replace(config, lr_decay_steps=0)
    assert constant.learning_rate_at(99) == 1e-3  # no decay: a longer run continues this one exactly
    with pytest.raises(ValueError, match="lr_decay_steps=200"):
        TrainConfig(max_steps=100, lr_decay_steps=200)


def test_every_config_field_is_commented():
    source = (ROOT / "animate" / "training" / "config.py").read_text().splitlines()
    for item in dataclasses.fields(TrainConfig):
        line = next(index for index, text in enumerate(source) if text.strip().startswith(f"{item.name}:"))
        assert "#" in source[line] or source[line - 1].strip().startswith("#"), item.name


def test_command_line_overrides_and_errors(capsys):
    config = load_config("tiny_stage1", {"learning_rate": "2e-5", "gradient_checkpointing": "true", "max_steps": "7"})
    assert (config.learning_rate, config.gradient_checkpointing, config.max_steps) == (2e-5, True, 7)
    for argv, message in (
        (["--stage", "2", "--config", "tiny_stage1"], "configures stage 1"),
        (["--stage", "1", "--config", "tiny_stage1", "--learnig_rate=1"], "Unknown config field(s) learnig_rate"),
        (["--stage", "1", "--config", "tiny_stage1", "--max_steps", "many"], "max_steps must be int"),
        (["--stage", "1", "--config", "tiny_stage1", "--width=60"], "width=60"),
        (["--stage", "1", "--config", "nowhere"], "tiny_stage1"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "package"), [({"use_8bit_adam": True}, "bitsandbytes"), ({"deepspeed_config": "x.json"}, "deepspeed")]
)
def test_optional_packages_are_asked_for_by_their_pip_command(tmp_path, option, package):
    with pytest.raises(ImportError, match=f"pip install {package}"):
        train(tiny(tmp_path, **option))


@pytest.mark.slow
def test_a_dance_video_to_a_trained_model_end_to_end(media_dir, tmp_path):
    """The user's path on a real video: dataset, stage 1 (stopped and continued), stage 2, generation."""
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(media_dir / "hero_dance.mp4", videos)
    build = [sys.executable, "-m", "animate.training.dataset", "build", str(videos)]
    subprocess.run(build, env=ENV, cwd=ROOT, check=True, capture_output=True)
    data = f"--data={videos / 'dataset.json'}"
    common = [data, "--checkpoint_every=2", "--validate_every=0", "--log_every=1"]
    for max_steps in (2, 4):  # the second run continues the first
        stage1 = cli(tmp_path, 1, "--run_name=dance1", f"--max_steps={max_steps}", *common)
        subprocess.run(stage1, env=ENV, cwd=ROOT, check=True, capture_output=True)
    assert sorted(records(tmp_path / "runs" / "dance1", "loss")) == [1, 2, 3, 4]
    stage2 = cli(tmp_path, 2, "--run_name=dance2", f"--init_from={tmp_path / 'trained' / 'dance1'}", "--max_steps=2")
    subprocess.run([*stage2, "--num_frames=4", *common], env=ENV, cwd=ROOT, check=True, capture_output=True)
    pipeline = AnimateAnyonePipeline.from_pretrained(tmp_path / "trained" / "dance2")
    assert isinstance(pipeline.denoising_unet, UNetMotionModel)
    assert generate(pipeline, 4).shape == (4, 64, 64, 3)
