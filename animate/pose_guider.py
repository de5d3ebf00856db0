"""The Pose Guider: a small conv net that turns a skeleton image into features added after the UNet's `conv_in`.

Animate Anyone (Hu et al. 2023, §3.2) uses four conv layers (4x4 kernels, stride 2, channels 16/32/64/128); the
released weights (Moore-AnimateAnyone) use 3x3 convs with channels (16, 32, 96, 256) and a zero-initialised
output conv to 320 channels. That is exactly diffusers' `ControlNetConditioningEmbedding` (same layers, same
parameter names, SiLU between them), so we reuse it and only add what makes it a saveable diffusers model.
"""

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.modeling_utils import ModelMixin


class PoseGuider(ControlNetConditioningEmbedding, ModelMixin, ConfigMixin):
    """Skeleton images (batch * frames, 3, H, W) in [0, 1] -> features (batch * frames, C, H / 8, W / 8).

    With three stride-2 stages (four channel entries), the output is at latent resolution. Its state dict has the
    keys of the released `pose_guider.pth` (`conv_in`, `blocks.{0..5}`, `conv_out`).
    """

    @register_to_config
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__(conditioning_embedding_channels, conditioning_channels, tuple(block_out_channels))
