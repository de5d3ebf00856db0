"""The app's job layer (animate/jobs.py): job folders, per-session cancellation, cleanup, clip lengths, the pose cache
that lets Animate reuse what Preview extracted, and the skeleton preview."""

import os
import subprocess
import threading
import time

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from animate.engines.animate_anyone import AnimateAnyoneEngine, write_preview
from animate.generate import GenerationCancelled, GenerationSettings
from animate.jobs import (
    JobBusyError,
    Jobs,
    PoseCache,
    clip_frames,
    new_job_id,
    result_name,
)
from pose.video import VideoInfo, probe_video, read_frames

ENGINE = AnimateAnyoneEngine()


def video_info(duration: float, fps: float) -> VideoInfo:
    return VideoInfo(path=None, width=64, height=64, fps=fps, duration=duration, has_audio=False)


def test_each_job_has_its_own_folder_and_a_session_runs_one_at_a_time(tmp_path):
    jobs = Jobs(tmp_path)
    first = jobs.start("alice", "animation")
    other = jobs.start("bob", "preview")
    assert first.folder.is_dir() and first.folder != other.folder and first.folder.parent == tmp_path
    with pytest.raises(JobBusyError) as busy:
        jobs.start("alice", "preview")
    assert busy.value.job is first
    assert [job.kind for job in jobs.active("animation")] == ["animation"]
    jobs.finish(first)
    assert first.done.is_set() and jobs.start("alice", "preview").kind == "preview"


def test_cancel_reaches_the_sessions_job_only(tmp_path):
    jobs = Jobs(tmp_path)
    job = jobs.start("alice", "animation")
    assert jobs.cancel("bob") is None and not job.cancel.is_set()
    assert jobs.cancel("alice") is job and job.cancel.is_set() and not job.timed_out


def test_a_job_past_its_time_limit_is_cancelled_and_says_so(tmp_path):
    jobs = Jobs(tmp_path, time_limit=0.2)
    job = jobs.start("alice", "animation")
    assert job.cancel.wait(5) and job.timed_out
    jobs.finish(job)
    quick = jobs.start("alice", "preview")
    jobs.finish(quick)
    time.sleep(0.4)
    assert not quick.cancel.is_set()  # a finished job's timer is stopped


