import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from transformers import CLIPTextConfig, CLIPTextModel

from icg_rec.errors import CheckpointError
from icg_rec.generation.adapter import AdapterConfig, CoverAdapter, prompt_embeds


def _adapter(cross_attention_dim: int = 32) -> CoverAdapter:
    torch.manual_seed(0)
    return CoverAdapter(AdapterConfig(meta_dim=12, num_tokens=4, cross_attention_dim=cross_attention_dim))


def test_adapter_maps_meta_states_to_unet_tokens():
    adapter = _adapter()
    tokens = adapter(torch.randn(3, 5, 12))
    assert tokens.shape == (3, 4, 32)


def test_adapter_save_load_round_trip(tmp_path):
    adapter = _adapter()
    adapter.save_pretrained(tmp_path)
    loaded = CoverAdapter.from_pretrained(tmp_path)
    meta = torch.randn(2, 5, 12)
    assert loaded.config == adapter.config
    torch.testing.assert_close(loaded(meta), adapter(meta), rtol=0, atol=0)


def test_adapter_load_refuses_weights_of_another_config(tmp_path):
    _adapter().save_pretrained(tmp_path)
    (tmp_path / "adapter_config.json").write_text(
        '{"meta_dim": 12, "num_tokens": 6, "cross_attention_dim": 32, "heads": 1}'
    )
    with pytest.raises(CheckpointError, match="does not match"):
        CoverAdapter.from_pretrained(tmp_path)


def test_adapter_rejects_meta_states_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"\(batch, N, 12\)"):
        _adapter()(torch.randn(2, 5, 13))


def test_adapter_width_must_match_the_unet(make_unet):
    with pytest.raises(CheckpointError, match="cross_attention_dim is 32"):
        _adapter(cross_attention_dim=48).check_unet(make_unet(cross_attention_dim=32))


def test_prompt_embeds_concatenates_text_tokens_first():
    tokens, text = torch.randn(2, 4, 32), torch.randn(2, 7, 32)
    joined = prompt_embeds(tokens, text)
    assert joined.shape == (2, 11, 32)
    torch.testing.assert_close(joined[:, 7:], tokens)
    with pytest.raises(ValueError, match="do not match"):
        prompt_embeds(tokens, torch.randn(2, 7, 16))


def _stock_pipeline(tokenizer, make_unet) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, vocab_size=99
        )
    )
    return StableDiffusionPipeline(
        vae=None, text_encoder=text_encoder, tokenizer=tokenizer, unet=make_unet(in_channels=4),
        scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False,
    )  # fmt: skip


def test_ip_adapter_export_loads_into_a_stock_pipeline_and_runs(tokenizer, make_unet):
    pipe = _stock_pipeline(tokenizer, make_unet)
    adapter = _adapter(cross_attention_dim=32)
    state = adapter.to_ip_adapter_state_dict(pipe.unet)
    assert "latents" in state["image_proj"]
    # 4 cross-attention layers (down, mid, 2 up), numbered 1, 3, 5, 7 as diffusers expects
    assert sorted(state["ip_adapter"]) == [f"{i}.to_{kv}_ip.weight" for i in (1, 3, 5, 7) for kv in "kv"]

    pipe.load_ip_adapter(state, subfolder="", weight_name="unused.safetensors", image_encoder_folder=None)

    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(projection, IPAdapterPlusImageProjection)
    meta = torch.randn(2, 5, 12)
    torch.testing.assert_close(projection(meta), adapter(meta))  # the same resampler, rebuilt by diffusers
    attn2 = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    torch.testing.assert_close(attn2.processor.to_k_ip[0].weight, attn2.to_k.weight)

    text = torch.randn(2, 3, 32)
    embeds = torch.cat([torch.zeros_like(meta), meta])[:, None]  # (2B, 1, N, meta_dim): negative first
    out = pipe(
        prompt_embeds=text, negative_prompt_embeds=torch.zeros_like(text), ip_adapter_image_embeds=[embeds],
        num_inference_steps=2, output_type="latent", height=64, width=64,
    ).images  # fmt: skip
    assert out.shape == (2, 4, 8, 8)
    assert torch.isfinite(out).all()


def test_adapter_tokens_condition_a_stock_pipeline_through_prompt_embeds(tokenizer, make_unet):
    pipe = _stock_pipeline(tokenizer, make_unet)
    tokens = _adapter(cross_attention_dim=32)(torch.randn(2, 5, 12))
    text = torch.randn(2, 3, 32)
    out = pipe(
        prompt_embeds=prompt_embeds(tokens, text), negative_prompt_embeds=torch.zeros(2, 7, 32),
        num_inference_steps=2, output_type="latent", height=64, width=64,
    ).images  # fmt: skip
    assert out.shape == (2, 4, 8, 8)
