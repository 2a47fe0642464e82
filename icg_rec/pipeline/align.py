"""Stage `align`: the warmed-up generator aligned with the weighted rewards (DRaFT-K, or Diffusion-DPO).

DRaFT (the default) is constrained, as `eval.alignment`'s "constrained" arm: `held_out_users` users of the
reward model, drawn with the run's seed, are kept out of the training audience; the trainer validates on
their (item, user) pairs every `validate_every` steps, raises the weight of relevance / aesthetic by dual
ascent when either falls below its floor (a share of its warm-up value there), and keeps the validated
state with the highest personalized reward that meets every floor. The held-out users are one group:
cohorts are fitted after this stage. Diffusion-DPO trains on every user, without validation.
"""

from dataclasses import dataclass, field
from pathlib import Path

from icg_rec.alignment.dpo import DPOConfig
from icg_rec.alignment.draft import AlignConfig
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.rewards import Rewards
from icg_rec.pipeline.stage import StageOutput
from icg_rec.pipeline.timing import fit_with_estimate
from icg_rec.pipeline.warmup import Warmed

METHODS = ("draft", "dpo")
TRADEOFF = "tradeoff.json"  # written by DRaFT with held-out pairs


def _draft() -> AlignConfig:
    return AlignConfig(
        steps=150,
        batch_size=8,
        learning_rate=1e-2,
        num_inference_steps=6,
        grad_steps=2,
        anchor_weight=1.0,  # 0.1 let DRaFT trade the item for one cover style for everyone
        checkpoint_every=25,
        # eval.alignment's constrained arm: relevance held at 95% of warm-up where fixed weights lost it
        constraints={"relevance": 0.9, "aesthetic": 1.0},
        dual_lr=10.0,
        keep="best",
    )


@dataclass
class AlignStageConfig:
    method: str = (
        "draft"  # "draft" (DRaFT-K, truncated backprop) or "dpo" (Diffusion-DPO on reward-ranked pairs)
    )
    held_out_users: int = 16  # DRaFT: reward-model users kept out of training, validated on (0: none)
    held_out_items: int = 4  # DRaFT: distinct items per held-out user (its validation pairs)
    draft: AlignConfig = field(default_factory=_draft)  # DRaFT-K settings (method "draft")
    dpo: DPOConfig = field(default_factory=DPOConfig)  # Diffusion-DPO settings (method "dpo")


@dataclass(frozen=True)
class Aligned(StageOutput):
    """pipeline/, checkpoint/, history.json, contact_sheet.png (warm-up covers above aligned ones); with
    DRaFT and held-out users also held_out.json (the validation pairs' user and item ids), tradeoff.json
    and tradeoff.md: one row per validation (personalized reward, each constrained reward and its share
    of the warm-up value, multipliers, feasible), the kept state marked."""

    def pipeline(self, encoded: Encoded, device: str = "cpu"):
        """The aligned ICGPipeline, with the encode stage's perception, on `device`."""
        from icg_rec.generation.pipeline import ICGPipeline

        folder = self.path("pipeline")
        return ICGPipeline.from_pretrained(folder, encoded.image_encoder(), encoded.text_encoder()).to(device)

    def tradeoff(self) -> dict | None:
        """tradeoff.json (objective, constraints, kept row, validations), or None (DPO, no held-out users)."""
        if TRADEOFF not in self.record()["outputs"]:
            return None
        return self.read_json(TRADEOFF)

    def summary(self) -> dict | None:
        """The kept state against the warm-up on the held-out pairs, or None without validations.

        Returns:
            {"keep" ("best" or "last"), "kept_step", "steps", "pairs", "objective", "floors": {reward:
            share}, "rewards": {reward: {"warmup", "kept", "share"}}} (the objective first); "share" is
            kept / warm-up, None where the warm-up value is <= 0.
        """
        report = self.tradeoff()
        if report is None or report["kept"] < 0:
            return None
        first, kept = report["validations"][0], report["validations"][report["kept"]]
        names = [report["objective"], *report["constraints"]]
        return {
            "keep": self.record()["config"]["draft"]["keep"],
            "kept_step": int(kept["step"]),
            "steps": int(report["validations"][-1]["step"]),
            "pairs": len(self.read_json("held_out.json")["user_ids"]),
            "objective": report["objective"],
            "floors": report["constraints"],
            "rewards": {
                k: {
                    "warmup": first[k],
                    "kept": kept[k],
                    "share": kept[k] / first[k] if first[k] > 0 else None,
                }
                for k in names
            },
        }


