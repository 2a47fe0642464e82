"""A tiny warmed-up pipeline (8x8 pixel UNet, 16-wide prompter), tiny perception and a brightness reward."""

import pytest
import torch

from icg_rec.alignment import Audience, ItemSet
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig


class Brightness:
    """A known differentiable reward: the mean pixel value."""

    name = "brightness"
    differentiable = True

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        return inputs.images.mean(dim=(1, 2, 3))  # (B,)


class NotDifferentiable(Brightness):
    name = "counted"
    differentiable = False


def _covers() -> torch.Tensor:
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.5, 0.5, 0.5]])
    return colours[:, :, None, None].expand(4, 3, 8, 8).clone()


TITLES = ["red a", "green b", "blue c", "grey d"]


@pytest.fixture(scope="session")
def warm_dir(tmp_path_factory, tiny_perception):
    """A tiny pipeline warmed up for 25 steps on four flat covers (a random UNet saturates the sampler's
    x0 clipping, so its covers barely respond to the conditioning)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=8, cross_attention_dim=32, num_tokens=2, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=2, image_prefix_tokens=1),
    )  # fmt: skip
    image, text = tiny_perception
    pipe = build_pipeline(config, image(), text())
    WarmupTrainer(pipe, WarmupConfig(steps=25, batch_size=8, learning_rate=3e-3, cond_dropout=0.0)).fit(
        TITLES, _covers()
    )
    folder = tmp_path_factory.mktemp("warm") / "pipeline"
    pipe.save_pretrained(folder)
    torch.set_num_threads(before)
    return folder


@pytest.fixture
def pipeline_factory(warm_dir, tiny_perception):
    """Fresh copies of the warmed-up tiny pipeline."""
    image, text = tiny_perception
    return lambda: ICGPipeline.from_pretrained(warm_dir, image(), text())


@pytest.fixture
def brightness_reward():
    def make(normalize: bool = False, weight: float = 1.0) -> MultiReward:
        config = MultiRewardConfig(weights={"brightness": weight}, normalize=normalize)
        return MultiReward({"brightness": Brightness()}, config)

    return make


@pytest.fixture
def frozen_reward():
    return MultiReward(
        {"counted": NotDifferentiable()}, MultiRewardConfig(weights={"counted": 1.0}, normalize=False)
    )


@pytest.fixture
def items() -> ItemSet:
    return ItemSet(titles=TITLES, images=_covers(), item_ids=torch.arange(10, 14))


@pytest.fixture
def audience() -> Audience:
    gen = torch.Generator().manual_seed(1)
    return Audience(user_ids=torch.arange(3), vectors=torch.randn(3, 4, generator=gen))
