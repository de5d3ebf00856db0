"""Training runs as the app drives them: each stage is a separate `accelerate launch -m animate.training` process.

The process is started in its own session (so stopping or restarting the app does not kill a training that takes
days), its output goes to `<run>/train.log`, and `<run>/process.json` records its pid, start time, command and,
when it ends, how. So the app, or a restarted app, finds every run again, shows whether it is still running, and can
stop, resume or export it:

    run = start(runs_dir / "mine", stage=1, config="tiny_stage1", overrides={"max_steps": "200"})
    status(run).state    # "running", then "finished" (exported), "stopped", "failed" or "ended"
    stop(run); resume(run); export(run)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from animate.training.config import load_config
from animate.training.train import STATE_FILE, checkpoint_step, latest_checkpoint

PROCESS_FILE = "process.json"
LOG_FILE = "train.log"
ROOT = Path(__file__).resolve().parents[1]


class RunError(RuntimeError):
    """A request that cannot be done for this run; the message says why and what to do."""


@dataclass
class RunStatus:
    name: str
    folder: Path
    # "running", "exporting", "finished", "exported", "stopped", "failed", "ended" (while the app was not running) or
    # "outside" (started from the command line, not by the app)
    state: str
    stage: int | None
    pid: int | None
    step: int  # the last step logged to metrics.jsonl
    max_steps: int | None
    checkpoint_step: int | None  # the newest complete checkpoint, what Resume and Export start from
    export_dir: Path | None
    message: str  # one sentence for the user


def launch_command(stage: int, config: str, overrides: dict[str, str]) -> list[str]:
    """`accelerate launch -m animate.training ...` with this interpreter; accelerate reads the user's own
    `accelerate config` (several GPUs, DeepSpeed) when there is one."""
    options = [f"--{name}={value}" for name, value in overrides.items()]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "-m",
        "animate.training",
        "--stage",
        str(stage),
        "--config",
        str(config),
        *options,
    ]


def start(run_dir: Path, stage: int, config: str, overrides: dict[str, str]) -> RunStatus:
    """Starts a new run in `run_dir` (its name is the folder's); refuses a folder that already holds a run."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoints").is_dir() or (run_dir / PROCESS_FILE).is_file():
        raise RunError(f"A run named {run_dir.name} already exists: resume it, or choose another run name.")
    overrides = {**overrides, "run_name": run_dir.name, "output_dir": str(run_dir.parent)}
    try:  # the checks the training script makes, here, so that a typo is an error now and not a line in the log
        checked = load_config(config, overrides)
    except ValueError as error:
        raise RunError(str(error)) from None
    if checked.stage != stage:
        raise RunError(f"{config} configures stage {checked.stage}, not stage {stage}.")
    command = launch_command(stage, config, overrides)
    record = {
        "stage": stage,
        "training_command": command,
        "max_steps": checked.max_steps,
        "export_dir": str(checked.export_path),
    }
    return _launch(run_dir, record, command)


def resume(run_dir: Path) -> RunStatus:
    """Starts a stopped run again with its own command: training continues from its newest checkpoint."""
    record = _record(run_dir)
    if record is None:
        raise RunError(f"{Path(run_dir).name} was not started from the app, so there is no command to resume it with.")
    _refuse_if_running(run_dir)
    return _launch(run_dir, record, record["training_command"])


def export(run_dir: Path) -> RunStatus:
    """Exports the newest checkpoint of a stopped run to the model list: the training command again with `max_steps`
    set to the checkpoint's step, so training resumes there, has no step left to take, and exports."""
    record = _record(run_dir)
    if record is None:
        raise RunError(
            f"{Path(run_dir).name} was not started from the app; export it with `python -m animate.training`."
        )
    _refuse_if_running(run_dir)
    checkpoint = latest_checkpoint(Path(run_dir) / "checkpoints")
    if checkpoint is None:
        raise RunError(f"{Path(run_dir).name} has no checkpoint yet: let it train until it saves one, then export.")
    step = json.loads((checkpoint / STATE_FILE).read_text())["step"]
    command = [part for part in record["training_command"] if not part.startswith("--max_steps=")]
    return _launch(run_dir, record, [*command, f"--max_steps={step}"], purpose="export")


def stop(run_dir: Path, timeout: float = 30) -> RunStatus:
    """Stops the run's process and everything it started (accelerate's workers): politely, then by force."""
    record = _record(run_dir)
    process = _process(record)
    if process is None:
        raise RunError(f"{Path(run_dir).name} is not running.")
    _write_record(run_dir, {**record, "stopping": True})
    family = [process, *process.children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    _write_record(run_dir, {**_record(run_dir), "ended": time.time(), "stopped": True})
    return status(run_dir)


def status(run_dir: Path, metrics: list[dict] | None = None) -> RunStatus:
    """`metrics`: the run's `read_metrics`, when the caller has already read them."""
    run_dir = Path(run_dir)
    record = _record(run_dir) or {}
    metrics = read_metrics(run_dir) if metrics is None else metrics
    step = max((row["step"] for row in metrics), default=0)
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    saved_step = checkpoint_step(checkpoint) if checkpoint is not None else None
    max_steps = record.get("max_steps")
    export_dir = Path(record["export_dir"]) if "export_dir" in record else None
    exported = export_dir is not None and (export_dir / "model_index.json").is_file()
    if not record and checkpoint is not None:  # started from the command line: its checkpoint has the config
        config = json.loads((checkpoint / STATE_FILE).read_text())["config"]
        record_stage, max_steps = config.get("stage"), config.get("max_steps")
    else:
        record_stage = record.get("stage")
    process = _process(record)
    if process is not None:
        state = "exporting" if record.get("purpose") == "export" else "running"
        message = f"{'Exporting' if state == 'exporting' else 'Training'} (pid {process.pid})."
    elif not record:
        state, message = "outside", "Started from the command line: the app shows it, but cannot stop or resume it."
    elif record.get("stopped"):
        state, message = "stopped", "Stopped by the user: Resume continues from the newest checkpoint."
    elif record.get("exit_code") not in (None, 0):
        state, message = "failed", f"The process ended with code {record['exit_code']}: see the log below."
    elif record.get("exit_code") == 0 or (exported and _log_says_exported(run_dir)):
        if record.get("purpose") == "export":
            state = "exported"
            message = f"Step {saved_step} exported to {export_dir}: it is in the Animate tab's model list."
            if max_steps is not None and (saved_step or 0) < max_steps:
                message += f" Resume continues training to step {max_steps}."
        else:
            state = "finished"
            message = f"Finished and exported to {export_dir}: it is in the Animate tab's model list."
    else:
        state, message = "ended", "The process ended while the app was not running: see the log below."
    if saved_step is not None and state in ("stopped", "failed", "ended"):
        message += f" Newest checkpoint: step {saved_step}."
    return RunStatus(
        run_dir.name,
        run_dir,
        state,
        record_stage,
        record.get("pid"),
        step,
        max_steps,
        saved_step,
        export_dir if exported else None,
        message,
    )


def list_runs(runs_dir: Path) -> list[RunStatus]:
    """Every run folder under `runs_dir` (started by the app or from the command line), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    folders = [
        folder
        for folder in runs_dir.iterdir()
        if folder.is_dir() and any((folder / name).exists() for name in (PROCESS_FILE, "metrics.jsonl", "checkpoints"))
    ]
    folders.sort(key=lambda folder: folder.stat().st_mtime, reverse=True)
    return [status(folder) for folder in folders]


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of `<run>/metrics.jsonl` ({"step": ..., "loss": ...} or {"step": ..., "val_loss": ...})."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written
            continue
    return rows


def log_tail(run_dir: Path, lines: int = 60) -> str:
    """The last `lines` lines of the run's log, progress bars' carriage returns resolved as a terminal would."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return ""
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - 64 * 1024))
        text = file.read().decode("utf-8", errors="replace")
    shown = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(shown[-lines:])


