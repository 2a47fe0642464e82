"""Image embeddings from a local CLIP or SigLIP checkpoint (full model or vision tower)."""

from pathlib import Path

import torch

from icg_rec.encoders.base import ImageEncoder
from icg_rec.encoders.checkpoints import checkpoint_version, require_hf_folder
from icg_rec.errors import CheckpointError
from icg_rec.io import read_json

# What each model family's image processor uses when the folder has no preprocessor_config.json.
_OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_FAMILIES = {
    # model_type: (family, default mean, default std)
    "clip": ("clip", _OPENAI_CLIP_MEAN, _OPENAI_CLIP_STD),
    "clip_vision_model": ("clip", _OPENAI_CLIP_MEAN, _OPENAI_CLIP_STD),
    "siglip": ("siglip", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    "siglip_vision_model": ("siglip", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}


class HFImageEncoder(ImageEncoder):
    """A CLIP (projected `image_embeds`) or SigLIP (pooled output) vision tower as an ImageEncoder.

    Normalisation comes from the folder's preprocessor_config.json (image_mean, image_std) if present,
    else from the family's standard values; the input side is the model's `image_size`.

    Args:
        path: folder written by `save_pretrained` of a CLIPModel, CLIPVisionModelWithProjection,
            SiglipModel or SiglipVisionModel.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        folder = require_hf_folder(path)
        model_type = read_json(folder / "config.json").get("model_type")
        if model_type not in _FAMILIES:
            raise CheckpointError(
                f"{folder} holds a {model_type!r} model; HFImageEncoder supports {sorted(_FAMILIES)}"
            )
        family, mean, std = _FAMILIES[model_type]
        processor = folder / "preprocessor_config.json"
        if processor.is_file():
            values = read_json(processor)
            mean, std = values.get("image_mean", mean), values.get("image_std", std)
        self.path = folder.resolve()  # absolute: a spec records it
        self.family = family
        self.model = _load_vision(folder, model_type)
        config = self.model.config
        self.dim = int(config.projection_dim if family == "clip" else config.hidden_size)
        self.image_size = int(config.image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1))
        version = checkpoint_version(folder, extra=f"{family};mean={mean};std={std};size={self.image_size}")
        self.name = f"{folder.name}@{version}"
        self.freeze()

    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        """CLIP image_embeds or SigLIP pooler_output (B, dim) of normalised (B, 3, S, S) pixels."""
        out = self.model(pixel_values=normalised)
        return out.image_embeds if self.family == "clip" else out.pooler_output  # (B, dim)


def _load_vision(folder: Path, model_type: str) -> torch.nn.Module:
    """The vision tower of a CLIP/SigLIP folder; a full model's text tower is left on disk.

    Raises:
        CheckpointError: the folder cannot be loaded, or lacks weights the tower needs (transformers
            would otherwise initialise them at random, silently).
    """
    from transformers import CLIPConfig, CLIPVisionModelWithProjection, SiglipVisionModel

    kwargs = {}
    if model_type == "clip":  # the projection width sits in the top-level config, not vision_config
        full = CLIPConfig.from_pretrained(str(folder))
        kwargs["config"] = full.vision_config
        kwargs["config"].projection_dim = full.projection_dim
    cls = CLIPVisionModelWithProjection if _FAMILIES[model_type][0] == "clip" else SiglipVisionModel
    try:
        model, info = cls.from_pretrained(
            str(folder), dtype=torch.float32, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot load a {model_type} vision model from {folder}: {err}") from err
    if info["missing_keys"]:
        raise CheckpointError(
            f"{folder} lacks {len(info['missing_keys'])} weight(s) of {cls.__name__}, "
            f"e.g. {sorted(info['missing_keys'])[:5]}; expected a complete CLIP/SigLIP checkpoint"
        )
    return model
