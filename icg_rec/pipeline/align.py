"""Stage `align`: the warmed-up generator aligned with the weighted rewards (DRaFT-K, or Diffusion-DPO)."""

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


def _draft() -> AlignConfig:
    return AlignConfig(
        steps=150,
        batch_size=8,
        learning_rate=1e-2,
        num_inference_steps=6,
        grad_steps=2,
        anchor_weight=1.0,  # 0.1 let DRaFT trade the item for one cover style for everyone
        checkpoint_every=25,
    )


@dataclass
class AlignStageConfig:
    method: str = (
        "draft"  # "draft" (DRaFT-K, truncated backprop) or "dpo" (Diffusion-DPO on reward-ranked pairs)
    )
    draft: AlignConfig = field(default_factory=_draft)  # DRaFT-K settings (method "draft")
    dpo: DPOConfig = field(default_factory=DPOConfig)  # Diffusion-DPO settings (method "dpo")


@dataclass(frozen=True)
class Aligned(StageOutput):
    """pipeline/, checkpoint/, history.json, contact_sheet.png (warm-up covers above aligned ones)."""

    def pipeline(self, encoded: Encoded, device: str = "cpu"):
        """The aligned ICGPipeline, with the encode stage's perception, on `device`."""
        from icg_rec.generation.pipeline import ICGPipeline

        folder = self.path("pipeline")
        return ICGPipeline.from_pretrained(folder, encoded.image_encoder(), encoded.text_encoder()).to(device)


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


def audience(rewards: Rewards, encoded: Encoded):
    """Every user of the reward model: ids for the rewards, centred reward user vectors for the generator."""
    import torch

    from icg_rec.alignment import Audience, personalized_user_vectors

    model = rewards.personalized(encoded.image_encoder())
    return Audience(torch.as_tensor(model.user_ids_), personalized_user_vectors(model, model.user_ids_))


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
    """Aligns the warmed-up generator with the rewards over every (item, user of the reward model).

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
        The aligned pipeline.
    """
    import torch

    from icg_rec.alignment import DPOAligner, ItemSet, RewardAligner
    from icg_rec.io import write_json

    if config.method not in METHODS:
        raise ValueError(f"align.method must be one of {METHODS}, got {config.method!r}")
    settings = config.draft if config.method == "draft" else config.dpo
    torch.manual_seed(settings.seed)
    items = prepared.items()
    item_set = ItemSet(items["title"].to_list(), encoded.tensors()["pixels"], items["item_id"].to_torch())
    users = audience(rewards, encoded)
    reward = multi_reward(rewards, encoded, device)
    aligner_class = RewardAligner if config.method == "draft" else DPOAligner
    done = []

    def fit(trainer_config, resume: bool) -> None:
        # the warm-up pipeline every time: on resume the anchor is taken before the checkpoint loads
        aligner = aligner_class(warmed.pipeline(encoded), reward, trainer_config, device=device, dtype=dtype)
        done.append(aligner.fit(item_set, users, folder, resume=resume))

    steps = "steps" if config.method == "draft" else "rounds"
    fit_with_estimate(fit, settings, folder / "checkpoint", device, "align", steps_field=steps)
    write_json(folder / "history.json", done[-1].history_)
    return Aligned(folder)
