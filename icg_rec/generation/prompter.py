"""Meta-token prompter: an MLLM reads an item's title and reference image, plus N learnable meta tokens.

The last hidden states at the meta positions are the item's conditioning. Three kinds of backbone:

* `embedded` (the default, `backbone=None`): a small Llama-architecture transformer built from config
  and trained with the adapter. It cannot read: its perception is the pretrained encoders' output,
  the MiniLM title embedding and the EfficientNet-Lite0 image embedding, projected into prefix tokens.
* `causal_lm`: any local Hugging Face causal LM. The title goes through its tokenizer; the image
  embedding of `image_encoder` is projected into prefix embeddings (the LM has no eyes of its own).
* `vlm`: a local Llava, Qwen2-VL / Qwen2.5-VL, or Idefics3 / SmolVLM checkpoint. The image goes through
  the model's own processor and vision tower; the meta tokens replace N placeholder tokens appended to
  the prompt (left padding keeps them last in every row).

HF backbones are frozen; `lora_rank > 0` adds trainable LoRA on their attention q/v projections.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from torch import nn
from transformers import AutoModel, AutoProcessor, AutoTokenizer, LlamaConfig, LlamaModel, PreTrainedModel

from icg_rec.data.images import load_image
from icg_rec.encoders.checkpoints import require_hf_folder
from icg_rec.encoders.load import (
    describe_image_encoder,
    describe_text_encoder,
    load_image_encoder,
    load_text_encoder,
)
from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.generation.modules import (
    ModelMixin,  # noqa: F401  (diffusers looks a component's base class up here)
    PipelineModule,
    require_files,
)
from icg_rec.io import config_from_dict, load_weights, read_json, save_weights, write_json

CONFIG_NAME = "prompter_config.json"
WEIGHTS_NAME = "prompter.safetensors"
BACKBONE_DIR = "backbone"

# model_type -> how the prompt shows the image to the model's processor
VLM_IMAGE_MARKUP = {
    "llava": "{image_token}",
    "qwen2_vl": "<|vision_start|>{image_token}<|vision_end|>",
    "qwen2_5_vl": "<|vision_start|>{image_token}<|vision_end|>",
    "idefics3": "{image_token}",
    "smolvlm": "{image_token}",
}

ImageLike = Image.Image | str | Path | torch.Tensor


@dataclass
class PrompterConfig:
    backbone: str | None = None  # local HF folder (VLM or causal LM); None = the embedded default
    num_meta_tokens: int = 8  # learnable meta tokens appended to the input (N)
    image_prefix_tokens: int = 4  # prefix tokens the image embedding becomes (embedded and causal_lm)
    hidden_size: int = 128  # embedded default: transformer width
    num_layers: int = 2  # embedded default: transformer blocks
    num_heads: int = 4  # embedded default: attention heads
    lora_rank: int = 0  # > 0: trainable LoRA of this rank on a frozen HF backbone's q/v projections
    # perception: a spec or local folder for icg_rec.encoders' load_image_encoder / load_text_encoder (None:
    # EfficientNet-Lite0 / MiniLM); a built prompter records the spec of the encoders it holds
    image_encoder: dict | str | None = None  # image prefix (embedded and causal_lm)
    text_encoder: dict | str | None = None  # title prefix (embedded only)


class MetaTokenPrompter(PipelineModule):
    """Backbone + N meta tokens: `prepare(titles, images)` then `forward(batch) -> (batch, N, hidden)`.

    Build one with `MetaTokenPrompter.build(config)`; the constructor takes ready parts.
    """

    def __init__(
        self,
        config: PrompterConfig,
        backbone: PreTrainedModel,
        processor: Any = None,
        image_encoder: Any = None,
        text_encoder: Any = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.kind = _kind(config, backbone)
        hidden = backbone.get_input_embeddings().embedding_dim
        self.hidden_size = hidden
        n = config.num_meta_tokens
        self.meta_tokens = nn.Parameter(torch.randn(n, hidden) * 0.02)  # (N, hidden)
        if self.kind != "vlm":
            if image_encoder is None:
                raise ValueError(f"a {self.kind} prompter needs an image encoder for its image prefix")
            self.image_proj = nn.Linear(image_encoder.dim, config.image_prefix_tokens * hidden)
            config = replace(config, image_encoder=describe_image_encoder(image_encoder))
        if self.kind == "embedded":
            if text_encoder is None:
                raise ValueError("the embedded prompter needs a text encoder for its title prefix")
            self.title_proj = nn.Linear(text_encoder.dim, hidden)
            config = replace(config, text_encoder=describe_text_encoder(text_encoder))
        self.config = config  # with the spec of each encoder it holds, so that a saved folder rebuilds them
        # encoders are frozen perception: kept out of the module tree so they are neither saved nor trained
        self.__dict__["image_encoder"] = image_encoder
        self.__dict__["text_encoder"] = text_encoder
        if self.kind != "embedded":
            backbone.requires_grad_(False)
            if config.lora_rank > 0:
                lora = LoraConfig(
                    r=config.lora_rank, lora_alpha=config.lora_rank, target_modules=["q_proj", "v_proj"]
                )
                inject_adapter_in_model(lora, backbone)
        self._meta_active = False
        if self.kind == "vlm":
            backbone.get_input_embeddings().register_forward_hook(self._insert_meta_tokens)

    @classmethod
    def build(
        cls, config: PrompterConfig, image_encoder: Any = None, text_encoder: Any = None
    ) -> "MetaTokenPrompter":
        """Builds the backbone (embedded from config, or loaded from `config.backbone`) and its perception.

        Args:
            config: prompter settings.
            image_encoder: an `icg_rec.encoders.ImageEncoder`; None loads `config.image_encoder` where needed.
            text_encoder: an `icg_rec.encoders.TextEncoder`; None loads `config.text_encoder` where needed.

        Returns:
            A prompter whose meta tokens and projections are freshly initialised; its config holds the spec
            of each encoder it uses (`icg_rec.encoders.load`), so that a saved folder rebuilds them.

        Raises:
            CheckpointError: an encoder is needed and its spec describes a custom one (pass it instead).
        """
        if config.backbone is None:
            backbone = LlamaModel(
                LlamaConfig(
                    vocab_size=2,  # never read: the embedded model gets embeddings, not token ids
                    hidden_size=config.hidden_size,
                    intermediate_size=2 * config.hidden_size,
                    num_hidden_layers=config.num_layers,
                    num_attention_heads=config.num_heads,
                    num_key_value_heads=config.num_heads,
                    max_position_embeddings=256,
                    bos_token_id=None,  # no vocabulary to point into (Llama's defaults 1 and 2 would not fit)
                    eos_token_id=None,
                )
            )
            processor = None
        else:
            backbone, processor = _load_hf_backbone(config.backbone)
        kind = _kind(config, backbone)
        if kind != "vlm" and image_encoder is None:
            image_encoder = load_image_encoder(config.image_encoder)
        if kind == "embedded" and text_encoder is None:
            text_encoder = load_text_encoder(config.text_encoder)
        return cls(config, backbone, processor, image_encoder, text_encoder)

    def prepare(self, titles: Sequence[str], images: Sequence[ImageLike]) -> dict[str, torch.Tensor]:
        """Turns titles and reference images into backbone inputs (no gradient; cache it when training).

        Args:
            titles: one non-empty title per item.
            images: one reference image per item: PIL image, file path, or (3, H, W) float tensor in [0, 1].

        Returns:
            A dict of batch-first tensors for `forward`.
        """
        titles, images = list(titles), list(images)
        if len(titles) != len(images):
            raise SchemaError(
                f"got {len(titles)} titles but {len(images)} images; expected one image per title"
            )
        for i, title in enumerate(titles):
            if not isinstance(title, str) or not title.strip():
                raise SchemaError(
                    f"item {i} has no title (got {title!r}); every item needs a non-empty title"
                )
        pils = [to_pil(image, i) for i, image in enumerate(images)]
        device = self.meta_tokens.device
        if self.kind == "vlm":
            return self._prepare_vlm(titles, pils)
        with torch.no_grad():
            image_features = torch.from_numpy(np.asarray(self.image_encoder.encode(pils), dtype=np.float32))
        batch = {"image_features": image_features.to(device)}  # (batch, image_dim)
        if self.kind == "embedded":
            title_features = np.asarray(self.text_encoder.encode(titles), dtype=np.float32)
            batch["title_features"] = torch.from_numpy(title_features).to(device)  # (batch, text_dim)
        else:
            tokens = self.processor(titles, padding=True, return_tensors="pt")
            batch["input_ids"] = tokens["input_ids"].to(device)  # (batch, T), left padded
            batch["attention_mask"] = tokens["attention_mask"].to(device)
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Runs the backbone and returns the last hidden states at the meta positions.

        Args:
            batch: the output of `prepare` (or rows of it).

        Returns:
            (batch, N, hidden) meta-token states.
        """
        if self.kind == "vlm":
            self._meta_active = True
            try:
                out = self.backbone(**batch)
            finally:
                self._meta_active = False
            return out.last_hidden_state[:, -self.config.num_meta_tokens :]  # (batch, N, hidden)
        embed_dtype = self.backbone.get_input_embeddings().weight.dtype
        image_features = batch["image_features"].to(self.image_proj.weight.dtype)
        size = image_features.shape[0]
        prefix = self.image_proj(image_features).view(size, self.config.image_prefix_tokens, -1)  # (B, P, H)
        if self.kind == "embedded":
            title = self.title_proj(batch["title_features"].to(self.title_proj.weight.dtype))[
                :, None
            ]  # (B, 1, H)
            title_mask = torch.ones(size, 1, dtype=torch.long, device=prefix.device)
        else:
            title = self.backbone.get_input_embeddings()(batch["input_ids"])  # (B, T, H)
            title_mask = batch["attention_mask"]
        meta = self.meta_tokens.expand(size, -1, -1)  # (B, N, H)
        embeds = torch.cat([prefix.to(embed_dtype), title.to(embed_dtype), meta.to(embed_dtype)], dim=1)
        ones_prefix = torch.ones(size, prefix.shape[1], dtype=torch.long, device=prefix.device)
        ones_meta = torch.ones(size, meta.shape[1], dtype=torch.long, device=prefix.device)
        mask = torch.cat([ones_prefix, title_mask, ones_meta], dim=1)  # (B, L)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, L): padding does not shift positions
        out = self.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        return out.last_hidden_state[:, -self.config.num_meta_tokens :]  # (B, N, H)

    def _prepare_vlm(self, titles: list[str], pils: list[Image.Image]) -> dict[str, torch.Tensor]:
        model_type = self.backbone.config.model_type
        markup = VLM_IMAGE_MARKUP[model_type].format(image_token=self.processor.image_token)
        texts = [f"{markup}{title}" for title in titles]
        image_arg = [[pil] for pil in pils] if model_type in ("idefics3", "smolvlm") else pils
        inputs = self.processor(text=texts, images=image_arg, padding=True, return_tensors="pt")
        placeholder = _placeholder_id(self.processor.tokenizer)
        size, n = len(titles), self.config.num_meta_tokens
        meta_ids = torch.full((size, n), placeholder, dtype=inputs["input_ids"].dtype)
        batch = dict(inputs)
        batch["input_ids"] = torch.cat([inputs["input_ids"], meta_ids], dim=1)  # (B, T + N)
        batch["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(meta_ids)], dim=1)
        if "mm_token_type_ids" in batch:
            # Qwen2-VL's M-RoPE reads one type per position (0 text, 1 image): the meta tokens are text
            types = inputs["mm_token_type_ids"]
            meta_types = torch.zeros_like(meta_ids, dtype=types.dtype)
            batch["mm_token_type_ids"] = torch.cat([types, meta_types], dim=1)  # (B, T + N)
        batch.pop("token_type_ids", None)
        device = self.meta_tokens.device
        return {key: value.to(device) for key, value in batch.items() if isinstance(value, torch.Tensor)}

    def _insert_meta_tokens(
        self, module: nn.Module, inputs: Any, output: torch.Tensor
    ) -> torch.Tensor | None:
        """Forward hook on the VLM's token embedding: the last N positions become the meta tokens."""
        if not self._meta_active:
            return None
        n = self.config.num_meta_tokens
        meta = self.meta_tokens.to(output.dtype).expand(output.shape[0], -1, -1)  # (B, N, H)
        return torch.cat([output[:, :-n], meta], dim=1)  # (B, L, H)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes the config, the trained weights (meta tokens, projections, LoRA) and, for the embedded
        default, the backbone itself. A frozen HF backbone is referenced by its path, not copied."""
        folder = Path(folder)
        write_json(folder / CONFIG_NAME, asdict(self.config))
        state = {
            key: value
            for key, value in self.state_dict().items()
            if not key.startswith("backbone.") or "lora_" in key
        }
        save_weights(folder / WEIGHTS_NAME, state)
        if self.kind == "embedded":
            self.backbone.save_pretrained(folder / BACKBONE_DIR)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        image_encoder: Any = None,
        text_encoder: Any = None,
        torch_dtype: torch.dtype | None = None,
        **_: Any,
    ) -> "MetaTokenPrompter":
        """Loads a prompter saved by `save_pretrained` (encoders as in `build`: None rebuilds the recorded ones).

        Every file it needs is checked first (the config, the trained weights and, for the embedded
        default, `backbone/config.json` and its weights), so a missing file is a CheckpointError naming
        it, never a backbone built from a library's default config.
        """
        folder = Path(folder)
        require_files(folder, [CONFIG_NAME, WEIGHTS_NAME], "the prompter")
        config = config_from_dict(
            PrompterConfig, read_json(folder / CONFIG_NAME), source=str(folder / CONFIG_NAME)
        )
        if config.backbone is None:
            require_files(
                folder / BACKBONE_DIR, ["config.json", "model.safetensors"], "the embedded prompter backbone"
            )
        try:  # the encoders recorded in the config (or those given), and an HF backbone
            prompter = cls.build(config, image_encoder, text_encoder)
        except CheckpointError as err:
            raise CheckpointError(f"{folder / CONFIG_NAME}: {err}") from err
        if config.backbone is None:
            backbone = LlamaModel.from_pretrained(folder / BACKBONE_DIR)
            prompter = cls(config, backbone, None, prompter.image_encoder, prompter.text_encoder)
        state = load_weights(folder / WEIGHTS_NAME)
        try:
            missing, unexpected = prompter.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes differ: other encoders than at save time, or another config
            unrecorded = (
                image_encoder is None and prompter.kind != "vlm" and config.image_encoder is None
            ) or (text_encoder is None and prompter.kind == "embedded" and config.text_encoder is None)
            note = (
                "; None: saved before folders recorded their perception, so the defaults EfficientNet-Lite0 / "
                "MiniLM were tried; pass the encoders it was trained with"
                if unrecorded
                else ""
            )
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME} does not fit the prompter built from {folder / CONFIG_NAME} with "
                f"the encoders given (saved with image encoder {config.image_encoder!r}, text encoder "
                f"{config.text_encoder!r}{note}): {str(err).splitlines()[-1].strip()}"
            ) from err
        missing = [key for key in missing if not key.startswith("backbone.") or "lora_" in key]
        if missing or unexpected:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME} does not match {folder / CONFIG_NAME}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return prompter if torch_dtype is None else prompter.to(dtype=torch_dtype)


def _kind(config: PrompterConfig, backbone: PreTrainedModel) -> str:
    if config.backbone is None:
        return "embedded"
    return "vlm" if backbone.config.model_type in VLM_IMAGE_MARKUP else "causal_lm"


def _load_hf_backbone(path: str) -> tuple[PreTrainedModel, Any]:
    """Loads a local HF model (base model, no LM head) and its processor or tokenizer, left padded."""
    folder = require_hf_folder(path)  # config.json and weights, before transformers builds anything
    backbone = AutoModel.from_pretrained(folder)
    if backbone.config.model_type in VLM_IMAGE_MARKUP:
        processor = _load_vlm_processor(folder, backbone.config.model_type)
        processor.tokenizer.padding_side = "left"
    else:
        processor = AutoTokenizer.from_pretrained(folder)
        processor.padding_side = "left"
        if processor.pad_token is None:
            processor.pad_token = processor.eos_token
    backbone.eval()
    return backbone, processor


def _load_vlm_processor(folder: Path, model_type: str) -> Any:
    """The VLM's own processor; for Qwen2-VL / Qwen2.5-VL without torchvision, its image-only form.

    Their processors also hold a video processor, which needs torchvision, so `AutoProcessor` raises
    ImportError without it. Covers are still images and the image processor has a PIL backend, so the
    same processor class is rebuilt from the image processor and tokenizer alone: its `__call__`
    (image-token expansion, `mm_token_type_ids`) is unchanged. Other ImportErrors propagate as they are.
    """
    try:
        return AutoProcessor.from_pretrained(folder)
    except ImportError:
        if model_type not in ("qwen2_vl", "qwen2_5_vl"):
            raise
    from transformers import AutoImageProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor

    base = Qwen2VLProcessor if model_type == "qwen2_vl" else Qwen2_5_VLProcessor

    class ImageOnlyProcessor(base):  # type: ignore[valid-type,misc]
        # ProcessorMixin takes its sub-processors from this signature: without `video_processor` here,
        # none is required or type-checked (the check itself needs torchvision's VideoProcessorMixin)
        def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str | None = None) -> None:
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template)

    return ImageOnlyProcessor(
        AutoImageProcessor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    )


def _placeholder_id(tokenizer: Any) -> int:
    """A token id for the meta placeholders (their embeddings are replaced, so any ordinary id works)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise CheckpointError("the VLM tokenizer has neither a pad nor an eos token to use as meta placeholder")


def to_pil(image: ImageLike, index: int) -> Image.Image:
    """A reference image as RGB PIL; paths go through `load_image` (SchemaError naming a bad file)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise SchemaError(
                f"image {index} is a tensor of shape {tuple(image.shape)}; expected (3, H, W) in [0, 1]"
            )
        array = (
            (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        )
        return Image.fromarray(array)
    raise SchemaError(
        f"image {index} is a {type(image).__name__}; expected a PIL image, a path or a (3, H, W) tensor"
    )