def test_jobs_take_turns_on_the_gpu_in_order_and_a_waiting_job_can_leave(tmp_path):
    jobs = Jobs(tmp_path)
    first, second, third = (jobs.start(name, "animation") for name in ("a", "b", "c"))
    jobs.wait_for_gpu(first)
    places, turns = [], []

    def wait(job):
        try:
            jobs.wait_for_gpu(job, lambda fraction, message: places.append((job.session, message)))
            turns.append(job.session)
            jobs.gpu.release()
        except GenerationCancelled:
            turns.append(f"{job.session} left")

    threads = [threading.Thread(target=wait, args=(job,)) for job in (second, third)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    time.sleep(0.8)
    assert jobs.waiting() == 2
    assert ("b", "Waiting: 1 job is ahead of yours. It starts by itself.") in places
    assert ("c", "Waiting: 2 jobs are ahead of yours. It starts by itself.") in places
    jobs.cancel("c")
    jobs.gpu.release()
    for thread in threads:
        thread.join(10)
    assert sorted(turns) == ["b", "c left"] and jobs.waiting() == 0


def test_old_job_folders_are_cleaned_up_but_not_running_ones_or_other_files(tmp_path):
    jobs = Jobs(tmp_path, keep_seconds=3600)
    running = jobs.start("alice", "animation")
    old = tmp_path / new_job_id()
    old.mkdir()
    (tmp_path / "not-a-job").mkdir()
    day_ago = time.time() - 24 * 3600
    for folder in (old, running.folder, tmp_path / "not-a-job"):
        os.utime(folder, (day_ago, day_ago))
    assert jobs.clean_up() == [old]
    assert running.folder.is_dir() and (tmp_path / "not-a-job").is_dir()


def test_results_are_found_by_job_id_and_nothing_else(tmp_path):
    jobs = Jobs(tmp_path)
    job = jobs.start("alice", "animation")
    assert jobs.result(job.id) is None
    (job.folder / ".girl-dance-seed1.partial.mp4").write_bytes(b"being written")
    assert jobs.result(job.id) is None
    (job.folder / result_name("/up/ref girl.png", "/up/dance.mp4", 1)).write_bytes(b"mp4")
    assert jobs.result(job.id) == job.folder / "ref_girl-dance-seed1.mp4"
    for forged in ("../../etc", "..", "", job.id + "/../x"):
        assert jobs.result(forged) is None
    with pytest.raises(ValueError, match="not a job id"):
        jobs.start("bob", "animation", job_id="../escape")


@pytest.mark.parametrize(
    ("length", "unit", "stride", "frames", "capped"),
    [(1.0, "seconds", 1, 24, False), (1.0, "seconds", 2, 12, False), (30, "frames", 1, 30, False),
     (5.0, "seconds", 1, 48, True), (100, "frames", 2, 24, True)],
)  # fmt: skip
def test_clip_length_in_seconds_or_frames_is_cut_to_the_video_with_a_note(length, unit, stride, frames, capped):
    number, note = clip_frames(video_info(duration=2.0, fps=24), length, unit, stride)
    assert number == frames and bool(note) == capped
    if capped:
        assert "shorter than the" in note and "the whole video is animated" in note


def test_a_clip_of_no_frames_is_refused():
    with pytest.raises(ValueError, match="at least one frame"):
        clip_frames(video_info(duration=2.0, fps=24), 0.01, "seconds", 1)


@pytest.fixture(scope="module")
def dance_1s(media_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "dance_1s.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(media_dir / "hero_dance.mp4"), "-t", "1", "-c", "copy", str(path)],
                   check=True)  # fmt: skip
    return path


def test_pose_cache_reuses_extracted_poses_for_the_same_video_and_options(tmp_path, dance_1s, media_dir):
    cache = PoseCache(tmp_path / "weights")  # no DWPose there: MediaPipe
    character = np.asarray(Image.open(media_dir / "ref_hero.png").convert("RGB"))
    first, reused = ENGINE.prepare(character, dance_1s, 64, 112, GenerationSettings(max_frames=8), cache)
    assert not reused and len(first.frames) == 8 and first.frames[0].shape == (112, 64, 3)
    shorter, reused = ENGINE.prepare(character, dance_1s, 64, 112, GenerationSettings(max_frames=5), cache)
    assert reused and len(shorter.frames) == 5
    eight, _ = cache.driving_poses(dance_1s, GenerationSettings(max_frames=8))
    five, reused = cache.driving_poses(dance_1s, GenerationSettings(max_frames=5))
    assert reused and all(frame is cached for frame, cached in zip(five.frames, eight.frames[:5], strict=True))
    _, reused = ENGINE.prepare(character, dance_1s, 64, 112, GenerationSettings(max_frames=5, hands=False), cache)
    assert not reused  # other pose options: extracted again
    _, reused = ENGINE.prepare(character, dance_1s, 64, 112, GenerationSettings(max_frames=12), cache)
    assert not reused  # more frames than were extracted


def test_preview_of_a_skeleton_video_writes_its_frames_and_an_overlay(tmp_path, media_dir):
    cache = PoseCache(tmp_path / "weights")
    character = np.asarray(Image.open(media_dir / "ref_anime.png").convert("RGB"))
    skeletons, reused = ENGINE.prepare(
        character, media_dir / "dance_kps.mp4", 512, 680, GenerationSettings(max_frames=6), cache
    )
    assert skeletons.source == "skeleton video" and not reused
    path, overlay = write_preview(character, skeletons, tmp_path)
    assert probe_video(path).fps == 30 and len(list(read_frames(path))) == 6
    assert overlay.shape == (680, 512, 3)
    drawn = skeletons.frames[3].max(axis=2) > 30
    np.testing.assert_array_equal(overlay[drawn], skeletons.frames[3][drawn])  # the skeleton over the character
