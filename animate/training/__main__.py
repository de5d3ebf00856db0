"""Train Animate Anyone: `python -m animate.training --stage 1|2 --config FILE [--key=value ...]`.

One process (CPU or one GPU) as is; several GPUs or machines through accelerate's own launcher, e.g.

    accelerate launch --config_file animate/training/configs/accelerate_multi_gpu.yaml \\
        -m animate.training --stage 1 --config stage1 --run_name=mine

(Several processes on a CPU, to try data parallelism: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes 2 -m animate.training ...`; accelerate's own `--cpu` launches several processes only through MPI.)

FILE is a YAML file or a preset in animate/training/configs (stage1, stage2: the reference's GPU settings;
tiny_stage1, tiny_stage2: a tiny model on a CPU). Any field of `TrainConfig` (animate/training/config.py, where
each is explained) can be overridden: `--learning_rate=2e-5`, `--max_steps 500`. A run picks up from its newest
checkpoint when started again with the same run_name.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from accelerate import PartialState

from animate.training.config import load_config, parse_overrides
from animate.training.train import train


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m animate.training",
        description=__doc__.split("\n\n")[0],
        epilog="Overrides: --FIELD=VALUE for any field of TrainConfig (see animate/training/config.py).",
    )
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True, help="1: image stage, 2: temporal stage")
    parser.add_argument("--config", required=True, help="a YAML file, or a preset: stage1, stage2, tiny_stage1, ...")
    args, rest = parser.parse_known_args(argv)
    try:
        config = load_config(args.config, parse_overrides(rest))
    except ValueError as error:
        parser.error(str(error))
    if config.stage != args.stage:
        parser.error(
            f"{args.config} configures stage {config.stage}: use --stage {config.stage}, or a stage-{args.stage} config"
        )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "diffusers", "transformers"):  # per-checkpoint and per-load chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        train(config)
    except (ValueError, ImportError) as error:
        print(f"error: {error}")
        return 1
    PartialState().print(f"Run folder: {config.run_dir}\nExported to {config.export_path} (and its released/ folder)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
