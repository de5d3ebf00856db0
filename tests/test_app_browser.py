"""The app in a real browser (Debian's chromium driven by playwright): what a user does, click by click.

Upload the character and the real dance video, preview the skeleton, animate with few steps at a small size, wait for
the result and keep a screenshot (its path is printed; set APP_SCREENSHOTS to keep it in a folder of your choice).
"""

import os
import re
import time
from pathlib import Path

import pytest
from test_app import app_home, app_module, app_url  # noqa: F401 - the same server as the API tests

from animate.generate import model_defaults
from animate.weights import WEIGHTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def page(app_url):  # noqa: F811 - the fixture imported above
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app_url)
        yield page
        browser.close()


def set_number(page, elem_id: str, value: float) -> None:
    """Types into a slider's number box, as a user does."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_upload_preview_animate_and_see_the_result(page, media_dir, tmp_path):
    from playwright.sync_api import expect

    page.locator("#animate").click()  # nothing uploaded yet: a message, not a crash
    expect(page.get_by_text("Upload a character image first")).to_be_visible(timeout=30_000)

    page.locator("#character input[type=file]").set_input_files(media_dir / "ref_hero.png")
    page.locator("#driving-video input[type=file]").set_input_files(media_dir / "hero_dance.mp4")
    expect(page.locator("#video-info")).to_contain_text("Raw video", timeout=60_000)
    expect(page.locator("#video-info")).to_contain_text("4.0 s")
    set_number(page, "clip-length", 0.5)
    set_number(page, "steps", 2)
    set_number(page, "resolution", 64)
    expect(page.locator("#resolution")).to_contain_text("Output 64×96 px")

    page.locator("#preview").click()
    expect(page.locator("#preview-info")).to_contain_text("12 frames at 24 fps, poses", timeout=120_000)
    expect(page.locator("#skeleton-video video")).to_be_visible()
    expect(page.locator("#overlay img")).to_be_visible()

    page.locator("#animate").click()
    expect(page.locator("#result-info")).to_contain_text(re.compile(r"Done in \d+ s"), timeout=300_000)
    expect(page.locator("#result-info")).to_contain_text("12 frames at 24 fps, 64×96")
    expect(page.locator("#result-info")).to_contain_text("The poses from the preview were reused")
    expect(page.locator("#result video")).to_be_visible()
    assert re.search(r"ref_hero-hero_dance-seed\d+\.mp4", page.locator("#result video").get_attribute("src"))

    folder = Path(os.environ.get("APP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / "animate.png", full_page=True)
    print(f"screenshot: {folder / 'animate.png'}")


def test_an_example_animates_with_the_built_in_model(page, tmp_path):
    """The first example (a puppet the model never saw, and the skeleton of the real dance) at the model's own
    settings, as a new user's first click. The time it took is printed, not asserted."""
    from playwright.sync_api import expect

    page.locator("#examples [data-testid=dataset-cell-0-0]").click()
    expect(page.locator("#video-info")).to_contain_text("Skeleton video", timeout=60_000)
    steps = model_defaults(WEIGHTS_DIR / "tiny")["steps"]
    expect(page.locator("#steps input[type=number]")).to_have_value(str(steps))  # the model's own default
    started = time.monotonic()
    page.locator("#animate").click()
    expect(page.locator("#result-info")).to_contain_text(re.compile(r"Done in \d+ s"), timeout=300_000)
    print(f"example animated in {time.monotonic() - started:.1f} s: {page.locator('#result-info').inner_text()}")
    expect(page.locator("#result-info")).to_contain_text("48 frames at 24 fps, 128×192")
    expect(page.locator("#result video")).to_be_visible()
    folder = Path(os.environ.get("APP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / "example.png", full_page=True)
    print(f"screenshot: {folder / 'example.png'}")


def test_wan_animate_shows_its_settings_previews_its_inputs_and_animates_in_both_modes(page, media_dir, tmp_path):
    """The tiny random Wan-Animate model (weights/custom/wan-tiny, as `python -m animate.engines.wan_tiny` makes
    it): choosing it shows its own settings (mode, segment length, prompt, fps) instead of the motion-module windows;
    the preview shows the pose video, the face crops and, in replace mode, the mask; and both modes give a video."""
    from playwright.sync_api import expect

    # (Gradio nests a group's div in another of the same id: hence `.first`.)
    expect(page.locator("#wan-settings").first).to_be_hidden()  # the built-in Animate Anyone model comes first
    page.locator("#model input").click()
    page.get_by_role("option", name="custom/wan-tiny (wan-animate)").click()
    expect(page.locator("#wan-settings").first).to_be_visible(timeout=30_000)
    expect(page.locator("#window-size").first).to_be_hidden()  # Animate Anyone's motion-module windows
    expect(page.locator("#steps input[type=number]")).to_have_value("4")  # its folder's defaults
    expect(page.locator("#segment-length input[type=number]")).to_have_value("17")

    page.locator("#character input[type=file]").set_input_files(media_dir / "ref_hero.png")
    page.locator("#driving-video input[type=file]").set_input_files(media_dir / "hero_dance.mp4")
    expect(page.locator("#video-info")).to_contain_text("Raw video", timeout=60_000)
    set_number(page, "clip-length", 0.25)
    set_number(page, "steps", 1)
    set_number(page, "resolution", 64)
    set_number(page, "segment-length", 5)
    page.locator("#mode").get_by_text("replace", exact=True).click()

    page.locator("#preview").click()
    expect(page.locator("#preview-info")).to_contain_text("6 frames at 24 fps", timeout=120_000)
    expect(page.locator("#preview-info")).to_contain_text("the mask (red) over the driving video")
    expect(page.locator("#skeleton-video video")).to_be_visible()

    folder = Path(os.environ.get("APP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    for mode, seed, size in (("replace", 11, "64×112"), ("animate", 12, "64×96")):  # the dance's frame, the character's
        page.locator("#mode").get_by_text(mode, exact=True).click()
        page.locator("#seed input").fill(str(seed))
        page.locator("#animate").click()
        expect(page.locator("#result-info")).to_contain_text(
            f"6 frames at 24 fps, {size}, seed {seed}", timeout=300_000
        )
        expect(page.locator("#result video")).to_be_visible()
        page.screenshot(path=folder / f"wan_{mode}.png", full_page=True)
        print(f"screenshot: {folder / f'wan_{mode}.png'}")
