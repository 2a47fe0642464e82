"""Title-image relevance: a contrastive projection of frozen text and image embeddings into one space.

Two linear maps (text dim -> shared_dim, image dim -> shared_dim) on standardised inputs, trained with
symmetric InfoNCE and a learnable temperature on (title, cover) pairs. The reward is the cosine of the
projected title and cover, differentiable in the pixels through the image encoder's `forward`.
`ClipRelevanceReward` is the plug-in alternative: cosine of a local CLIPModel's text and image embeddings.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from icg_rec.device import DeviceError, resolve_device
from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.io import (
    config_from_dict,
    load_state_into,
    load_weights,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)
from icg_rec.rewards.aesthetic import check_images, clip_image_embeddings, load_clip
from icg_rec.rewards.base import RewardInputs
from icg_rec.validation import check_fitted


@dataclass
class RelevanceConfig:
    shared_dim: int = 256  # width of the joint text / image space
    epochs: int = 40  # passes over the training pairs
    batch_size: int = 256  # pairs per step (the in-batch negatives)
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay on the projections
    temperature: float = 0.07  # initial softmax temperature (learned; kept >= 0.01)


class _Projections(nn.Module):
    def __init__(self, text_dim: int, image_dim: int, shared_dim: int, temperature: float) -> None:
        super().__init__()
        self.text = nn.Linear(text_dim, shared_dim)
        self.image = nn.Linear(image_dim, shared_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        for name, dim in (("text", text_dim), ("image", image_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def embed_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text((x - self.text_mean) / self.text_std), dim=-1)  # (n, shared_dim)

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image((x - self.image_mean) / self.image_std), dim=-1)  # (n, shared_dim)


class RelevanceModel:
    """Contrastive title <-> cover projection over frozen encoder embeddings (scikit-learn habits).

    Args:
        config: widths and training settings.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`): where `fit` trains and the model scores;
            `load` takes it too.
    """

    def __init__(self, config: RelevanceConfig | None = None, device: str = "cpu") -> None:
        self.config = config or RelevanceConfig()
        self.device = device

    def fit(
        self, text_emb: np.ndarray, image_emb: np.ndarray, seed: int = 0, progress: bool = False
    ) -> "RelevanceModel":
        """Trains on row-aligned pairs: text_emb[i] describes the cover embedded in image_emb[i].

        Args:
            text_emb: (n, text_dim) frozen text embeddings.
            image_emb: (n, image_dim) frozen image embeddings of the matching covers.
            seed: seeds initialisation and batching.
            progress: show a tqdm bar over epochs.

        Returns:
            self, with `net_`, `losses_` (mean loss per epoch) and `device_`.
        """
        self.device_ = device = resolve_device(self.device)
        t, v = _pairs(text_emb, image_emb)
        cfg = self.config
        torch.manual_seed(seed)
        net = _Projections(t.shape[1], v.shape[1], cfg.shared_dim, cfg.temperature)
        net.text_mean.copy_(t.mean(0))
        net.text_std.copy_(t.std(0) + 1e-6)
        net.image_mean.copy_(v.mean(0))
        net.image_std.copy_(v.std(0) + 1e-6)
        net.to(device)
        t, v = t.to(device), v.to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        self.losses_ = []
        for _ in tqdm(range(cfg.epochs), desc="relevance", disable=not progress):
            perm = torch.randperm(len(t), generator=gen).to(device)
            total = 0.0
            for s in range(0, len(t), cfg.batch_size):
                b = perm[s : s + cfg.batch_size]
                if len(b) < 2:
                    continue
                scale = net.log_scale.clamp(max=math.log(100.0)).exp()
                logits = scale * net.embed_text(t[b]) @ net.embed_image(v[b]).T  # (b, b)
                target = torch.arange(len(b), device=device)
                loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.losses_.append(total / len(t))
        self.net_ = net.eval()
        return self

    def similarity(self, text_emb: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
        """Cosine similarities (n_text, n_image) in the shared space."""
        self._check_fitted()
        t = torch.as_tensor(np.asarray(text_emb, dtype=np.float32)).to(self.device_)
        v = torch.as_tensor(np.asarray(image_emb, dtype=np.float32)).to(self.device_)
        with torch.no_grad():
            return (self.net_.embed_text(t) @ self.net_.embed_image(v).T).double().cpu().numpy()

    def recall_at_k(self, text_emb: np.ndarray, image_emb: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict:
        """Title -> cover retrieval among the given pairs (row i's cover is the right answer).

        Returns:
            {"recall@k": share of titles whose cover ranks in the top k, "chance@k": k / n, "n": n}.
        """
        _pairs(text_emb, image_emb)
        sim = self.similarity(text_emb, image_emb)  # (n, n)
        rank = (sim > np.diag(sim)[:, None]).sum(axis=1)  # (n,) covers scoring above the right one
        n = len(sim)
        out: dict = {f"recall@{k}": float((rank < k).mean()) for k in ks}
        out.update({f"chance@{k}": min(k / n, 1.0) for k in ks})
        out["n"] = n
        return out

    def save(self, folder: str | Path) -> Path:
        """Writes config.json and weights.safetensors into `folder`, as a set (`write_folder`)."""
        self._check_fitted()
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        save_weights(folder / "weights.safetensors", {k: v.cpu() for k, v in self.net_.state_dict().items()})
        dims = {"text_dim": self.net_.text.in_features, "image_dim": self.net_.image.in_features}
        write_json(folder / "config.json", {"config": asdict(self.config), **dims})

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "RelevanceModel":
        """Loads a model written by `save` onto `device`; a missing or changed file is a CheckpointError naming
        it, before anything is built."""
        folder = Path(folder)
        verify_folder(folder, required=["config.json", "weights.safetensors"])
        target = resolve_device(device)
        meta = read_json(folder / "config.json")
        model = cls(
            config_from_dict(RelevanceConfig, meta["config"], source=str(folder / "config.json")), device
        )
        cfg = model.config
        model.net_ = _Projections(meta["text_dim"], meta["image_dim"], cfg.shared_dim, cfg.temperature)
        load_state_into(
            model.net_, load_weights(folder / "weights.safetensors"), str(folder / "weights.safetensors")
        )
        model.net_.to(target).eval()
        model.device_ = target
        return model

    def freeze(self) -> "RelevanceModel":
        """Stops gradients into the projections (a fixed reward to optimize covers against); returns self."""
        self._check_fitted()
        self.net_.requires_grad_(False).eval()
        return self

    def _check_fitted(self) -> None:
        check_fitted(self, "net_")


class RelevanceReward:
    """Cosine of title and cover in a fitted RelevanceModel's space; (batch,) in [-1, 1].

    Args:
        model: a fitted RelevanceModel.
        text_encoder: the TextEncoder it was trained on (titles are encoded without gradients).
        image_encoder: the ImageEncoder it was trained on (differentiable `forward`).
    """

    name = "relevance"
    differentiable = True

    def __init__(self, model: RelevanceModel, text_encoder, image_encoder: nn.Module) -> None:
        self.model = model
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        check_images(inputs.images)
        titles = _titles(inputs)
        text = torch.as_tensor(self.text_encoder.encode(titles))  # (batch, text_dim)
        if inputs.images.device != self.model.device_:
            raise DeviceError(
                f"covers are on {inputs.images.device} but the relevance model computes on "
                f"{self.model.device_}; fit or load it with device={str(inputs.images.device)!r}"
            )
        image = self.image_encoder(inputs.images)  # (batch, image_dim)
        net = self.model.net_
        return (net.embed_text(text.to(image.device)) * net.embed_image(image)).sum(dim=1)  # (batch,)


class ClipRelevanceReward:
    """Cosine of a local CLIPModel's text and image embeddings; (batch,) in [-1, 1].

    Args:
        clip_path: folder holding a CLIPModel and its tokenizer (save_pretrained layout); loaded offline.
    """

    name = "relevance_clip"
    differentiable = True

    def __init__(self, clip_path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.clip = load_clip(clip_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(clip_path), local_files_only=True)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{clip_path} holds no tokenizer for its CLIPModel: {err}") from err

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        titles = _titles(inputs)
        image = clip_image_embeddings(self.clip, inputs.images)  # (batch, projection_dim)
        max_len = self.clip.config.text_config.max_position_embeddings
        tokens = self.tokenizer(
            titles, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        with torch.no_grad():
            text = self.clip.get_text_features(**tokens)
        text = text if isinstance(text, torch.Tensor) else text.pooler_output  # (batch, projection_dim)
        return (F.normalize(text, dim=-1) * F.normalize(image, dim=-1)).sum(dim=1)


def _titles(inputs: RewardInputs) -> list[str]:
    if inputs.titles is None or len(inputs.titles) != inputs.images.shape[0]:
        got = None if inputs.titles is None else len(inputs.titles)
        raise ValueError(
            f"relevance needs one title per image: {inputs.images.shape[0]} images, titles {got}"
        )
    return list(inputs.titles)


def _pairs(text_emb: np.ndarray, image_emb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    t = np.asarray(text_emb, dtype=np.float32)
    v = np.asarray(image_emb, dtype=np.float32)
    if t.ndim != 2 or v.ndim != 2 or len(t) != len(v) or len(t) < 2:
        raise SchemaError(
            f"text_emb and image_emb must be row-aligned 2-d arrays of >= 2 pairs, got {t.shape} and {v.shape}"
        )
    return torch.from_numpy(t.copy()), torch.from_numpy(v.copy())
