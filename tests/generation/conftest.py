"""Tiny models of the real classes, saved with `save_pretrained` so tests load them the way users do."""

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

WORDS = ["crimson", "night", "curse", "blue", "day", "song", "a", "b", "c"]
SPECIALS = ["<pad>", "<unk>", "</s>", "<image>"]


@pytest.fixture
def encoders(tiny_perception):
    image, text = tiny_perception
    return image(), text()


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return fast


def _text_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(SPECIALS) + len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=2,
        bos_token_id=2,
    )  # fmt: skip


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    """A random-init LlamaForCausalLM with a WordLevel tokenizer."""
    folder = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    LlamaForCausalLM(_text_config()).save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory) -> Path:
    """A random-init Llava (tiny CLIP vision tower + tiny Llama) with its processor."""
    folder = tmp_path_factory.mktemp("llava")
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8,
        projection_dim=16,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=_text_config(), image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
    )  # fmt: skip
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        image_token="<image>", num_additional_image_tokens=1,
    )  # fmt: skip
    processor.save_pretrained(folder)
    return folder


def tiny_unet(
    cross_attention_dim: int = 32, in_channels: int = 4, sample_size: int = 8
) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=8, sample_size=16,
    )  # fmt: skip


@pytest.fixture
def make_unet():
    """The tiny UNet builder (tests import no helpers: pytest runs in importlib mode)."""
    return tiny_unet


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    return _tokenizer()


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory) -> Path:
    """A random-init SD-1.5-layout folder: unet/ (latent, 8x8), vae/ (16 px covers), scheduler/ (DDIM)."""
    folder = tmp_path_factory.mktemp("sd15")
    torch.manual_seed(0)
    tiny_unet().save_pretrained(folder / "unet")
    tiny_vae().save_pretrained(folder / "vae")
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture
def covers() -> torch.Tensor:
    """Four 16x16 reference covers: flat red, green, blue, grey."""
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.5, 0.5, 0.5]])
    return colours[:, :, None, None].expand(4, 3, 16, 16).clone()
