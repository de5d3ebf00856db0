"""Context windows for videos longer than the motion modules' window, and how their overlaps are blended.

The reference implementation's "uniform" schedule wraps the last window around the clip's end (frames 6, 7, 0, 1
for 8 frames in windows of 4), which blends the end of the dance into its start, and averages overlaps with
equal weights, which leaves visible seams at window borders. Ours never wraps (the last window is moved back to
end at the last frame) and weights each window's frames by their distance to the window's edges, so that a
frame near a border is dominated by the window where it sits in the middle.
"""

from __future__ import annotations

import torch


def context_windows(num_frames: int, context_frames: int = 24, overlap: int = 4) -> list[list[int]]:
    """Frame indices of each window: consecutive, overlapping by at least `overlap`, covering every frame once or
    more, none past the end. A clip no longer than `context_frames` is one window."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if context_frames < 1:
        raise ValueError(f"context_frames must be at least 1, got {context_frames}")
    if not 0 <= overlap < context_frames:
        raise ValueError(f"context_overlap must be in [0, context_frames), got {overlap} for {context_frames}")
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - overlap
    starts = list(range(0, num_frames - context_frames, stride)) + [num_frames - context_frames]
    return [list(range(start, start + context_frames)) for start in starts]


def blend_weights(window_length: int, overlap: int, mode: str = "ramp") -> torch.Tensor:
    """(window_length,) positive weights of one window's frames when overlapping windows are averaged.

    "ramp": rises linearly over the first `overlap` frames and falls over the last `overlap` (a frame at a
    window's border counts 1/(overlap + 1) as much as one in its middle); "uniform": all ones, as the reference.
    """
    if mode == "uniform" or overlap == 0:
        return torch.ones(window_length)
    if mode != "ramp":
        raise ValueError(f"context blending must be 'ramp' or 'uniform', got {mode!r}")
    position = torch.arange(window_length, dtype=torch.float32)
    distance_to_edge = torch.minimum(position, window_length - 1 - position)
    return torch.clamp((distance_to_edge + 1) / (overlap + 1), max=1.0)
