"""From per-frame detections to one steady person: follow the main dancer, fill short gaps, smooth over time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .keypoints import CONFIDENCE_THRESHOLD, NUM_BODY, NUM_POINTS, Person, PoseFrame, PoseSequence

# A person matches a track when their shared body points lie, on average, within this fraction of the track's body
# size (the diagonal of its box): far more than anyone moves between two frames, far less than the gap between
# two dancers side by side.
MATCH_DISTANCE = 0.5
# One-Euro filter (Casiraghi et al., CHI 2012) in frame heights and seconds: 1.5 Hz cut-off at rest removes
# detector jitter; the cut-off rises by 2.5 Hz per frame-height-per-second of speed, so fast moves keep up.
MIN_CUTOFF_HZ = 1.5
SPEED_COEFFICIENT = 2.5
DERIVATIVE_CUTOFF_HZ = 1.0


@dataclass
class _Track:
    people: dict[int, Person] = field(default_factory=dict)  # frame index -> person
    last_index: int = -1
    weight: float = 0.0  # summed over frames: body height x share of body points seen


def follow_main_person(frames: list[PoseFrame], max_gap: int) -> list[PoseFrame]:
    """Keeps only the main dancer in each frame (an empty frame where they are not seen).

    People are linked from frame to frame by position (a track survives up to `max_gap` missed frames); the main
    dancer is the track that is biggest for longest, so a passer-by or a large person in one frame does not win.
    """
    tracks: list[_Track] = []
    for index, frame in enumerate(frames):
        aspect = frame.width / frame.height
        active = [track for track in tracks if index - track.last_index <= max_gap + 1]
        pairs = sorted(
            (_distance(track.people[track.last_index], person, aspect), track_number, person_number)
            for track_number, track in enumerate(active)
            for person_number, person in enumerate(frame.people)
        )
        matched_tracks, matched_people = set(), set()
        for distance, track_number, person_number in pairs:
            if distance > MATCH_DISTANCE or track_number in matched_tracks or person_number in matched_people:
                continue
            matched_tracks.add(track_number)
            matched_people.add(person_number)
            _add(active[track_number], index, frame.people[person_number])
        for person_number, person in enumerate(frame.people):
            if person_number not in matched_people:
                tracks.append(_add(_Track(), index, person))

    main = max(tracks, key=lambda track: track.weight, default=_Track())
    return [
        PoseFrame(people=[main.people[index]] if index in main.people else [], width=frame.width, height=frame.height)
        for index, frame in enumerate(frames)
    ]


def fill_gaps(sequence: PoseSequence, max_gap: int) -> PoseSequence:
    """Interpolates each point linearly across gaps of at most `max_gap` frames where it was not seen, between two
    frames where it was. A frame where nobody was found and that gets a body this way is listed in `interpolated`;
    longer gaps stay empty (they are `missing_frames`). Expects one person per frame (`follow_main_person`)."""
    points, present = _stack(sequence)
    seen = points[..., 2] > CONFIDENCE_THRESHOLD  # (frames, points)
    for point in range(points.shape[1]):
        seen_at = np.flatnonzero(seen[:, point])
        for before, after in zip(seen_at[:-1], seen_at[1:], strict=True):
            if not 1 < after - before <= max_gap + 1:
                continue
            weights = (np.arange(before + 1, after) - before)[:, None] / (after - before)
            start, end = points[before, point], points[after, point]
            points[before + 1 : after, point, :2] = start[:2] + weights * (end[:2] - start[:2])
            points[before + 1 : after, point, 2] = min(start[2], end[2])
    filled = (points[:, :NUM_BODY, 2] > CONFIDENCE_THRESHOLD).any(axis=1) & ~present
    interpolated = sorted(set(sequence.interpolated) | set(np.flatnonzero(filled).tolist()))
    return replace(sequence, frames=_unstack(sequence, points, present | filled), interpolated=interpolated)


def smooth_sequence(sequence: PoseSequence) -> PoseSequence:
    """One-Euro filters every seen point over time, forwards and backwards, and averages the two passes: the
    clip is smoothed offline, so the backward pass cancels the forward one's lag. A point that disappears starts
    afresh when it comes back. Works in frame heights, so the same settings suit any resolution. Expects one
    person per frame."""
    points, present = _stack(sequence)
    seen = points[..., 2] > CONFIDENCE_THRESHOLD
    to_heights = np.array([sequence.width / sequence.height, 1.0], dtype=np.float32)
    positions = points[..., :2] * to_heights
    forward = _one_euro(positions, seen, sequence.fps)
    backward = _one_euro(positions[::-1], seen[::-1], sequence.fps)[::-1]
    points[..., :2] = np.where(seen[..., None], (forward + backward) / 2 / to_heights, points[..., :2])
    return replace(sequence, frames=_unstack(sequence, points, present))


def _one_euro(positions: np.ndarray, seen: np.ndarray, fps: float) -> np.ndarray:
    """One pass of the One-Euro filter over (frames, points, 2) positions; unseen points are left as they are."""
    period = 1.0 / fps
    derivative_alpha = _alpha(DERIVATIVE_CUTOFF_HZ, period)
    filtered = positions.copy()
    velocity = np.zeros_like(positions[0])
    for index in range(1, len(positions)):
        update = seen[index] & seen[index - 1]  # a point seen in the previous frame too; others restart
        raw_velocity = (positions[index, update] - filtered[index - 1, update]) / period
        velocity[update] = derivative_alpha * raw_velocity + (1 - derivative_alpha) * velocity[update]
        velocity[~update] = 0.0
        cutoff = MIN_CUTOFF_HZ + SPEED_COEFFICIENT * np.linalg.norm(velocity[update], axis=1)
        alpha = _alpha(cutoff, period)[:, None]
        filtered[index, update] = alpha * positions[index, update] + (1 - alpha) * filtered[index - 1, update]
    return filtered


def _alpha(cutoff_hz: float | np.ndarray, period: float) -> float | np.ndarray:
    """Weight of the new sample in an exponential filter with this cut-off frequency."""
    time_constant = 1.0 / (2 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + time_constant / period)


def _add(track: _Track, index: int, person: Person) -> _Track:
    track.people[index] = person
    track.last_index = index
    box = person.body_box()
    if box is not None:
        track.weight += (box[3] - box[1]) * float((person.body[:, 2] > CONFIDENCE_THRESHOLD).mean())
    return track


def _distance(a: Person, b: Person, aspect: float) -> float:
    """Mean distance between the body points both people show, in units of `a`'s body size; inf if they share
    fewer than two points."""
    shared = (a.body[:, 2] > CONFIDENCE_THRESHOLD) & (b.body[:, 2] > CONFIDENCE_THRESHOLD)
    box = a.body_box()
    if shared.sum() < 2 or box is None:
        return math.inf
    scale = np.array([aspect, 1.0])
    size = max(float(np.hypot((box[2] - box[0]) * aspect, box[3] - box[1])), 0.05)
    offsets = (a.body[shared, :2] - b.body[shared, :2]) * scale
    return float(np.linalg.norm(offsets, axis=1).mean()) / size


def _stack(sequence: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """(frames, NUM_POINTS, 3) points of each frame's first person (zeros where none) and a (frames,) presence mask."""
    points = np.zeros((len(sequence.frames), NUM_POINTS, 3), dtype=np.float32)
    present = np.zeros(len(sequence.frames), dtype=bool)
    for index, frame in enumerate(sequence.frames):
        if frame.people:
            points[index] = frame.people[0].points()
            present[index] = True
    return points, present


def _unstack(sequence: PoseSequence, points: np.ndarray, present: np.ndarray) -> list[PoseFrame]:
    return [
        PoseFrame(
            people=[Person.from_points(points[index].copy())] if present[index] else [],
            width=frame.width,
            height=frame.height,
        )
        for index, frame in enumerate(sequence.frames)
    ]
