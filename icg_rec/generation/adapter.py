"""The cover adapter: a resampler that turns meta-token states into K tokens of the UNet's cross-attention width.

The resampler *is* diffusers' `IPAdapterPlusImageProjection` (learned latents cross-attending to the
meta-token states), so the same weights serve two ways of conditioning a UNet:

* as `prompt_embeds` (`encoder_hidden_states`), optionally after a prompt's text tokens;
* as an IP-Adapter-Plus state dict (`to_ip_adapter_state_dict`), which a stock diffusers pipeline
  loads with `pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", image_encoder_folder=None)`
  and feeds with `ip_adapter_image_embeds=[meta_states[:, None]]`.

diffusers rebuilds the resampler from the key layout with depth 4 and 64-wide heads, so those two
numbers are fixed here rather than configurable.
"""

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection

from icg_rec.errors import CheckpointError
from icg_rec.generation.modules import (
    ModelMixin,  # noqa: F401  (diffusers looks a component's base class up here)
    PipelineModule,
)

RESAMPLER_DEPTH = 4  # diffusers' IP-Adapter loader always builds 4 resampler blocks
HEAD_DIM = 64  # diffusers' IP-Adapter loader infers heads as width // 64


@dataclass
class AdapterConfig:
    meta_dim: int = 128  # width of the (user-refined) meta-token states it reads
    num_tokens: int = 8  # conditioning tokens handed to the UNet (K)
    cross_attention_dim: int = 64  # must equal the UNet's cross-attention width
    heads: int = 1  # resampler attention heads; its inner width is heads * 64


class CoverAdapter(PipelineModule):
    """Resampler from meta-token states (batch, N, meta_dim) to UNet tokens (batch, K, cross_attention_dim)."""

    config_class = AdapterConfig
    file_stem = "adapter"

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.resampler = IPAdapterPlusImageProjection(
            embed_dims=config.meta_dim,
            output_dims=config.cross_attention_dim,
            hidden_dims=config.heads * HEAD_DIM,
            depth=RESAMPLER_DEPTH,
            dim_head=HEAD_DIM,
            heads=config.heads,
            num_queries=config.num_tokens,
        )

    def forward(self, meta_states: torch.Tensor) -> torch.Tensor:
        """Maps meta-token states to UNet conditioning tokens.

        Args:
            meta_states: (batch, N, meta_dim) hidden states at the meta positions (after user refinement).

        Returns:
            (batch, num_tokens, cross_attention_dim) tokens for the UNet's cross-attention.
        """
        if meta_states.ndim != 3 or meta_states.shape[-1] != self.config.meta_dim:
            raise ValueError(
                f"adapter expects meta states (batch, N, {self.config.meta_dim}), got {tuple(meta_states.shape)}"
            )
        return self.resampler(meta_states)  # (batch, K, cross_attention_dim)

    def check_unet(self, unet: UNet2DConditionModel) -> None:
        """Raises CheckpointError if the adapter's token width does not match the UNet's cross-attention width."""
        width = unet.config.cross_attention_dim
        if width != self.config.cross_attention_dim:
            raise CheckpointError(
                f"adapter produces tokens of width {self.config.cross_attention_dim} but the UNet's "
                f"cross_attention_dim is {width}; build the adapter with cross_attention_dim={width}"
            )

    def to_ip_adapter_state_dict(self, unet: UNet2DConditionModel) -> dict[str, dict[str, torch.Tensor]]:
        """Exports the adapter as an IP-Adapter-Plus state dict for `pipe.load_ip_adapter`.

        `image_proj` holds the resampler in the original IP-Adapter key layout (a `latents` key makes
        diffusers build an `IPAdapterPlusImageProjection`). `ip_adapter` holds, for every cross-attention
        layer, `to_k_ip` / `to_v_ip` copied from the UNet's own `to_k` / `to_v`: the adapter was trained
        through those projections, so the decoupled attention reads its tokens the same way.

        Args:
            unet: the UNet the adapter was trained with (its cross-attention K/V weights are copied).

        Returns:
            {"image_proj": {...}, "ip_adapter": {"1.to_k_ip.weight": ..., "1.to_v_ip.weight": ..., ...}}.
        """
        self.check_unet(unet)
        image_proj = _to_original_resampler_keys(self.resampler.state_dict())
        ip_adapter: dict[str, torch.Tensor] = {}
        key_id = 1  # diffusers numbers cross-attention layers 1, 3, 5, ... in attn_processors order
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            attention = unet.get_submodule(name.removesuffix(".processor"))
            ip_adapter[f"{key_id}.to_k_ip.weight"] = attention.to_k.weight.detach().clone()
            ip_adapter[f"{key_id}.to_v_ip.weight"] = attention.to_v.weight.detach().clone()
            key_id += 2
        return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def _to_original_resampler_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverts diffusers' `_convert_ip_adapter_image_proj_to_diffusers` for an IPAdapterPlusImageProjection."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.detach().clone()
        if not key.startswith("layers."):
            out[key] = value  # latents, proj_in, proj_out, norm_out
            continue
        _, index, rest = key.split(".", 2)
        prefix = f"layers.{index}"
        if rest.startswith("ln0."):
            out[f"{prefix}.0.norm1.{rest[4:]}"] = value
        elif rest.startswith("ln1."):
            out[f"{prefix}.0.norm2.{rest[4:]}"] = value
        elif rest == "attn.to_q.weight":
            out[f"{prefix}.0.to_q.weight"] = value
        elif rest == "attn.to_k.weight":
            to_v = state[f"{prefix}.attn.to_v.weight"].detach()
            out[f"{prefix}.0.to_kv.weight"] = torch.cat([value, to_v], dim=0)
        elif rest == "attn.to_v.weight":
            continue  # folded into to_kv above
        elif rest == "attn.to_out.0.weight":
            out[f"{prefix}.0.to_out.weight"] = value
        elif rest.startswith("ff.0."):
            out[f"{prefix}.1.0.{rest[5:]}"] = value
        elif rest == "ff.1.net.0.proj.weight":
            out[f"{prefix}.1.1.weight"] = value
        elif rest == "ff.1.net.2.weight":
            out[f"{prefix}.1.3.weight"] = value
        else:
            raise CheckpointError(f"resampler weight {key!r} has no IP-Adapter equivalent")
    return out


def prompt_embeds(tokens: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Builds `encoder_hidden_states` from adapter tokens, optionally after a prompt's text tokens.

    Args:
        tokens: (batch, K, D) adapter tokens.
        text_embeds: optional (batch, T, D) text-encoder states (e.g. a CLIP prompt) placed first.

    Returns:
        (batch, T + K, D) conditioning for the UNet.
    """
    if text_embeds is None:
        return tokens
    if text_embeds.shape[0] != tokens.shape[0] or text_embeds.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            f"text embeddings {tuple(text_embeds.shape)} do not match adapter tokens {tuple(tokens.shape)} "
            "in batch size and width"
        )
    return torch.cat([text_embeds, tokens], dim=1)  # (batch, T + K, D)
