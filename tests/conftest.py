"""Shared test set-up: no network; the fixtures and media the tests need, from the repository itself.

`tests/data/` holds all of it (see its README): the compatibility fixtures (`reference/`) and real media under the
Apache-2.0 licence (`media/`), so that a clone of the repository runs the whole suite.
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


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The Moore-AnimateAnyone and Wan-Animate compatibility fixtures and the released weights' key manifest."""
    return REFERENCE


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Real media in the repository: ref_anime.png, ref_hero.png, hero_dance.mp4 (a raw video with sound),
    dance_kps.mp4 (a skeleton video), pose.png."""
    return MEDIA
