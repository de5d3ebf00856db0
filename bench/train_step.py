"""Where one training step's time goes: data, CLIP, VAE, forward, backward. Prints a table; asserts nothing.

    python bench/train_step.py [--config builtin_stage1] [--init small] [--workers 12] [--steps 40]

Runs the training code's own pieces (`load_pipeline`, `diffusion_loss`, the data loader) on the device accelerate
picks, from fresh weights of an architecture (or a saved model), and times each piece, synchronising the GPU around
it. On an H100 the built-in stage 1 (batch 32, 128x192, 12 workers) took 259 ms per step: 59 ms forward, 91 ms
backward and optimizer, 32 ms CLIP (PIL preprocessing and encoder), 2 ms VAE, and about 70 ms of other per-step work
in the loss. A model this small leaves the GPU mostly idle, so larger batches cost little more per step.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animate.training import objective, train  # noqa: E402
from animate.training.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="builtin_stage1", help="a training preset or YAML file")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after 5 untimed ones)")
    parser.add_argument("--init", default="small", help="an architecture (fresh weights) or a saved model folder")
    args = parser.parse_args()
    config = load_config(args.config, {"num_workers": str(args.workers), "init_from": args.init})

    accelerator = Accelerator()
    device = accelerator.device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name, function):
        def wrapper(*arguments, **keywords):
            synchronize()
            start = time.perf_counter()
            result = function(*arguments, **keywords)
            synchronize()
            spent[name] += time.perf_counter() - start
            return result

        return wrapper

    pipeline = train.load_pipeline(config)
    pipeline.encode_reference_image = timed("CLIP (PIL preprocessing + encoder)", pipeline.encode_reference_image)
    pipeline.vae.encode = timed("VAE encode", pipeline.vae.encode)
    parameters = objective.trainable_parameters(pipeline, config.stage)
    pipeline.to(device)
    model = objective.AnimateAnyoneTrainingModel(pipeline)
    model.forward = timed("model forward", model.forward)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    samples = train.make_samples(config.data, config.num_frames, config.width, config.height, seed=config.seed)
    batches = iter(
        torch.utils.data.DataLoader(
            samples, batch_sampler=train.batch_indices(config, 0, 0, 1), num_workers=config.num_workers
        )
    )
    loss_function = timed("diffusion_loss (all of the above and the rest)", objective.diffusion_loss)

    warm_up = 5
    for step in range(warm_up + args.steps):
        if step == warm_up:
            spent.clear()
            synchronize()
            began = time.perf_counter()
        start = time.perf_counter()
        batch = next(batches)
        spent["waiting for data"] += time.perf_counter() - start
        loss = loss_function(accelerator, model, pipeline, batch, objective.seeded_generator(config.seed, step), config)
        start = time.perf_counter()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        spent["backward + optimizer"] += time.perf_counter() - start
        pipeline.reference_features.clear()
    seconds = (time.perf_counter() - began) / args.steps
    clips = config.batch_size
    print(f"{args.config} on {device}, {torch.get_num_threads()} threads, {args.workers} data workers, batch {clips}")
    print(f"{seconds * 1000:.0f} ms per step, {clips / seconds:.1f} samples/s\n")
    print("| part | ms per step |")
    print("|---|---|")
    for name, total in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"| {name} | {total / args.steps * 1000:.1f} |")


if __name__ == "__main__":
    main()
