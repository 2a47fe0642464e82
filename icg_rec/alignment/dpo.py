"""Preference alignment without reward gradients: reward-ranked pairs and the Diffusion-DPO loss.

Each round draws (item, user) pairs, samples `candidates` covers per pair with the current generator,
ranks them by the combined reward (which may be non-differentiable) and keeps the best and the worst as
winner / loser. The generator then takes `steps_per_round` steps of Diffusion-DPO (Wallace et al., 2023)
on those pairs, with the frozen warm-up adapter and refiner as the reference model:

    err(x) = |target - model(x_t, t, tokens)|^2   (per cover, mean over pixels; target = eps, x0 or v,
                                                    as the scheduler's prediction_type says)
    loss = -log sigmoid(-beta * ((err_w - err_ref_w) - (err_l - err_ref_l)))

winner and loser share the timestep t and the noise eps. `beta` absorbs the paper's timestep constant T.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from icg_rec.alignment.common import AlignerBase
from icg_rec.alignment.data import Audience, ItemSet
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.sampling import denoising_target, to_model_space
from icg_rec.rewards.combiner import MultiReward


@dataclass
class DPOConfig:
    rounds: int = 10  # sample-rank-train rounds
    pairs_per_round: int = 16  # (item, user) pairs sampled per round
    candidates: int = 4  # covers sampled per pair; the best and the worst by reward form the preference pair
    steps_per_round: int = 8  # DPO optimizer steps per round
    batch_size: int = 8  # preference pairs per step
    beta: float = 1000.0  # DPO inverse temperature on the error differences
    learning_rate: float = 1e-3  # AdamW learning rate
    num_inference_steps: int = 10  # DDIM steps per candidate
    guidance_scale: float = 1.0  # classifier-free guidance while sampling candidates
    lora_rank: int = 0  # > 0: also train LoRA of this rank on the UNet attention projections
    gradient_checkpointing: bool = False  # recompute UNet activations in the backward pass
    max_grad_norm: float = 1.0  # gradient clipping
    checkpoint_every: int = 2  # rounds between checkpoints (output_dir only)
    sample_pairs: int = 8  # pairs on the contact sheet
    seed: int = 0  # pair draws, candidate noise, timesteps


def diffusion_dpo_loss(
    model_err_w: torch.Tensor,
    model_err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Diffusion-DPO loss from per-sample denoising errors of the winner (w) and loser (l).

    Args:
        model_err_w / model_err_l: (B,) errors of the trained model.
        ref_err_w / ref_err_l: (B,) errors of the frozen reference model.
        beta: inverse temperature.

    Returns:
        The mean loss (scalar): -log sigmoid(-beta * ((model_w - ref_w) - (model_l - ref_l))).
    """
    inside = -beta * ((model_err_w - ref_err_w) - (model_err_l - ref_err_l))  # (B,)
    return -F.logsigmoid(inside).mean()


