"""Animate Anyone: the models, the pipeline, generation, weights and training (see DESIGN.md)."""

import logging
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # where models are found and downloaded to

# torchao 0.18 (the 8-bit weights of Wan-Animate) makes every diffusers import print three warnings that concern
# neither this app nor its users: torch's deprecation of torchao's registered enums, and diffusers not finding tensor
# classes torchao has since removed (they matter only for loading checkpoints saved quantized, which we never do).
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
logging.getLogger("diffusers.quantizers.torchao.torchao_quantizer").setLevel(logging.ERROR)
