"""`-m animate batch`: jobs split across two CPU processes (gloo, as torchrun starts them) give exactly the videos one
process gives; a finished job is skipped on a rerun; a failed job is reported while the others go on."""

import json
import os
import subprocess
import sys

import imageio_ffmpeg
import numpy as np

from conftest import ROOT
from pose import read_frames

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def write_jobs(folder, media_dir):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(media_dir / "hero_dance.mp4"),
                    "-t", "1", "-c", "copy", str(folder / "dance.mp4")], check=True)  # fmt: skip
    jobs = [
        {"image": str(media_dir / "ref_hero.png"), "video": "dance.mp4", "output": "out/hero.mp4", "frames": 4},
        {"image": str(media_dir / "ref_anime.png"), "video": "dance.mp4", "output": "out/anime.mp4", "frames": 4},
        {"image": "missing.png", "video": "dance.mp4", "output": "out/missing.mp4", "frames": 4},
        {"image": str(media_dir / "ref_hero.png"), "video": "dance.mp4", "output": "out/wide.mp4", "frames": 3,
         "seed": 5, "side_by_side": True},
    ]  # fmt: skip
    (folder / "jobs.jsonl").write_text("\n".join(json.dumps(job) for job in jobs) + "\n")


def run(folder, processes: int) -> subprocess.CompletedProcess:
    if processes == 1:
        command = [sys.executable, "-m", "animate", "batch", "jobs.jsonl"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "animate", "batch", "jobs.jsonl"]  # fmt: skip
    env = {**ENV, "ACCELERATE_USE_CPU": "true"} if processes > 1 else ENV
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def frames(path) -> np.ndarray:
    return np.stack(list(read_frames(path)))


def test_two_processes_make_the_same_videos_as_one(tmp_path, media_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        write_jobs(folder, media_dir)
    single, split = run(one, 1), run(two, 2)
    for result in (single, split):
        assert result.returncode != 0  # the job with a missing image failed...
        assert "| 3 | missing.mp4 |" in result.stdout and "failed: missing.png is not an image" in result.stdout
    assert "4 jobs on 1 process(es): 1 failed." in single.stdout
    assert "4 jobs on 2 process(es): 1 failed." in split.stdout
    assert "| 2 | anime.mp4 | 1 | done: 4 frames" in split.stdout  # ...and the second process ran every other job
    for name in ("hero", "anime", "wide"):  # ...while the others were made, identically
        assert np.array_equal(frames(one / "out" / f"{name}.mp4"), frames(two / "out" / f"{name}.mp4")), name
        assert (
            json.loads((one / "out" / f"{name}.json").read_text())["seed"]
            == json.loads((two / "out" / f"{name}.json").read_text())["seed"]
        )
    assert not (one / "out" / "missing.mp4").exists()
    written = [sorted(path.name for path in (folder / "out").iterdir()) for folder in (one, two)]
    assert written[0] == written[1]

    again = run(one, 1)
    assert again.stdout.count("skipped: already done") == 3
