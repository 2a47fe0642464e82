"""Tiny models of the real classes, saved with `save_pretrained` so tests load them the way users do."""

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

WORDS = ["crimson", "night", "curse", "blue", "day", "song", "a", "b", "c"]
BASE_SPECIALS = ["<pad>", "<unk>", "</s>"]
SPECIALS = [*BASE_SPECIALS, "<image>"]
QWEN2VL_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IDEFICS3_SPECIALS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]


@pytest.fixture
def encoders(tiny_perception):
    image, text = tiny_perception
    return image(), text()


def _tokenizer(extra: tuple[str, ...] = ("<image>",)) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over WORDS; `extra` are the model's special (image) tokens."""
    vocab = {token: i for i, token in enumerate([*BASE_SPECIALS, *extra, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
    )
    fast.add_special_tokens({"additional_special_tokens": list(extra)})
    return fast


def _text_config(vocab_size: int = len(SPECIALS) + len(WORDS)) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
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


@pytest.fixture(scope="session")
def qwen2vl_dir(tmp_path_factory) -> Path:
    """A random-init Qwen2-VL (1-block vision tower, 4 px patches, 2x2 merge; 1-layer text model) with the files
    of its processor: tokenizer and image processor. A 16 px cover is 4x4 patches, i.e. 4 <|image_pad|> tokens.

    The processor is saved in parts because `Qwen2VLProcessor` cannot be constructed without torchvision
    (its video processor needs it); a real checkpoint folder holds the same files.
    """
    folder = tmp_path_factory.mktemp("qwen2vl")
    torch.manual_seed(0)
    tokenizer = _tokenizer(tuple(QWEN2VL_SPECIALS))
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2VL_SPECIALS}
    text = {
        "vocab_size": len(BASE_SPECIALS) + len(QWEN2VL_SPECIALS) + len(WORDS), "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "max_position_embeddings": 128, "pad_token_id": 0, "eos_token_id": 2, "bos_token_id": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
    }  # fmt: skip  # head_dim 8 = 4 rotary pairs, split over M-RoPE's (time, height, width)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2, "mlp_ratio": 2, "patch_size": 4,
            "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(
        size={"shortest_edge": 16 * 16, "longest_edge": 16 * 16},
        patch_size=4,
        merge_size=2,
        temporal_patch_size=2,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def idefics3_dir(tmp_path_factory) -> Path:
    """A random-init Idefics3 (SmolVLM's architecture: tiny SigLIP tower, 2x pixel shuffle, 1-layer Llama) with its
    processor, no image splitting: a 16 px cover is 4x4 patches shuffled into 4 <image> tokens."""
    folder = tmp_path_factory.mktemp("idefics3")
    torch.manual_seed(0)
    tokenizer = _tokenizer(tuple(IDEFICS3_SPECIALS))
    text = _text_config(len(BASE_SPECIALS) + len(IDEFICS3_SPECIALS) + len(WORDS)).to_dict()
    config = Idefics3Config(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": 16, "patch_size": 4},
        text_config=text, scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=0,
    )  # fmt: skip
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 16}, max_image_size={"longest_edge": 16}
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
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
