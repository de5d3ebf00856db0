"""Shared test set-up: no network; the fixtures and media the tests need, from the repository itself.

`tests/data/` holds what we may ship (see its README): the compatibility fixtures (`reference/`) and media under the
Apache-2.0 licence (`media/`). Three third-party files that are not ours to redistribute (a real dance video with
audio, an illustration and a real photo) are read from `../shared/data/` where it exists, as in CI; `data_dir` skips
the tests that need them elsewhere, and says so.
"""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
REFERENCE = TEST_DATA / "reference"
MEDIA = TEST_DATA / "media"
THIRD_PARTY = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The Moore-AnimateAnyone and Wan-Animate compatibility fixtures and the released weights' key manifest."""
    return REFERENCE


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Real media in the repository: ref_anime.png, ref_hero.png, dance_kps.mp4, pose.png."""
    return MEDIA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Third-party media (dance.mp4, ref_girl.png, ref_woman.jpg), never copied into the repository."""
    if not THIRD_PARTY.is_dir():
        pytest.skip(f"third-party media (dance.mp4, ref_girl.png, ref_woman.jpg) not found at {THIRD_PARTY}")
    return THIRD_PARTY
