"""Plug-and-play image encoders: random-init CLIP / SigLIP saved with save_pretrained load by path."""

import json

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from icg_rec.encoders import HFImageEncoder, load_image_encoder, load_text_encoder
from icg_rec.errors import CheckpointError

VISION = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)
TEXT = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=2,
    vocab_size=99,
    max_position_embeddings=16,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]


def _pixels(size: int = 40) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def _resized(pixels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(pixels, size=(32, 32), mode="bilinear", antialias=True)


def test_clip_vision_tower_loads_by_path_and_is_differentiable(tmp_path):
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=16, **VISION)).eval()
    model.save_pretrained(tmp_path / "clip-vision")
    encoder = load_image_encoder(str(tmp_path / "clip-vision"))
    assert isinstance(encoder, HFImageEncoder) and encoder.dim == 16 and encoder.image_size == 32

    pixels = _pixels().requires_grad_(True)
    emb = encoder(pixels)
    with torch.no_grad():
        expected = model(pixel_values=(_resized(pixels) - CLIP_MEAN) / CLIP_STD).image_embeds
    torch.testing.assert_close(emb, expected)
    emb.sum().backward()
    assert pixels.grad.abs().sum() > 0 and not any(p.requires_grad for p in encoder.parameters())


def test_full_clip_model_loads_its_vision_side_with_the_projection(tmp_path):
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)).eval()
    model.save_pretrained(tmp_path / "clip")
    encoder = load_image_encoder(str(tmp_path / "clip"))
    pixels = _pixels()
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=(_resized(pixels) - CLIP_MEAN) / CLIP_STD)
        torch.testing.assert_close(encoder(pixels), expected.pooler_output)
    assert encoder.dim == 16


def test_siglip_uses_the_folder_preprocessor_config(tmp_path):
    torch.manual_seed(0)
    model = SiglipVisionModel(SiglipVisionConfig(**VISION)).eval()
    model.save_pretrained(tmp_path / "siglip")
    processor = {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.6, 0.7]}
    (tmp_path / "siglip" / "preprocessor_config.json").write_text(json.dumps(processor))
    encoder = load_image_encoder(str(tmp_path / "siglip"))
    assert encoder.dim == 32
    mean = torch.tensor(processor["image_mean"])[:, None, None]
    std = torch.tensor(processor["image_std"])[:, None, None]
    pixels = _pixels()
    with torch.no_grad():
        expected = model(pixel_values=(_resized(pixels) - mean) / std).pooler_output
        torch.testing.assert_close(encoder(pixels), expected)
    emb = encoder.encode([_to_pil(pixels[0]), _to_pil(pixels[1])])
    assert emb.shape == (2, 32) and emb.dtype == np.float32


def _to_pil(pixels: torch.Tensor):
    from PIL import Image

    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_a_clip_tower_without_projection_is_refused(tmp_path):
    CLIPVisionModel(CLIPVisionConfig(**VISION)).save_pretrained(tmp_path / "no-proj")
    with pytest.raises(CheckpointError, match=r"lacks 1 weight\(s\) of CLIPVisionModelWithProjection"):
        load_image_encoder(str(tmp_path / "no-proj"))


def test_unsupported_or_missing_checkpoints_are_refused(tmp_path):
    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(CheckpointError, match="holds a 'bert' model; HFImageEncoder supports"):
        load_image_encoder(str(tmp_path / "bert"))
    with pytest.raises(CheckpointError, match="no config.json"):
        load_image_encoder(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("load", [load_image_encoder, load_text_encoder])
def test_a_folder_without_weights_is_refused_before_anything_is_built(tmp_path, load):
    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"bert holds no weights \(\*.safetensors"):
        load(str(tmp_path / "bert"))
