"""bench/gpu.py cannot rot: its --cpu-smoke mode runs every part at a tiny size, with none of the app's libraries
importable (as on a bare GPU machine with only torch, diffusers, transformers and accelerate)."""

import json
import subprocess
import sys

from conftest import ROOT

# Importing any of these fails in the benchmark's process: the GPU machine has none of them.
ABSENT = ["cv2", "mediapipe", "gradio", "imageio_ffmpeg", "onnxruntime", "controlnet_aux", "pose", "animate.weights"]
RUN = f"""
import runpy, sys
for name in {ABSENT!r}:
    sys.modules[name] = None
script = sys.argv[1]
sys.argv = [script, "--cpu-smoke", "--out", sys.argv[2]]
runpy.run_path(script, run_name="__main__")
"""


def run_smoke(script: str, out) -> subprocess.CompletedProcess:
    """`script --cpu-smoke --out OUT` in a process where none of ABSENT imports."""
    return subprocess.run(
        [sys.executable, "-c", RUN, script, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_gpu_benchmark_runs_every_part_on_the_cpu(tmp_path):
    done = run_smoke("bench/gpu.py", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["errors"] == {}
    precision = report["precision"]
    assert precision["fp32"]["clip_frames"]["max_abs"] == 0
    for name in ("fp16", "bf16"):
        assert 0 < precision[name]["unet_call"]["max_abs"] < 1 and precision[name]["clip_frames"]["nonfinite"] == 0
    speed = report["speed"]
    assert speed["clip"]["frames"] == 8 and speed["long"]["frames"] == 16 and speed["clip"]["finite"]
    assert speed["step_flops_per_window"] > 0 and speed["floor_seconds_per_step"] > 0
    assert set(report["offload"]) == {"model-offload", "lowest"}
    assert all(row["frames"] == 8 for row in report["offload"].values())
    training = report["training"]
    assert training["stage1"]["trained_parameters"] > training["stage2"]["trained_parameters"] > 0
    assert "| stage | batch |" in done.stdout and "## memory modes" in done.stdout
