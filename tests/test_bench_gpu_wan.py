"""bench/gpu_wan.py cannot rot: its --cpu-smoke mode runs every part at a tiny size, with none of the app's libraries
importable (as on a bare GPU machine with only torch, diffusers and torchao)."""

import json

from test_bench_gpu import run_smoke


def test_the_wan_gpu_benchmark_runs_every_part_on_the_cpu(tmp_path):
    done = run_smoke("bench/gpu_wan.py", tmp_path)
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
