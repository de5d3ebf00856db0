"""Memory modes: which one a job gets for the GPU memory free, that each leaves the result unchanged, and what an
out-of-memory error tells the user."""

import numpy as np
import pytest
import torch

from animate import memory
from animate.architecture import build_pipeline
from animate.device import cpu_has_fast_bf16, select_dtype

GB = 2**30
SD15 = {"vae": 0.17 * GB, "image_encoder": 0.6 * GB, "reference_unet": 1.7 * GB, "denoising_unet": 2.6 * GB}


@pytest.mark.parametrize(
    "free_gb, mode, warned",
    [(80, "none", False), (14, "model-offload", False), (11, "lowest", False), (6, "lowest", True)],
)
def test_auto_picks_the_fastest_mode_that_fits(monkeypatch, free_gb, mode, warned):
    monkeypatch.setattr(memory, "free_memory", lambda device: (int(free_gb * GB), 141 * GB))
    fit = memory.choose_memory_mode("auto", SD15, torch.device("cuda"), 24, 512, 768, torch.float16, True)
    assert fit.mode == mode and bool(fit.warning) == warned
    if warned:
        assert "Lower the window (now 24 frames; Advanced)" in fit.warning
    assert f"of {free_gb:.1f} GB free" in fit.describe()


def test_a_smaller_window_needs_less(monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: (6 * GB, 8 * GB))
    assert memory.choose_memory_mode("auto", SD15, torch.device("cuda"), 8, 512, 768, torch.float16, True).warning == ""


def test_on_the_cpu_nothing_is_offloaded_unless_asked():
    cpu = torch.device("cpu")
    assert memory.choose_memory_mode("auto", SD15, cpu, 24, 512, 768, torch.float32, True).mode == "none"
    assert memory.choose_memory_mode("lowest", SD15, cpu, 24, 512, 768, torch.float32, True).mode == "lowest"
    with pytest.raises(ValueError, match="Unknown memory mode 'tiny'"):
        memory.choose_memory_mode("tiny", SD15, cpu, 24, 512, 768, torch.float32, True)


@pytest.mark.parametrize("mode", ["model-offload", "lowest"])
def test_every_mode_gives_the_same_frames(mode):
    reference, poses = np.full((64, 64, 3), 128, np.uint8), [np.zeros((64, 64, 3), np.uint8)] * 4

    def frames(pipeline):
        pipeline.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        return pipeline(reference, poses, num_inference_steps=2, generator=generator, output_type="np").frames

    expected = frames(memory.apply_memory_mode(build_pipeline("tiny"), "none", torch.device("cpu")))
    assert np.array_equal(frames(memory.apply_memory_mode(build_pipeline("tiny"), mode, torch.device("cpu"))), expected)


def test_the_out_of_memory_sentence_names_what_to_lower():
    message = memory.out_of_memory_message("none", 24, 512, 768)
    assert message == (
        "The GPU ran out of memory. Lower the window (now 24 frames; Advanced), the output size (now 512×768), or "
        "choose memory mode model-offload (now none; Advanced). Your earlier results are kept."
    )
    assert "choose memory mode" not in memory.out_of_memory_message("lowest", 24, 512, 768)


def test_auto_precision_on_a_cpu_is_bf16_only_for_large_models_where_it_is_native():
    cpu = torch.device("cpu")
    assert select_dtype(cpu, "auto") == torch.float32
    assert select_dtype(cpu, "auto", large_model=True) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