def latest_samples(run_dir: Path) -> list[Path]:
    """The validation samples (PNG in stage 1, mp4 in stage 2) of the newest step that has them."""
    folder = Path(run_dir) / "samples"
    samples = sorted(folder.glob("step*-sample*.*")) if folder.is_dir() else []
    if not samples:
        return []
    newest = samples[-1].name.split("-")[0]
    return [sample for sample in samples if sample.name.startswith(newest + "-")]


def _launch(run_dir: Path, record: dict, command: list[str], purpose: str = "train") -> RunStatus:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOG_FILE).open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Ctrl+C on the app does not reach it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    record = {
        key: value for key, value in record.items() if key not in ("exit_code", "ended", "stopped", "stopping")
    } | {
        "pid": process.pid,
        "create_time": psutil.Process(process.pid).create_time(),
        "command": command,
        "purpose": purpose,
        "started": time.time(),
    }
    _write_record(run_dir, record)
    threading.Thread(target=_wait, args=(run_dir, process), name=f"wait-{run_dir.name}", daemon=True).start()
    return status(run_dir)


def _wait(run_dir: Path, process: subprocess.Popen) -> None:
    """Records the exit code when the process ends while this app runs (otherwise `status` says "ended")."""
    code = process.wait()
    record = _record(run_dir) or {}
    if record.get("pid") == process.pid and not record.get("stopping"):
        _write_record(run_dir, {**record, "exit_code": code, "ended": time.time()})


def _record(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PROCESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_record(run_dir: Path, record: dict) -> None:
    path = Path(run_dir) / PROCESS_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)


def _process(record: dict | None) -> psutil.Process | None:
    """The recorded process if it still runs (the same process: a reused pid has another start time)."""
    if not record or "pid" not in record:
        return None
    try:
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["create_time"]) > 1 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def _refuse_if_running(run_dir: Path) -> None:
    if _process(_record(run_dir)) is not None:
        raise RunError(f"{Path(run_dir).name} is running: stop it first.")


def _log_says_exported(run_dir: Path) -> bool:
    return "Exported to " in log_tail(run_dir, 20)
