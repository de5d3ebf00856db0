"""A public clone has no ../shared: the suite must collect, and the tests of the fixtures and of real media must run,
from what the repository holds (tests/data). Clones the committed HEAD into a folder with nothing beside it."""

import subprocess
import sys

from conftest import ROOT


def test_a_clone_without_shared_collects_the_suite_and_runs_the_fixture_and_media_tests(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    assert not (clone.parent / "shared").exists()

    def pytest(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        return subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=1200)

    collected = pytest("--collect-only")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1]

    for test in sorted((clone / "tests").glob("*.py")):
        if test.name == "test_public_clone.py":
            continue
        assert "shared/" not in test.read_text(), f"{test.name} reads from ../shared, which a public clone lacks"
    media = "tests/test_pose_video.py::test_reading_from_a_start_frame_gives_exactly_those_frames"
    fixture_tests = [f"tests/test_{name}.py" for name in ("moore_fixture", "checkpoints", "pose_draw")]
    fixtures = pytest("-rs", *fixture_tests, media)
    assert fixtures.returncode == 0, fixtures.stdout[-3000:]
    summary = fixtures.stdout.splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary, summary
