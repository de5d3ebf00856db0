"""Animate Anyone: the models, the pipeline, generation, weights and training (see DESIGN.md)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # where models are found and downloaded to