def check_constraints(config: AlignStageConfig, weights: dict[str, float]) -> None:
    """Refuses DRaFT floors the run cannot measure (nothing to check for DPO, which has no floors).

    Args:
        config: the stage's settings.
        weights: the rewards stage's weights (a reward with weight 0 or absent is not trained).

    Raises:
        ValueError: a floor on a reward the run does not weight, floors without held-out users, or
            negative held-out sizes.
    """
    if config.held_out_users < 0 or config.held_out_items < 1:
        raise ValueError(
            f"align.held_out_users must be >= 0 and align.held_out_items >= 1, got "
            f"{config.held_out_users} and {config.held_out_items}"
        )
    if config.method != "draft":
        return
    floors = config.draft.constraints
    if absent := sorted(k for k in floors if not weights.get(k)):
        kept = ", ".join(f"{k} = {v}" for k, v in floors.items() if k not in absent)
        raise ValueError(
            f"align.draft.constraints puts a floor on {absent}, which rewards.weights ({weights}) does not "
            f"weight, so the run has no such reward to hold: weight it, or drop the floor "
            f"([align.draft] constraints = {{{' ' + kept + ' ' if kept else ''}}})"
        )
    if floors and config.held_out_users == 0:
        raise ValueError(
            "align.draft.constraints are measured on held-out users: set align.held_out_users > 0, or "
            "[align.draft] constraints = {} to align without floors"
        )


def multi_reward(rewards: Rewards, encoded: Encoded, device: str = "cpu"):
    """The weighted MultiReward of the rewards stage (aesthetic, relevance, personalized), on `device`."""
    from icg_rec.rewards.aesthetic import AestheticReward
    from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
    from icg_rec.rewards.relevance import RelevanceReward

    weights = {name: w for name, w in rewards.weights().items() if w}
    image_encoder = encoded.image_encoder().to(device)
    scorers = {"personalized": rewards.personalized(image_encoder, device)}
    if "aesthetic" in weights:
        scorers["aesthetic"] = AestheticReward()
    if "relevance" in weights:
        scorers["relevance"] = RelevanceReward(
            rewards.relevance(device), encoded.text_encoder(), image_encoder
        )
    return MultiReward(scorers, MultiRewardConfig(weights=weights))


