"""`device` of the personalized reward and the relevance model: CPU default, clear refusals."""

import numpy as np
import pytest
import torch

from icg_rec.device import DeviceError
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel, RelevanceReward

CNN = PersonalizedConfig(cover_tower="cnn", image_size=8, cnn_channels=4, dim=8, epochs=2, batch_size=64)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")


def test_personalized_on_explicit_cpu_equals_the_default(taste_log, tmp_path):
    frame, covers = taste_log
    features = CoverInputs(np.arange(24), covers.numpy())
    default = PersonalizedRewardModel(CNN).fit(frame, features, seed=0)
    cpu = PersonalizedRewardModel(CNN, device="cpu").fit(frame, features, seed=0)
    np.testing.assert_array_equal(cpu.predict(frame, features), default.predict(frame, features))
    loaded = PersonalizedRewardModel.load(cpu.save(tmp_path / "m"), device="cpu")
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict(frame, features), default.predict(frame, features))


def test_personalized_refuses_covers_on_another_device(taste_log):
    frame, covers = taste_log
    model = PersonalizedRewardModel(CNN).fit(frame, CoverInputs(np.arange(24), covers.numpy()), seed=0)
    elsewhere = torch.empty(2, 3, 8, 8, device="meta")
    with pytest.raises(DeviceError, match="covers are on meta but this personalized reward computes on cpu"):
        model(RewardInputs(images=elsewhere, user_ids=torch.tensor([0, 1])))


@no_cuda
def test_personalized_on_a_missing_device_fails_at_fit_and_load(taste_log, tmp_path):
    frame, covers = taste_log
    features = CoverInputs(np.arange(24), covers.numpy())
    with pytest.raises(DeviceError, match="CUDA is not available"):
        PersonalizedRewardModel(CNN, device="cuda").fit(frame, features)
    folder = PersonalizedRewardModel(CNN).fit(frame, features).save(tmp_path / "m")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        PersonalizedRewardModel.load(folder, device="cuda")


def test_relevance_device(tiny_text_encoder, tiny_image_encoder, tmp_path):
    gen = torch.Generator().manual_seed(0)
    text, image = torch.randn(20, 6, generator=gen).numpy(), torch.randn(20, 5, generator=gen).numpy()
    config = RelevanceConfig(shared_dim=4, epochs=2)
    model = RelevanceModel(config, device="cpu").fit(text, image, seed=0)
    np.testing.assert_array_equal(
        model.similarity(text, image), RelevanceModel(config).fit(text, image, seed=0).similarity(text, image)
    )
    assert RelevanceModel.load(model.save(tmp_path / "rel"), device="cpu").device_ == torch.device("cpu")
    covers = torch.rand(3, 3, 8, 8, generator=gen)
    with torch.no_grad():
        features = tiny_image_encoder(covers).numpy()
    fitted = RelevanceModel(config).fit(tiny_text_encoder.encode(["a", "b", "c"]), features)
    reward = RelevanceReward(fitted, tiny_text_encoder, tiny_image_encoder)
    with pytest.raises(DeviceError, match="covers are on meta but the relevance model computes on cpu"):
        reward(RewardInputs(images=torch.empty(3, 3, 8, 8, device="meta"), titles=["a", "b", "c"]))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            RelevanceModel(config, device="cuda").fit(text, image)
