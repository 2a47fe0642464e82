"""Reward alignment by truncated backprop through the sampler (DRaFT-K / ReFL style), no labels needed.

Each step draws (item, user) pairs and seeded noise, samples covers with `ICGPipeline.generate_with_grad`
(only the last `grad_steps` denoising steps keep a graph), scores them with a `MultiReward` (e.g.
aesthetic + relevance + personalized) and ascends the total:

    loss = -mean(total reward) + anchor_weight * |tokens - anchor tokens|^2 / |anchor tokens|^2

The anchor term keeps the generic user's conditioning tokens near the warm-up adapter's for the same
item: a cheap guard against reward hacking that needs no second sampling pass (fidelity in pixels is
measured by `eval/alignment.py`). How each user's tokens differ from the generic ones is left free: that
difference is the personalization.

Given held-out pairs (`fit(held_out=...)`), the trainer validates every `validate_every` steps with the
training rewards on them (fixed noise), and with `constraints` keeps chosen rewards above a share of their
warm-up values: Lagrange multipliers add weight to a reward that falls below its floor, and the kept state
is the best validated one meeting every floor (`icg_rec.alignment.constraints`). The validations are the
trade-off curve (`tradeoff.md` in the output folder); `monitors` are scored there too, never used.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from icg_rec.alignment.common import AlignerBase
from icg_rec.alignment.constraints import ConstraintState, tradeoff_markdown
from icg_rec.alignment.data import Audience, HeldOutPairs, ItemSet
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.io import atomic_write, write_json
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward

Monitor = Callable[[RewardInputs], torch.Tensor]  # scored on the held-out covers, (P,); never trains


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
    seed: int = 0  # pair draws, noise and LoRA init
    # reward -> floor as a share of its warm-up value on the held-out pairs, e.g. {"relevance": 0.9}
    constraints: dict[str, float] = field(default_factory=dict)
    objective: str = "personalized"  # the reward the kept state maximizes on the held-out pairs
    validate_every: int = 20  # steps between validations on the held-out pairs (fit(held_out=...))
    dual_lr: float = 0.0  # Lagrange multiplier step per unit of relative shortfall (0 = fixed weights)
    max_multiplier: float = 20.0  # cap of each multiplier
    keep: str = "best"  # with held-out pairs: "best" validated state meeting every floor, or "last"


class RewardAligner(AlignerBase):
    """DRaFT-K alignment of a pipeline's adapter and refiner (and optional UNet LoRA) to a MultiReward.

    Args:
        pipeline: the warm-up ICGPipeline; trained in place.
        reward: the combined reward; every weighted reward must be differentiable.
        config: training settings.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`); the rewards must compute there too.
        dtype: "float32", or "bfloat16" for mixed precision.

    Attributes after `fit`: `history_` (per step: loss, anchor, reward_total, reward_<name> raw means,
    multiplier_<name>), `step_` (steps done, resumed ones included); with held-out pairs `validations_`
    (one row per validation, see `ConstraintState.record`) and `kept_step_` (the step whose state the
    pipeline holds after fit).
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
        self,
        items: ItemSet,
        audience: Audience,
        output_dir: str | Path | None = None,
        resume: bool = False,
        held_out: HeldOutPairs | None = None,
        monitors: dict[str, Monitor] | None = None,
    ) -> "RewardAligner":
        """Runs the alignment.

        Args:
            items: titles, reference covers and ids of the items.
            audience: user ids (for the rewards) and embeddings (for the generator) to draw pairs from.
            output_dir: where `checkpoint/`, the final `pipeline/`, `contact_sheet.png` and (with
                held-out pairs) `tradeoff.json` / `tradeoff.md` go.
            resume: continue from `output_dir/checkpoint` when it exists.
            held_out: pairs of users outside `audience` to validate on (needed by `constraints`).
            monitors: name -> scorer of the held-out covers, logged in the validations only.

        Returns:
            self.
        """
        config = self.config
        self._check_constraints(audience, held_out, monitors or {})
        if not self.reward.differentiable:
            raise ValueError(
                "RewardAligner back-propagates the reward: every weighted reward must be differentiable"
            )
        if not 1 <= config.grad_steps <= config.num_inference_steps:
            raise ValueError(
                f"grad_steps must be in [1, {config.num_inference_steps}], got {config.grad_steps}"
            )
        output, before, params, optimizer, gen, checkpoint, resumed = self._start(
            items, audience, config, output_dir, resume
        )
        state = ConstraintState(config.constraints, config.objective, config.dual_lr, config.max_multiplier)
        kept = None  # trained_state of the kept validation
        if resumed["extra"] is not None:
            state.load_json(resumed["extra"])
            kept = resumed["extra_weights"]

        def validate() -> None:
            nonlocal kept
            if held_out is not None and (not state.validations or state.validations[-1]["step"] < self.step_):
                before_best = state.best
                state.record(self.step_, self._validate(held_out, monitors or {}))
                if state.best != before_best:
                    kept = self.trained_state()

        def save() -> None:
            extra = state.to_json() if held_out is not None else None
            self._save_checkpoint(checkpoint, optimizer, gen, asdict(config), extra, kept)

        bar = tqdm(total=config.steps, initial=self.step_, desc="align (DRaFT)", leave=False)
        while self.step_ < config.steps:
            if self.step_ % config.validate_every == 0:
                validate()
            with self._autocast():
                logged = self._step(gen, state)
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
                save()
        bar.close()
        validate()
        if output is not None:
            save()
        self.validations_ = state.validations
        self.kept_step_ = self.step_
        if held_out is not None and config.keep == "best" and state.best != len(state.validations) - 1:
            self.load_trained_state(kept, "the kept validated state")
            self.kept_step_ = int(state.validations[state.best]["step"])
        if output is not None:
            self._finish(output, before, config.seed, config.num_inference_steps, config.guidance_scale)
            if held_out is not None:
                best = state.best if config.keep == "best" else len(state.validations) - 1
                report = {"objective": config.objective, "constraints": config.constraints, "kept": best}
                write_json(output / "tradeoff.json", report | {"validations": state.validations})
                table = tradeoff_markdown(state.validations, config.objective, best)
                atomic_write(output / "tradeoff.md", lambda tmp: tmp.write_text(table))
        return self

    def _check_constraints(
        self, audience: Audience, held_out: HeldOutPairs | None, monitors: dict[str, Monitor]
    ) -> None:
        config, names = self.config, set(self.reward.rewards)
        if config.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {config.keep!r}")
        if config.validate_every < 1:
            raise ValueError(f"validate_every must be >= 1, got {config.validate_every}")
        if held_out is None:
            if config.constraints:
                raise ValueError("constraints are measured on held-out pairs: pass fit(held_out=...)")
            return
        if unknown := sorted(set(config.constraints) - names):
            raise ValueError(
                f"constraints name reward(s) {unknown} that the MultiReward lacks: {sorted(names)}"
            )
        if config.objective not in names or config.objective in config.constraints:
            raise ValueError(
                f"objective {config.objective!r} must be an unconstrained reward of the MultiReward "
                f"({sorted(names - set(config.constraints))})"
            )
        if clash := sorted(set(monitors) & names):
            raise ValueError(f"monitor name(s) {clash} clash with reward names")
        if overlap := sorted(set(held_out.users.user_ids.tolist()) & set(audience.user_ids.tolist())):
            raise ValueError(f"held-out users {overlap[:5]} are also in the training audience")

    @torch.no_grad()
    def _validate(self, held_out: HeldOutPairs, monitors: dict[str, Monitor]) -> dict[str, float]:
        """Mean raw training rewards and monitors of the held-out pairs' covers (fixed noise)."""
        pipe, config = self.pipeline, self.config
        sums: dict[str, float] = {}
        for start in range(0, len(held_out), 32):
            rows = torch.arange(start, min(start + 32, len(held_out)))  # (b,)
            item_index = held_out.item_index[rows]
            noise = pipe.noise_for(
                range(held_out.noise_seed + start, held_out.noise_seed + start + len(rows))
            )
            with self._autocast():
                covers = pipe.generate_with_grad(
                    self._batch(item_index),
                    held_out.users.vectors[rows].to(pipe.device),
                    noise,
                    config.num_inference_steps,
                    0,
                    config.guidance_scale,
                ).float()  # fmt: skip  (b, 3, H, W)
            inputs = RewardInputs(
                covers, self.items_.item_ids[item_index], held_out.users.user_ids[rows],
                [self.items_.titles[i] for i in item_index.tolist()],
            )  # fmt: skip
            for name, scorer in {**self.reward.rewards, **monitors}.items():
                sums[name] = sums.get(name, 0.0) + float(scorer(inputs).sum())
        return {name: total / len(held_out) for name, total in sums.items()}

    def _step(
        self, gen: torch.Generator, state: ConstraintState | None = None
    ) -> dict[str, torch.Tensor | float]:
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
        bonus = 0.0 if state is None else state.bonus(out.normalized)  # (B,) the multipliers' terms
        loss = -(out.total + bonus).mean()
        logged: dict[str, torch.Tensor | float] = self._log_terms(out)
        if state is not None:
            logged.update({f"multiplier_{k}": v for k, v in state.multipliers.items()})
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
