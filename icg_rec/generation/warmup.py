"""Warm-up without labels: the denoising loss on reference covers, conditioned on each item's meta tokens.

The adapter (and the embedded MLLM and UNet, when they are built from config) learns to reproduce an
item's cover from its meta-token states. The condition is dropped to the null meta tokens with
probability `cond_dropout`, which trains the negative branch of classifier-free guidance.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from icg_rec.device import autocast, resolve_device, resolve_dtype
from icg_rec.errors import SchemaError
from icg_rec.figures import contact_sheet
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import ImageLike, to_pil
from icg_rec.generation.sampling import denoising_target, to_model_space
from icg_rec.io import (
    atomic_write,
    load_state_into,
    load_weights,
    prefixed,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILES = ["weights.safetensors", "optimizer.pt", "rng.safetensors", "state.json"]


@dataclass
class WarmupConfig:
    steps: int = 2000  # optimizer steps
    batch_size: int = 16  # covers per step
    learning_rate: float = 5e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    cond_dropout: float = 0.1  # probability of training a row on the null meta tokens (guidance)
    timestep_power: float = 1.0  # timesteps drawn as T (1 - u^power), u uniform: > 1 favours high noise
    train_unet: bool = True  # train the UNet too (embedded UNet); False keeps a pretrained UNet frozen
    checkpoint_every: int = 500  # steps between checkpoints (output_dir only)
    sample_items: int = 8  # items on the contact sheet
    sample_steps: int = 20  # DDIM steps for contact-sheet samples
    guidance_scale: float = 2.0  # guidance for contact-sheet samples
    seed: int = 0  # batch order, noise, timesteps and dropout


class WarmupTrainer:
    """Trains a pipeline's adapter (and trainable prompter parts, optionally the UNet) by denoising.

    Args:
        pipeline: the ICGPipeline to train in place; `fit` moves it to `device`.
        config: training settings.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`).
        dtype: "float32", or "bfloat16" for mixed precision (float32 weights, bfloat16 autocast).

    Attributes after `fit`: `losses_` (one float per step), `step_` (steps done, resumed ones included).
    """

    def __init__(
        self, pipeline: ICGPipeline, config: WarmupConfig, device: str = "cpu", dtype: str = "float32"
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.device = device
        self.dtype = dtype

    def fit(
        self,
        titles: Sequence[str],
        images: Sequence[ImageLike] | torch.Tensor,
        output_dir: str | Path | None = None,
        resume: bool = False,
    ) -> "WarmupTrainer":
        """Runs the warm-up.

        Args:
            titles: one title per item.
            images: reference covers: (n, 3, H, W) float tensor in [0, 1], or PIL images / paths.
            output_dir: where checkpoints, the final pipeline (`pipeline/`) and `contact_sheet.png` go.
            resume: continue from `output_dir/checkpoint` when it exists.

        Returns:
            self.
        """
        config, pipe = self.config, self.pipeline
        titles = list(titles)
        images_list = list(images)
        if len(titles) != len(images_list):
            raise SchemaError(f"got {len(titles)} titles but {len(images_list)} reference covers")
        if len(titles) == 0:
            raise SchemaError("warm-up needs at least one item with a title and a reference cover")
        if config.timestep_power <= 0:
            raise ValueError(f"timestep_power must be > 0, got {config.timestep_power}")
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device, training=True)
        pipe.to(device)
        targets = reference_tensor(images_list, self.image_size).to(device)  # (n, 3, S, S) in [0, 1]
        prepared = None if pipe.prompter.kind == "vlm" else prepare_items(pipe, titles, images_list)

        params = self._trainable_parameters()
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        gen = torch.Generator().manual_seed(config.seed)
        self.losses_: list[float] = []
        self.step_ = 0
        checkpoint = None if output_dir is None else Path(output_dir) / CHECKPOINT_DIR
        if resume and checkpoint is not None and checkpoint.is_dir():
            self._load_checkpoint(checkpoint, optimizer, gen)

        self._set_train(True)
        bar = tqdm(total=config.steps, initial=self.step_, desc="warm-up", leave=False)
        while self.step_ < config.steps:
            index = torch.randint(len(titles), (config.batch_size,), generator=gen)
            if prepared is None:
                picked = index.tolist()
                batch = pipe.prompter.prepare([titles[i] for i in picked], [images_list[i] for i in picked])
            else:
                batch = {key: value[index.to(value.device)] for key, value in prepared.items()}
            with autocast(device, dtype):
                loss = self._loss(batch, targets[index.to(device)], gen, config.cond_dropout)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            self.losses_.append(loss.item())
            self.step_ += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(self.losses_[-50:]):.4f}")
            if checkpoint is not None and self.step_ % config.checkpoint_every == 0:
                self._save_checkpoint(checkpoint, optimizer, gen)
        bar.close()
        self._set_train(False)
        if output_dir is not None:
            self._save_checkpoint(checkpoint, optimizer, gen)
            pipe.save_pretrained(Path(output_dir) / "pipeline")
            count = min(config.sample_items, len(titles))
            covers = pipe(
                titles[:count], images_list[:count], seed=config.seed,
                num_inference_steps=config.sample_steps, guidance_scale=config.guidance_scale, output_type="pt",
            ).images  # fmt: skip
            contact_sheet(Path(output_dir) / "contact_sheet.png", [targets[:count].cpu(), covers])
        return self

    @torch.no_grad()
    def evaluate(
        self, titles: Sequence[str], images: Sequence[ImageLike] | torch.Tensor, seed: int = 0
    ) -> float:
        """Denoising loss on the given items with fixed noise and timesteps and no condition dropout.

        Args:
            titles: one title per item.
            images: reference covers, as in `fit`.
            seed: fixes noise and timesteps, so two calls (e.g. before and after `fit`) are comparable.

        Returns:
            The mean squared error of the noise prediction.
        """
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device, training=True)
        self.pipeline.to(device)
        images_list = list(images)
        targets = reference_tensor(images_list, self.image_size).to(device)
        batch = self.pipeline.prompter.prepare(list(titles), images_list)
        with autocast(device, dtype):
            return float(self._loss(batch, targets, torch.Generator().manual_seed(seed), cond_dropout=0.0))

    @property
    def image_size(self) -> int:
        """Side of the covers the pipeline produces (pixels)."""
        factor = (
            1 if self.pipeline.vae is None else 2 ** (len(self.pipeline.vae.config.block_out_channels) - 1)
        )
        return self.pipeline.unet.config.sample_size * factor

    def _loss(
        self, batch: dict[str, torch.Tensor], covers: torch.Tensor, gen: torch.Generator, cond_dropout: float
    ) -> torch.Tensor:
        pipe = self.pipeline
        size = covers.shape[0]
        device = covers.device
        with torch.set_grad_enabled(False):
            clean = to_model_space(covers, pipe.vae, gen)  # (B, C, h, w)
        noise = torch.randn(clean.shape, generator=gen).to(device)  # (B, C, h, w)
        steps = self._timesteps(size, gen).to(device)  # (B,)
        noisy = pipe.scheduler.add_noise(clean, noise, steps)  # (B, C, h, w)
        meta = pipe.prompter(batch).to(pipe.adapter.dtype)  # (B, N, H)
        meta = pipe.refiner(meta, None)
        keep = (torch.rand(size, generator=gen) >= cond_dropout).to(device)  # (B,)
        meta = meta * keep[:, None, None].to(meta.dtype)  # dropped rows = null meta tokens
        tokens = pipe.adapter(meta).to(pipe.unet.dtype)  # (B, K, D)
        pred = pipe.unet(noisy, steps, encoder_hidden_states=tokens).sample  # (B, C, h, w)
        target = denoising_target(pipe.scheduler, clean, noise, steps)  # (B, C, h, w)
        return F.mse_loss(pred.float(), target.float())

    def _timesteps(self, size: int, gen: torch.Generator) -> torch.Tensor:
        # High noise is where a cover's colours and layout are decided from its tokens; with x0
        # prediction, power 2 lowered the attribute-error ratio on 64 SimWorld items from 0.63 to 0.53 (eval/RESULTS.md).
        total = self.pipeline.scheduler.config.num_train_timesteps
        if self.config.timestep_power == 1.0:  # uniform, drawn as before so older runs resume exactly
            return torch.randint(total, (size,), generator=gen)
        u = torch.rand(size, generator=gen)  # (B,)
        return (total * (1 - u**self.config.timestep_power)).long().clamp(0, total - 1)  # (B,)

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        pipe = self.pipeline
        pipe.unet.requires_grad_(self.config.train_unet)
        modules = [pipe.prompter, pipe.adapter, pipe.refiner] + (
            [pipe.unet] if self.config.train_unet else []
        )
        params = [p for module in modules for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: every parameter of the pipeline is frozen")
        return params

    def _set_train(self, mode: bool) -> None:
        for module in (
            self.pipeline.prompter,
            self.pipeline.adapter,
            self.pipeline.refiner,
            self.pipeline.unet,
        ):
            module.train(mode)

    def _modules(self) -> dict[str, torch.nn.Module]:
        pipe = self.pipeline
        return {
            "unet": pipe.unet,
            "prompter": pipe.prompter,
            "adapter": pipe.adapter,
            "refiner": pipe.refiner,
        }

    def _save_checkpoint(self, folder: Path, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
        """Writes weights, optimizer, random state and step as one set (`write_folder`): a kill mid-save
        leaves the previous checkpoint whole."""
        write_folder(folder, lambda tmp: self._write_checkpoint(tmp, optimizer, gen))

    def _write_checkpoint(self, folder: Path, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
        tensors = {
            f"{name}.{key}": value
            for name, module in self._modules().items()
            for key, value in module.state_dict().items()
        }
        save_weights(folder / "weights.safetensors", tensors)
        atomic_write(folder / "optimizer.pt", lambda tmp: torch.save(optimizer.state_dict(), tmp))
        save_weights(folder / "rng.safetensors", {"generator": gen.get_state()})
        write_json(
            folder / "state.json", {"step": self.step_, "losses": self.losses_, "config": asdict(self.config)}
        )

    def _load_checkpoint(self, folder: Path, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
        verify_folder(folder, required=CHECKPOINT_FILES)
        state = read_json(folder / "state.json")
        tensors = load_weights(folder / "weights.safetensors")
        for name, module in self._modules().items():
            load_state_into(module, prefixed(tensors, name), f"checkpoint {folder} ({name})")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        gen.set_state(load_weights(folder / "rng.safetensors")["generator"])
        self.step_ = int(state["step"])
        self.losses_ = list(state["losses"])


def reference_tensor(images: Sequence[ImageLike] | torch.Tensor, size: int) -> torch.Tensor:
    """Reference covers as one (n, 3, size, size) float tensor in [0, 1] (bilinear resize where needed).

    Args:
        images: a (n, 3, H, W) tensor, or PIL images / paths / (3, H, W) tensors.
        size: target side in pixels.

    Returns:
        (n, 3, size, size) float32 in [0, 1].
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        stacked = images.float()
    else:
        rows = []
        for i, image in enumerate(images):
            if isinstance(image, torch.Tensor):
                rows.append(_resize(image.float()[None], size))
            else:
                array = (
                    np.asarray(to_pil(image, i).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
                )
                rows.append(torch.from_numpy(array).permute(2, 0, 1)[None])
        stacked = torch.cat(rows)
    if stacked.ndim != 4 or stacked.shape[1] != 3:
        raise SchemaError(f"reference covers must be (n, 3, H, W), got {tuple(stacked.shape)}")
    return _resize(stacked, size).clamp(0, 1)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def prepare_items(
    pipe: ICGPipeline, titles: list[str], images: list[ImageLike], chunk: int = 256
) -> dict[str, torch.Tensor]:
    """Prepares every item once (frozen perception), so training steps only index rows."""
    parts = [
        pipe.prompter.prepare(titles[s : s + chunk], images[s : s + chunk])
        for s in range(0, len(titles), chunk)
    ]
    out = {}
    for key in parts[0]:
        values = [part[key] for part in parts]
        if values[0].ndim == 2 and key in ("input_ids", "attention_mask"):
            width = max(v.shape[1] for v in values)
            pad = 0 if key == "attention_mask" else (pipe.prompter.processor.pad_token_id or 0)
            values = [F.pad(v, (width - v.shape[1], 0), value=pad) for v in values]  # left padding
        out[key] = torch.cat(values)
    return out
