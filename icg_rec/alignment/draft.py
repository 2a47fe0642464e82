"""Reward alignment by truncated backprop through the sampler (DRaFT-K / ReFL style), no labels needed.

Each step draws (item, user) pairs and seeded noise, samples covers with `ICGPipeline.generate_with_grad`
(only the last `grad_steps` denoising steps keep a graph), scores them with a `MultiReward` (e.g.
aesthetic + relevance + personalized) and ascends the total:

    loss = -mean(total reward) + anchor_weight * |tokens - anchor tokens|^2 / |anchor tokens|^2

The anchor term keeps the generic user's conditioning tokens near the warm-up adapter's for the same
item: a cheap guard against reward hacking that needs no second sampling pass (fidelity in pixels is
measured by `eval/alignment.py`). How each user's tokens differ from the generic ones is left free: that
difference is the personalization.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from icg_rec.alignment.common import AlignerBase
from icg_rec.alignment.data import Audience, ItemSet
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.rewards.combiner import MultiReward


@dataclass
class AlignConfig:
    steps: int = 200  # optimizer steps
    batch_size: int = 8  # (item, user) pairs per step
    learning_rate: float = 1e-3  # AdamW learning rate
    num_inference_steps: int = 10  # DDIM steps per cover
    grad_steps: int = 1  # K: the last K denoising steps keep a graph
    guidance_scale: float = 1.0  # classifier-free guidance while sampling (1 = off, half the UNet cost)
    anchor_weight: float = 1.0  # weight of the generic tokens' distance to the warm-up adapter's (0 = off)
    lora_rank: int = 0  # > 0: also train LoRA of this rank on the UNet attention projections
    gradient_checkpointing: bool = False  # recompute UNet activations in the backward pass (saves memory)
    max_grad_norm: float = 1.0  # gradient clipping
    checkpoint_every: int = 50  # steps between checkpoints (output_dir only)
    sample_pairs: int = 8  # pairs on the contact sheet
    seed: int = 0  # pair draws and noise


class RewardAligner(AlignerBase):
    """DRaFT-K alignment of a pipeline's adapter and refiner (and optional UNet LoRA) to a MultiReward.

    Args:
        pipeline: the warm-up ICGPipeline; trained in place.
        reward: the combined reward; every weighted reward must be differentiable.
        config: training settings.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`); the rewards must compute there too.
        dtype: "float32", or "bfloat16" for mixed precision.

    Attributes after `fit`: `history_` (per step: loss, anchor, reward_total, reward_<name> raw means),
    `step_` (steps done, resumed ones included).
    """

    def __init__(
        self,
        pipeline: ICGPipeline,
        reward: MultiReward,
        config: AlignConfig,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        super().__init__(pipeline, reward, device, dtype)
        self.config = config

    def fit(
        self, items: ItemSet, audience: Audience, output_dir: str | Path | None = None, resume: bool = False
    ) -> "RewardAligner":
        """Runs the alignment.

        Args:
            items: titles, reference covers and ids of the items.
            audience: user ids (for the rewards) and embeddings (for the generator) to draw pairs from.
            output_dir: where `checkpoint/`, the final `pipeline/` and `contact_sheet.png` go.
            resume: continue from `output_dir/checkpoint` when it exists.

        Returns:
            self.
        """
        config = self.config
        if not self.reward.differentiable:
            raise ValueError(
                "RewardAligner back-propagates the reward: every weighted reward must be differentiable"
            )
        if not 1 <= config.grad_steps <= config.num_inference_steps:
            raise ValueError(
                f"grad_steps must be in [1, {config.num_inference_steps}], got {config.grad_steps}"
            )
        output, before, params, optimizer, gen, checkpoint = self._start(
            items, audience, config, output_dir, resume
        )

        bar = tqdm(total=config.steps, initial=self.step_, desc="align (DRaFT)", leave=False)
        while self.step_ < config.steps:
            with self._autocast():
                logged = self._step(gen)
            optimizer.zero_grad(set_to_none=True)
            logged["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            logged["loss"] = float(logged["loss"].detach())
            self.history_.append({k: float(v) for k, v in logged.items()})
            self.step_ += 1
            bar.update(1)
            recent = self.history_[-20:]
            bar.set_postfix(
                {k: f"{np.mean([h[k] for h in recent]):.3f}" for k in recent[-1] if k.startswith("reward_")}
            )
            if checkpoint is not None and self.step_ % config.checkpoint_every == 0:
                self._save_checkpoint(checkpoint, optimizer, gen, asdict(config))
        bar.close()
        if output is not None:
            self._save_checkpoint(checkpoint, optimizer, gen, asdict(config))
            self._finish(output, before, config.seed, config.num_inference_steps, config.guidance_scale)
        return self

    def _step(self, gen: torch.Generator) -> dict[str, torch.Tensor | float]:
        config, pipe = self.config, self.pipeline
        size = config.batch_size
        item_index = torch.randint(len(self.items_), (size,), generator=gen)  # (B,)
        user_index = torch.randint(len(self.audience_), (size,), generator=gen)  # (B,)
        noise = torch.randn((size, *pipe.sample_shape), generator=gen).to(pipe.device)  # (B, C, h, w)
        batch, users = self._batch(item_index), self._users(user_index)
        covers = pipe.generate_with_grad(
            batch, users, noise, config.num_inference_steps, config.grad_steps, config.guidance_scale
        )  # (B, 3, H, W)
        out = self.reward.evaluate(self._inputs(covers, item_index, user_index))
        loss = -out.total.mean()
        logged: dict[str, torch.Tensor | float] = self._log_terms(out)
        if config.anchor_weight > 0:
            # Anchored: the generic (zero-user) tokens. Anchoring each user's own tokens would pull every
            # cohort's cover back to the generic one; with centred user vectors (`personalized_user_vectors`)
            # the user-specific part averages out over users, so it cannot carry a reward hack for everyone.
            tokens, _ = pipe.conditioning(batch, None)  # (B, K, D)
            anchor = self._anchor_tokens(batch, None)  # (B, K, D)
            distance = (tokens - anchor).pow(2).mean() / anchor.pow(2).mean().clamp_min(1e-8)
            loss = loss + config.anchor_weight * distance
            logged["anchor"] = float(distance.detach())
        logged["loss"] = loss
        return logged
