"""Person masks for Wan-Animate's replacement mode, from MediaPipe's selfie segmentation.

The official preprocessing segments the dancer with SAM 2, prompted by the pose; SAM 2 needs its own 900 MB of
weights and a GPU. MediaPipe 0.10.21 bundles a selfie-segmentation model that runs offline on a CPU in ~15 ms a frame,
which is what we use; the mask is then dilated and blocked as the official defaults do (pose/wan.py), which hides most
of the difference at the silhouette's edge.
"""

from __future__ import annotations

import numpy as np

MASK_THRESHOLD = 0.5  # the segmenter's person probability above which a pixel counts as the person


class PersonSegmenter:
    """Per-frame person masks: `segmenter.mask(rgb)` -> (height, width) uint8, 1 where the person is."""

    def __init__(self):
        import mediapipe as mp  # imported here: only replacement mode needs it

        # model_selection 0 is the general model (256x256 input); 1, the landscape one, is tuned for video calls.
        self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def mask(self, image: np.ndarray) -> np.ndarray:
        probability = self._model.process(np.ascontiguousarray(image)).segmentation_mask
        return (probability > MASK_THRESHOLD).astype(np.uint8)

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> PersonSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
