import numpy as np
import pytest
import torch

from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.relevance import ClipRelevanceReward, RelevanceConfig, RelevanceModel, RelevanceReward

CFG = RelevanceConfig(shared_dim=16, epochs=30, batch_size=32, lr=1e-2)


@pytest.fixture(scope="module")
def pairs():
    """Texts that are a fixed linear view of their images plus noise: 80 training and 40 held-out pairs."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(120, 10)).astype(np.float32)
    text = (image @ rng.normal(size=(10, 6)) + 0.1 * rng.normal(size=(120, 6))).astype(np.float32)
    return text, image


def test_retrieval_beats_chance_on_held_out_pairs(pairs):
    text, image = pairs
    model = RelevanceModel(CFG).fit(text[:80], image[:80], seed=0)
    rec = model.recall_at_k(text[80:], image[80:])
    assert rec["n"] == 40 and rec["chance@1"] == 1 / 40 and rec["chance@10"] == 10 / 40
    assert rec["recall@1"] > 0.5 and rec["recall@10"] > 0.9


def test_save_load_round_trip(pairs, tmp_path):
    text, image = pairs
    model = RelevanceModel(RelevanceConfig(shared_dim=4, epochs=1)).fit(text, image, seed=0)
    loaded = RelevanceModel.load(model.save(tmp_path / "rel"))
    np.testing.assert_array_equal(loaded.similarity(text, image), model.similarity(text, image))
    (tmp_path / "rel" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json"):
        RelevanceModel.load(tmp_path / "rel")
    model.save(tmp_path / "rel")
    (tmp_path / "rel" / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match="'weights.safetensors' listed in MANIFEST.json is missing"):
        RelevanceModel.load(tmp_path / "rel")


def test_bad_pairs_raise(pairs):
    text, image = pairs
    with pytest.raises(SchemaError, match="row-aligned"):
        RelevanceModel(CFG).fit(text[:10], image[:9])


def test_reward_is_differentiable_in_pixels(tiny_text_encoder, tiny_image_encoder):
    gen = torch.Generator().manual_seed(0)
    covers = torch.rand(30, 3, 8, 8, generator=gen)
    titles = [f"cover number {i}" for i in range(30)]
    with torch.no_grad():
        image = tiny_image_encoder(covers).numpy()
    model = RelevanceModel(RelevanceConfig(shared_dim=4, epochs=2)).fit(
        tiny_text_encoder.encode(titles), image
    )
    reward = RelevanceReward(model, tiny_text_encoder, tiny_image_encoder)
    pixels = covers[:3].clone().requires_grad_(True)
    score = reward(RewardInputs(images=pixels, titles=titles[:3]))
    score.sum().backward()
    assert score.shape == (3,) and bool(((score >= -1) & (score <= 1)).all())
    assert pixels.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one title per image"):
        reward(RewardInputs(images=pixels, titles=titles[:2]))


def test_clip_relevance_from_a_local_checkpoint(tiny_clip):
    reward = ClipRelevanceReward(tiny_clip)
    pixels = torch.rand(2, 3, 24, 24).requires_grad_(True)
    score = reward(RewardInputs(images=pixels, titles=["a red cover", "a blue cover"]))
    score.sum().backward()
    assert score.shape == (2,) and pixels.grad.abs().sum() > 0
