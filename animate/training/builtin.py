"""Reproduces the built-in model (`weights/tiny/`) from this repository alone, on a CPU:

    python -m animate.training.builtin            # every step resumes where it stopped when run again

1. a small VAE trained on puppet frames (`animate.training.vae`);
2. the starting model: fresh weights of the "small" architecture (animate/architecture.py) with that VAE;
3. stage 1 and 4. stage 2 with the presets `builtin_stage1.yaml` and `builtin_stage2.yaml`;
5. `weights/tiny/`: the stage-2 model as a saved pipeline (without the released-format copy), with
   `generation_defaults.json`, the settings it is meant to be used with.

Runs and intermediate exports go to `runs/builtin/`. Each step runs in its own process, as from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from animate.architecture import ARCHITECTURES, build_pipeline
from animate.generate import DEFAULTS_FILE
from animate.training.config import load_config
from animate.weights import WEIGHTS_DIR

ROOT = WEIGHTS_DIR.parent
RUNS = ROOT / "runs" / "builtin"
VAE_OPTIONS = ["--steps=3000", "--batch_size=12", "--crop=64", "--save_every=500"]
# What the app and the CLI use with this model: its training resolution, puppet skeletons (no hands or face
# dots), windows within its 16-frame training clips, no guidance and 1 step. More steps add sharper detail that is
# partly wrong and changes from frame to frame, and stage 2 was trained for the first step only; one step gives the
# model's smooth best guess, and is the fastest (weights/README.md has the held-out scores at 1, 2 and 3 steps).
GENERATION_DEFAULTS = {
    "short_side": 128,
    "steps": 1,
    "guidance": 1.0,
    "hands": False,
    "face": False,
    "context_frames": 16,
    "context_overlap": 4,
    "sensible": {"steps": [1, 1], "guidance": [1.0, 1.0]},  # trained for one step without guidance
}


def run(*command: str) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def make_init() -> None:
    """The small VAE, then the starting model: fresh "small" weights with that VAE, in runs/builtin/init."""
    vae_folder = RUNS / "vae" / "vae"
    if not (vae_folder / "config.json").is_file():
        run("-m", "animate.training.vae", f"--output={RUNS / 'vae'}", *VAE_OPTIONS)
    init = RUNS / "init"
    if not (init / "model_index.json").is_file():
        pipeline = build_pipeline("small", seed=0, motion=False)
        vae = ARCHITECTURES["small"].vae_model.from_pretrained(vae_folder)
        pipeline = type(pipeline)(**{**pipeline.components, "vae": vae})
        pipeline.save_pretrained(init)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m animate.training.builtin",
        description=__doc__.split("\n\n")[0],
        epilog="Other --FIELD=VALUE options go to both training stages (e.g. --num_workers=12 on a many-core machine; "
        "settings that change the result, such as batch_size, make a different model).",
    )
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR / "tiny", help="where the model goes")
    args, overrides = parser.parse_known_args()
    started = time.monotonic()

    make_init()
    for stage in (1, 2):
        config = load_config(f"builtin_stage{stage}")
        if not (config.export_path / "model_index.json").is_file():
            run("-m", "animate.training", f"--stage={stage}", f"--config=builtin_stage{stage}", *overrides)

    final = config.export_path  # stage 2's
    partial = args.output.with_name(f".{args.output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(final, partial, ignore=shutil.ignore_patterns("released"))
    (partial / DEFAULTS_FILE).write_text(json.dumps(GENERATION_DEFAULTS, indent=2) + "\n")
    examples = args.output / "examples"  # the app's examples (animate/examples.py) are not the model's: kept
    if examples.is_dir():
        shutil.copytree(examples, partial / "examples")
    if args.output.exists():
        shutil.rmtree(args.output)
    os.replace(partial, args.output)
    size = sum(path.stat().st_size for path in args.output.rglob("*") if path.is_file())
    print(f"Built-in model in {args.output} ({size / 2**20:.1f} MiB) after {(time.monotonic() - started) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
