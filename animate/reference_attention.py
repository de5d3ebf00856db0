"""Reference attention: how the character's appearance reaches every generated frame (Animate Anyone §3.2).

ReferenceNet (a copy of the SD UNet) runs once on the reference image's latents. In each of its spatial
transformer blocks, the input of the self-attention `attn1` (the `norm1` output) is recorded. In the denoising
UNet, the same-named `attn1` then attends from the frame's tokens to `cat([frame tokens, reference tokens])`,
with its own `to_k`/`to_v` weights: no new parameters.

Both sides are diffusers attention processors, paired by module name through a shared `ReferenceFeatures`
object, instead of the reference implementation's monkey-patched `forward` and width-sorted bank lists (which
pair the same blocks in SD1.5; pairing by name cannot go wrong when two blocks have the same width).

Classifier-free guidance follows the reference: the unconditional half of the batch does plain self-attention
(no reference tokens), which `ReferenceFeatures.reading` expresses per video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


class ReferenceFeatures:
    """What ReferenceNet wrote, by module name, and which videos of the next denoising batch read it.

    `features[name]`: (reference_batch, reference_tokens, channels), where reference_batch is 1 (one character
    shared by the whole batch) or the number of videos in the denoising batch (one character per video).
    `reading`: (videos,) bool; a video whose entry is False gets plain self-attention (the unconditional branch).
    """

    def __init__(self):
        self.features: dict[str, torch.Tensor] = {}
        self.reading: torch.Tensor | None = None

    def clear(self) -> None:
        self.features.clear()
        self.reading = None


class ReferenceWriter(AttnProcessor2_0):
    """ReferenceNet side: records the attention input, then attends as usual."""

    def __init__(self, name: str, store: ReferenceFeatures):
        super().__init__()
        self.name = name
        self.store = store

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Assigned, not appended: a recomputation under gradient checkpointing overwrites the same entry
        # instead of growing the bank (a reported memory leak of the reference implementation).
        self.store.features[self.name] = hidden_states
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReader:
    """Denoising-UNet side: self-attention whose keys and values also cover the reference tokens."""

    def __init__(self, name: str, store: ReferenceFeatures):
        self.name = name
        self.store = store

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        reading = self.store.reading
        reference = self.store.features.get(self.name)
        if reading is None or reference is None:
            raise RuntimeError(
                f"No reference features for {self.name}: run ReferenceNet (with ReferenceWriter processors) and set "
                "ReferenceFeatures.reading before calling the denoising UNet."
            )
        rows = hidden_states.shape[0]  # (videos * frames, tokens, channels)
        frames = rows // reading.numel()
        rows_reading = reading.repeat_interleave(frames)

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        output = torch.empty_like(query)

        plain = ~rows_reading
        if plain.any():
            output[plain] = _attention(attn, query[plain], key[plain], value[plain])
        if rows_reading.any():
            # Project the reference tokens once per character and share them across its frames: the same result
            # as projecting the per-frame copies the reference implementation concatenates, for 1/frames the work.
            reference_key = attn.to_k(reference.to(hidden_states.dtype))
            reference_value = attn.to_v(reference.to(hidden_states.dtype))
            if reference.shape[0] > 1:  # one character per video: keep the reading videos' ones
                reference_key = reference_key[reading].repeat_interleave(frames, dim=0)
                reference_value = reference_value[reading].repeat_interleave(frames, dim=0)
            else:
                reading_rows = int(rows_reading.sum())
                reference_key = reference_key.expand(reading_rows, -1, -1)
                reference_value = reference_value.expand(reading_rows, -1, -1)
            # (reading rows, tokens + reference tokens, inner channels)
            key_with_reference = torch.cat([key[rows_reading], reference_key], dim=1)
            value_with_reference = torch.cat([value[rows_reading], reference_value], dim=1)
            output[rows_reading] = _attention(attn, query[rows_reading], key_with_reference, value_with_reference)

        output = attn.to_out[0](output)
        return attn.to_out[1](output)  # dropout


def _attention(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head scaled dot-product attention on (rows, tokens, heads * head_dim) projections."""
    rows, _, inner = query.shape
    head_dim = inner // attn.heads
    # (rows, heads, tokens, head_dim)
    query, key, value = (x.view(rows, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    hidden_states = F.scaled_dot_product_attention(query, key, value)
    return hidden_states.transpose(1, 2).reshape(rows, -1, inner)


def spatial_self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Names of the spatial transformer blocks' `attn1` modules (not the motion modules', not cross-attention)."""
    return [
        name
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith(".attn1") and ".attentions." in name
    ]


def install_reference_attention(
    reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module, store: ReferenceFeatures
) -> None:
    """Sets writers on ReferenceNet's and readers on the denoising UNet's spatial `attn1`, paired by name."""
    writer_names = spatial_self_attention_names(reference_unet)
    reader_names = spatial_self_attention_names(denoising_unet)
    if writer_names != reader_names:
        raise ValueError(
            "ReferenceNet and the denoising UNet have different spatial attention layers: "
            f"only in ReferenceNet {sorted(set(writer_names) - set(reader_names))}, "
            f"only in the denoising UNet {sorted(set(reader_names) - set(writer_names))}"
        )
    for unet, processor_class in ((reference_unet, ReferenceWriter), (denoising_unet, ReferenceReader)):
        for name in writer_names:
            attention = unet.get_submodule(name)
            plain = attention.group_norm is None and attention.spatial_norm is None and attention.norm_q is None
            if not plain or attention.residual_connection or attention.rescale_output_factor != 1.0:
                raise ValueError(f"{name}: reference attention supports plain SD self-attention layers only")
            attention.set_processor(processor_class(name, store))