class DPOAligner(AlignerBase):
    """Diffusion-DPO on reward-ranked cover pairs; trains the adapter, refiner and optional UNet LoRA.

    Args:
        pipeline: the warm-up ICGPipeline; trained in place.
        reward: the combined reward used only to rank candidates (no gradient flows through it).
        config: training settings.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`); the rewards must compute there too.
        dtype: "float32", or "bfloat16" for mixed precision.

    Attributes after `fit`: `history_` (per round: loss, reward_total / reward_<name> of the candidates,
    margin = mean best-minus-worst total reward), `step_` (rounds done, resumed ones included).
    """

    def __init__(
        self,
        pipeline: ICGPipeline,
        reward: MultiReward,
        config: DPOConfig,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        super().__init__(pipeline, reward, device, dtype)
        self.config = config

    def fit(
        self, items: ItemSet, audience: Audience, output_dir: str | Path | None = None, resume: bool = False
    ) -> "DPOAligner":
        """Runs the rounds.

        Args:
            items: titles, reference covers and ids of the items.
            audience: user ids (for the rewards) and embeddings (for the generator) to draw pairs from.
            output_dir: where `checkpoint/`, the final `pipeline/` and `contact_sheet.png` go.
            resume: continue from `output_dir/checkpoint` when it exists (at a round boundary).

        Returns:
            self.
        """
        config = self.config
        if config.candidates < 2:
            raise ValueError(f"DPO needs at least 2 candidates per pair to rank, got {config.candidates}")
        output, before, params, optimizer, gen, checkpoint, _ = self._start(
            items, audience, config, output_dir, resume
        )

        bar = tqdm(total=config.rounds, initial=self.step_, desc="align (DPO)", leave=False)
        while self.step_ < config.rounds:
            with self._autocast():
                item_index, user_index, winners, losers, logged = self._preference_pairs(gen)
            losses = []
            for _ in range(config.steps_per_round):
                pick = torch.randint(len(item_index), (config.batch_size,), generator=gen)  # (B,)
                with self._autocast():
                    loss = self._loss(item_index[pick], user_index[pick], winners[pick], losers[pick], gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                losses.append(float(loss.detach()))
            logged["loss"] = sum(losses) / len(losses)
            self.history_.append(logged)
            self.step_ += 1
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.4f}", margin=f"{logged['margin']:.3f}")
            if checkpoint is not None and self.step_ % config.checkpoint_every == 0:
                self._save_checkpoint(checkpoint, optimizer, gen, asdict(config))
        bar.close()
        if output is not None:
            self._save_checkpoint(checkpoint, optimizer, gen, asdict(config))
            self._finish(output, before, config.seed, config.num_inference_steps, config.guidance_scale)
        return self

    def _preference_pairs(
        self, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
        """Samples candidates for a round's pairs and keeps the best and worst by total reward."""
        config, pipe = self.config, self.pipeline
        size = config.pairs_per_round
        item_index = torch.randint(len(self.items_), (size,), generator=gen)  # (P,)
        user_index = torch.randint(len(self.audience_), (size,), generator=gen)  # (P,)
        batch, users = self._batch(item_index), self._users(user_index)
        covers, scores, terms = [], [], []
        with torch.no_grad():
            for _ in range(config.candidates):
                noise = torch.randn((size, *pipe.sample_shape), generator=gen).to(pipe.device)  # (P, C, h, w)
                cover = pipe.generate_with_grad(
                    batch, users, noise, config.num_inference_steps, 0, config.guidance_scale
                )  # (P, 3, H, W)
                out = self.reward.evaluate(self._inputs(cover, item_index, user_index))
                covers.append(cover)
                scores.append(out.total)
                terms.append(self._log_terms(out))
        stacked = torch.stack(covers)  # (n_candidates, P, 3, H, W)
        score = torch.stack(scores)  # (n_candidates, P)
        rows = torch.arange(size)
        best, worst = score.argmax(dim=0), score.argmin(dim=0)  # (P,)
        logged = {k: sum(t[k] for t in terms) / len(terms) for k in terms[0]}
        logged["margin"] = float((score.max(dim=0).values - score.min(dim=0).values).mean())
        return item_index, user_index, stacked[best, rows], stacked[worst, rows], logged

    def _loss(
        self,
        item_index: torch.Tensor,
        user_index: torch.Tensor,
        winners: torch.Tensor,
        losers: torch.Tensor,
        gen: torch.Generator,
    ) -> torch.Tensor:
        pipe = self.pipeline
        size = winners.shape[0]
        batch, users = self._batch(item_index), self._users(user_index)
        with torch.no_grad():
            clean = to_model_space(torch.cat([winners, losers]), pipe.vae, gen)  # (2B, C, h, w)
        noise = torch.randn(clean[:size].shape, generator=gen).to(clean.device)  # (B, C, h, w), shared
        steps = torch.randint(pipe.scheduler.config.num_train_timesteps, (size,), generator=gen).to(
            clean.device
        )
        noise2, steps2 = torch.cat([noise, noise]), torch.cat([steps, steps])  # (2B, ...)
        noisy = pipe.scheduler.add_noise(clean, noise2, steps2)  # (2B, C, h, w)
        target = denoising_target(pipe.scheduler, clean, noise2, steps2)  # (2B, C, h, w)
        tokens, _ = pipe.conditioning(batch, users)  # (B, K, D)
        anchor = self._anchor_tokens(batch, users)  # (B, K, D)
        pred = pipe.unet(
            noisy, steps2, encoder_hidden_states=torch.cat([tokens, tokens])
        ).sample  # (2B, C, h, w)
        with torch.no_grad(), self._anchor_unet():
            ref = pipe.unet(noisy, steps2, encoder_hidden_states=torch.cat([anchor, anchor])).sample
        err = (pred.float() - target.float()).pow(2).flatten(1).mean(1)  # (2B,)
        ref_err = (ref.float() - target.float()).pow(2).flatten(1).mean(1)  # (2B,)
        return diffusion_dpo_loss(err[:size], err[size:], ref_err[:size], ref_err[size:], self.config.beta)
