"""bench/gpu_wan.py cannot rot: its --cpu-smoke mode runs every part at a tiny size, with none of the app's libraries
importable (as on a bare GPU machine with only torch, diffusers and torchao)."""

import json
import subprocess
import sys

from test_bench_gpu import ABSENT

from conftest import ROOT

RUN = f"""
import runpy, sys
for name in {ABSENT!r}:
    sys.modules[name] = None
sys.argv = ["bench/gpu_wan.py", "--cpu-smoke", "--out", sys.argv[1]]
runpy.run_path("bench/gpu_wan.py", run_name="__main__")
"""


def test_the_wan_gpu_benchmark_runs_every_part_on_the_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_wan.json").read_text())
    assert report["errors"] == {}
    resident = report["resident"]
    assert resident["step_flops"] > 0 and resident["floor_seconds_per_step"] > 0 and resident["finite"]
    assert resident["decode"]["frames"] == report["sizes"]["frames"]
    for name in ("int8", "offload"):
        assert report[name]["seconds_per_step"] > 0 and report[name]["finite"]
    assert report["int8"]["transformer_gb"] < resident["transformer_gb"]
    assert "| bf16, group offload |" in done.stdout
