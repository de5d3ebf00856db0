"""Shared test set-up: no network, real media from ../shared/data when present."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Third-party test media (never copied into the repository); tests skip cleanly when it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real test media not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The Moore-AnimateAnyone compatibility fixture and key manifest."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixture not found at {REFERENCE}")
    return REFERENCE
