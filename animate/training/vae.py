"""Training a small VAE from scratch on puppet frames, for the built-in model (full-size models use SD's VAE as is).

The architecture's `vae_model` is built from its config: PatchVAE for the built-in "small" model (see
animate/patch_vae.py for why not AutoencoderKL).

    python -m animate.training.vae --output runs/vae_small [--key=value ...]

Every hyperparameter is a field of `VAEConfig`. The loss is an L1 reconstruction plus an L1 on image gradients (it
keeps the puppets' outlines and clothing patterns sharp; without a perceptual or adversarial loss, plain L1 alone
blurs them) plus a small KL term, as SD's autoencoder (which adds LPIPS and a GAN we cannot train here). Training
uses random crops (the model is fully convolutional); evaluation is on whole held-out frames. At the end, the latents'
scaling factor is set to 1 / their standard deviation, which is how SD's 0.18215 was chosen, so the diffusion model
sees unit-variance latents. Checkpoints are written atomically and a run resumes from the newest one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from animate.architecture import ARCHITECTURES
from animate.training.config import config_from, parse_overrides
from animate.training.dataset import PuppetSamples

logger = logging.getLogger(__name__)


@dataclass
class VAEConfig:
    output: str = "runs/vae"  # run folder: checkpoint.pt, metrics.jsonl and, at the end, vae/ (save_pretrained)
    architecture: str = "small"  # the VAE config comes from animate.architecture.ARCHITECTURES[architecture]
    width: int = 128  # puppet frames are rendered at this size (the model's resolution)
    height: int = 192
    crop: int = 96  # square random crops trained on (cheaper; the VAE is fully convolutional)
    steps: int = 3000  # optimizer steps
    batch_size: int = 16  # crops per step
    learning_rate: float = 1e-3  # peak; cosine decay to 1% of it after a linear warm-up
    warmup_steps: int = 100
    kl_weight: float = 1e-6  # SD's autoencoder uses 1e-6
    gradient_weight: float = 1.0  # weight of the L1 loss on horizontal and vertical image differences
    seed: int = 0
    log_every: int = 50
    save_every: int = 500  # steps between checkpoints (and held-out evaluations)
    num_workers: int = 1  # DataLoader workers rendering puppets


class PuppetFrames(torch.utils.data.Dataset):
    """Random crops of puppet frames (the target frame and the reference of each sample): index -> (2, 3, c, c)."""

    def __init__(self, config: VAEConfig, split: str = "train"):
        self.samples = PuppetSamples(1, config.width, config.height, seed=config.seed, split=split)
        self.config = config

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor:
        sample = self.samples[index]
        images = torch.stack([sample["frames"][0], sample["reference"]])  # (2, 3, H, W) in [-1, 1]
        crop = self.config.crop
        generator = torch.Generator().manual_seed(index)
        top = int(torch.randint(0, self.config.height - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, self.config.width - crop + 1, (1,), generator=generator))
        return images[:, :, top : top + crop, left : left + crop]


def loss_terms(vae: torch.nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.sample(generator)).sample
    l1 = (reconstruction - images).abs().mean()
    gradients = sum(
        (torch.diff(reconstruction, dim=dim) - torch.diff(images, dim=dim)).abs().mean() for dim in (-1, -2)
    )
    kl = posterior.kl().mean() / images[0].numel()  # per pixel and channel, like the L1 terms
    return {"l1": l1, "gradients": gradients, "kl": kl}


def train(config: VAEConfig) -> Path:
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    torch.manual_seed(config.seed)
    architecture = ARCHITECTURES[config.architecture]
    vae = architecture.vae_model.from_config(architecture.vae)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate, weight_decay=0.0)

    def learning_rate(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
    step = 0
    checkpoint = output / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        vae.load_state_dict(state["vae"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        logger.info("resumed from step %d", step)

    # Sample i of step s is dataset index s * batch + i: resuming continues the same sequence of crops.
    sampler = range(step * config.batch_size, config.steps * config.batch_size)
    loader = torch.utils.data.DataLoader(
        PuppetFrames(config), batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers
    )
    vae.train()
    started, metrics = time.monotonic(), output / "metrics.jsonl"
    for batch in loader:
        images = batch.flatten(0, 1)  # (2 * batch, 3, crop, crop): the target and the reference of each sample
        terms = loss_terms(vae, images, torch.Generator().manual_seed(config.seed + step))
        loss = terms["l1"] + config.gradient_weight * terms["gradients"] + config.kl_weight * terms["kl"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        if step % config.log_every == 0 or step == config.steps:
            record = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
            record |= {"lr": scheduler.get_last_lr()[0], "seconds": round(time.monotonic() - started, 1)}
            with metrics.open("a") as file:
                file.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
        if step % config.save_every == 0 or step == config.steps:
            partial = checkpoint.with_suffix(".partial")
            state = {"vae": vae.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            torch.save({**state, "step": step}, partial)
            os.replace(partial, checkpoint)
            print(f"step {step}: held-out PSNR {evaluate(vae, config):.2f} dB", flush=True)

    vae.eval()
    scaling = latent_scaling_factor(vae, config)
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(output / "vae")
    print(f"saved {output / 'vae'} (scaling factor {scaling:.5f}, held-out PSNR {evaluate(vae, config):.2f} dB)")
    return output / "vae"


@torch.no_grad()
def held_out_frames(config: VAEConfig, count: int = 16) -> torch.Tensor:
    samples = PuppetSamples(1, config.width, config.height, seed=config.seed, split="heldout")
    return torch.cat([samples[index]["frames"] for index in range(count)])  # (count, 3, H, W)


@torch.no_grad()
def evaluate(vae: torch.nn.Module, config: VAEConfig) -> float:
    """PSNR (dB) of whole held-out frames through encoder mean and decoder, in float, on the [0, 1] scale."""
    was_training = vae.training
    vae.eval()
    images = held_out_frames(config)
    reconstruction = vae.decode(vae.encode(images).latent_dist.mean).sample.clamp(-1, 1)
    vae.train(was_training)
    mse = ((reconstruction - images) / 2).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


@torch.no_grad()
def latent_scaling_factor(vae: torch.nn.Module, config: VAEConfig) -> float:
    latents = vae.encode(held_out_frames(config, count=32)).latent_dist.mean
    return float(1 / latents.std())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        config = config_from(VAEConfig, parse_overrides(sys.argv[1:]), "the command line")
    except ValueError as error:
        raise SystemExit(f"error: {error} (the options are the fields of VAEConfig, animate/training/vae.py)") from None
    train(config)