def audience(config: AlignStageConfig, rewards: Rewards, encoded: Encoded, n_items: int, seed: int):
    """The training audience and (DRaFT) the held-out validation pairs, from the reward model's users.

    `held_out_users` users are drawn with a seed derived from `seed` as one group (cohorts come later),
    `held_out_items` distinct items each; every other user trains. The generator reads the reward model's
    centred user vectors (`personalized_user_vectors`, centred over all its users).

    Args:
        config: the stage's settings (DPO and `held_out_users = 0`: every user trains, no pairs).
        rewards: the reward model whose users these are.
        encoded: the image encoder an "embedding" cover tower needs.
        n_items: items the pairs draw from (rows 0..n_items-1).
        seed: the run's seed.

    Returns:
        (Audience, HeldOutPairs or None).

    Raises:
        ValueError: the held-out users would leave no training user, or there are fewer items than
            `held_out_items`.
    """
    import numpy as np
    import torch

    from icg_rec.alignment import (
        Audience,
        HeldOutPairs,
        derive_seed,
        evaluation_pairs,
        personalized_user_vectors,
    )

    model = rewards.personalized(encoded.image_encoder())
    ids = model.user_ids_

    def users(chosen: np.ndarray) -> Audience:
        return Audience(torch.as_tensor(chosen), personalized_user_vectors(model, chosen))

    if config.method != "draft" or config.held_out_users == 0:
        return users(ids), None
    if config.held_out_users >= len(ids):
        raise ValueError(
            f"align.held_out_users ({config.held_out_users}) must leave users to train on: the reward "
            f"model knows {len(ids)} users"
        )
    if config.held_out_items > n_items:
        raise ValueError(f"align.held_out_items ({config.held_out_items}) must be <= the {n_items} items")
    one_group = torch.zeros(len(ids), dtype=torch.int64)  # (U,)
    item_index, rows = evaluation_pairs(
        one_group,
        n_items,
        config.held_out_users,
        config.held_out_items,
        derive_seed(seed, "align", "held_out"),
    )  # (P,) item rows, (P,) rows of ids
    held = ids[rows.numpy()]  # (P,) one user id per pair
    return users(np.setdiff1d(ids, held)), HeldOutPairs(item_index, users(held))


def align(
    config: AlignStageConfig,
    prepared: Prepared,
    encoded: Encoded,
    rewards: Rewards,
    warmed: Warmed,
    folder: Path,
    device: str = "cpu",
    dtype: str = "float32",
) -> Aligned:
    """Aligns the warmed-up generator with the rewards: DRaFT on the users outside the held-out pairs,
    validated on those (see the module docstring), or DPO on every user of the reward model.

    Args:
        config: the method and its settings.
        prepared: the item titles and ids.
        encoded: the reference covers and the perception encoders.
        rewards: the weighted rewards and the users' vectors.
        warmed: the warmed-up pipeline (the alignment's anchor).
        folder: the stage folder (a checkpoint there is resumed).
        device: where the pipeline and the rewards run.
        dtype: the generator's autocast dtype while training ("float32": none).

    Returns:
        The aligned pipeline (with DRaFT and held-out users, the kept validated state).

    Raises:
        ValueError: an unknown method, or settings `check_constraints` or `audience` refuse.
    """
    import torch

    from icg_rec.alignment import DPOAligner, ItemSet, RewardAligner
    from icg_rec.io import write_json

    if config.method not in METHODS:
        raise ValueError(f"align.method must be one of {METHODS}, got {config.method!r}")
    check_constraints(config, rewards.weights())
    settings = config.draft if config.method == "draft" else config.dpo
    torch.manual_seed(settings.seed)
    items = prepared.items()
    item_set = ItemSet(items["title"].to_list(), encoded.tensors()["pixels"], items["item_id"].to_torch())
    users, held_out = audience(config, rewards, encoded, len(item_set), settings.seed)
    reward = multi_reward(rewards, encoded, device)
    if held_out is not None:
        pairs = {
            "user_ids": held_out.users.user_ids.tolist(),
            "item_ids": item_set.item_ids[held_out.item_index].tolist(),
        }
        write_json(folder / "held_out.json", pairs | {"noise_seed": held_out.noise_seed})
    aligner_class = RewardAligner if config.method == "draft" else DPOAligner
    validation = {"held_out": held_out} if config.method == "draft" else {}  # DPO does not validate
    done = []

    def fit(trainer_config, resume: bool) -> None:
        # the warm-up pipeline every time: on resume the anchor is taken before the checkpoint loads
        aligner = aligner_class(warmed.pipeline(encoded), reward, trainer_config, device=device, dtype=dtype)
        done.append(aligner.fit(item_set, users, folder, resume=resume, **validation))

    steps = "steps" if config.method == "draft" else "rounds"
    fit_with_estimate(fit, settings, folder / "checkpoint", device, "align", steps_field=steps)
    write_json(folder / "history.json", done[-1].history_)
    return Aligned(folder)
