"""Training runs as background processes (animate/training_runs.py): started, found again from the run folder alone
(as a restarted app finds them), stopped with all their children, resumed; config mistakes refused before launching."""

import json

import psutil
import pytest

from animate import training_runs
from animate.training_runs import RunError


def gone(process: psutil.Process) -> bool:
    """Ended (a zombie counts: whoever adopted it may not have collected it yet)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tiny_overrides(tmp_path) -> dict[str, str]:
    return {
        "max_steps": "1000",
        "checkpoint_every": "1000",
        "validate_every": "0",
        "export_dir": str(tmp_path / "trained"),
    }


def test_the_command_is_accelerate_launch_with_the_overrides():
    command = training_runs.launch_command(2, "tiny_stage2", {"max_steps": "10"})
    assert command[1:] == ["-m", "accelerate.commands.launch", "-m", "animate.training", "--stage", "2", "--config",
                           "tiny_stage2", "--max_steps=10"]  # fmt: skip


def test_config_mistakes_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(RunError, match="Unknown config field"):
        training_runs.start(tmp_path / "typo", 1, "tiny_stage1", {"max_stesp": "10"})
    with pytest.raises(RunError, match="configures stage 1, not stage 2"):
        training_runs.start(tmp_path / "wrong", 2, "tiny_stage1", {})
    assert not (tmp_path / "typo").exists() and not (tmp_path / "wrong").exists()


def test_a_run_is_found_again_from_its_folder_stopped_with_its_children_and_resumed(tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    started = training_runs.start(run_dir, 1, "tiny_stage1", tiny_overrides(tmp_path))
    assert started.state == "running" and started.stage == 1 and started.max_steps == 1000
    record = json.loads((run_dir / training_runs.PROCESS_FILE).read_text())
    assert record["pid"] == started.pid and "accelerate.commands.launch" in record["command"]
    # What an app started later sees: only the folder (no handle on the process).
    assert [run.name for run in training_runs.list_runs(tmp_path / "runs")] == ["mine"]
    assert training_runs.status(run_dir).state == "running"
    with pytest.raises(RunError, match="already exists"):
        training_runs.start(run_dir, 1, "tiny_stage1", tiny_overrides(tmp_path))
    with pytest.raises(RunError, match="is running: stop it first"):
        training_runs.resume(run_dir)

    family = [psutil.Process(started.pid), *psutil.Process(started.pid).children(recursive=True)]
    stopped = training_runs.stop(run_dir, timeout=10)
    assert stopped.state == "stopped" and all(gone(process) for process in family)
    assert "$ " in training_runs.log_tail(run_dir) and "--run_name=mine" in training_runs.log_tail(run_dir)
    with pytest.raises(RunError, match="is not running"):
        training_runs.stop(run_dir)
    with pytest.raises(RunError, match="has no checkpoint yet"):
        training_runs.export(run_dir)

    resumed = training_runs.resume(run_dir)
    assert resumed.state == "running" and resumed.pid != started.pid
    assert training_runs.stop(run_dir, timeout=10).state == "stopped"


def test_a_process_that_ended_while_no_app_watched_it(tmp_path):
    run_dir = tmp_path / "gone"
    run_dir.mkdir()
    (run_dir / training_runs.PROCESS_FILE).write_text(json.dumps({"pid": 2**22 + 1, "create_time": 0, "stage": 2}))
    run = training_runs.status(run_dir)
    assert run.state == "ended" and "while the app was not running" in run.message


def test_metrics_samples_and_log_tail(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "val_loss": 1.0}\n{"step": 5, "loss": 0.5}\n{"step": 6, "lo')
    assert training_runs.read_metrics(tmp_path) == [{"step": 0, "val_loss": 1.0}, {"step": 5, "loss": 0.5}]
    (tmp_path / "samples").mkdir()
    for name in ("step0000000-sample0.png", "step0000200-sample0.mp4", "step0000200-sample1.mp4"):
        (tmp_path / "samples" / name).write_bytes(b"")
    assert [path.name for path in training_runs.latest_samples(tmp_path)] == [
        "step0000200-sample0.mp4",
        "step0000200-sample1.mp4",
    ]
    (tmp_path / training_runs.LOG_FILE).write_text("first\nLoading 10%\rLoading 100%\nlast\n")
    assert training_runs.log_tail(tmp_path, 3) == "Loading 100%\nlast\n"
