import pytest
import torch

from icg_rec.errors import CheckpointError
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig


class Constant:
    """A reward that returns fixed per-image values."""

    def __init__(self, name: str, values: list[float], differentiable: bool = True) -> None:
        self.name = name
        self.values = torch.tensor(values)
        self.differentiable = differentiable

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        return self.values


INPUTS = RewardInputs(images=torch.zeros(3, 3, 4, 4))


def test_first_batch_standardises_each_reward_and_weights_them():
    rewards = {"a": Constant("a", [1.0, 2.0, 3.0]), "b": Constant("b", [10.0, 10.0, 40.0])}
    combiner = MultiReward(rewards, MultiRewardConfig(weights={"a": 1.0, "b": 0.5}))
    out = combiner.evaluate(INPUTS)
    torch.testing.assert_close(out.normalized["a"], torch.tensor([-1.0, 0.0, 1.0]))
    b = torch.tensor([10.0, 10.0, 40.0])
    torch.testing.assert_close(out.normalized["b"], (b - b.mean()) / b.std())
    torch.testing.assert_close(out.total, out.normalized["a"] + 0.5 * out.normalized["b"])
    torch.testing.assert_close(out.raw["b"], b)


def test_running_statistics_move_by_momentum_and_can_be_frozen():
    reward = Constant("a", [0.0, 2.0, 4.0])
    combiner = MultiReward({"a": reward}, MultiRewardConfig(weights={"a": 1.0}, momentum=0.5))
    combiner(INPUTS)  # mean 2, var 4
    reward.values = torch.tensor([4.0, 6.0, 8.0])  # mean 6, var 4
    combiner(INPUTS)
    assert combiner.norms["a"].mean == 4.0 and combiner.norms["a"].var == 4.0
    combiner.update_stats = False
    combiner(INPUTS)
    assert combiner.norms["a"].count == 2


def test_unnormalised_total_is_the_weighted_sum():
    rewards = {"a": Constant("a", [1.0, 2.0, 0.0]), "b": Constant("b", [3.0, 5.0, 1.0], differentiable=False)}
    combiner = MultiReward(rewards, MultiRewardConfig(weights={"a": 2.0, "b": 1.0}, normalize=False))
    torch.testing.assert_close(combiner(INPUTS), torch.tensor([5.0, 9.0, 1.0]))
    assert combiner.differentiable is False


def test_from_toml_and_bad_names(tmp_path):
    path = tmp_path / "rewards.toml"
    path.write_text("[multi_reward]\nnormalize = false\nweights = { a = 0.25 }\n")
    combiner = MultiReward.from_toml(
        path, {"a": Constant("a", [4.0, 0.0, 8.0]), "unused": Constant("u", [0.0])}
    )
    assert list(combiner.rewards) == ["a"] and combiner.differentiable
    torch.testing.assert_close(combiner(INPUTS), torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        MultiReward({"u": Constant("u", [0.0])}, MultiRewardConfig(weights={"u": 1.0}))(INPUTS)
    with pytest.raises(ValueError, match=r"\['c'\]"):
        MultiReward({"a": Constant("a", [1.0])}, MultiRewardConfig(weights={"c": 1.0}))
    path.write_text("[multi_reward]\nweight = { a = 1.0 }\n")
    with pytest.raises(CheckpointError, match="weight"):
        MultiReward.from_toml(path, {"a": Constant("a", [1.0])})
