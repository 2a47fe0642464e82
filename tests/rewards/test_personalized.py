import copy
import json

import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.errors import CheckpointError, SchemaError, UnknownIdError
from icg_rec.io import write_folder
from icg_rec.metrics import auc
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.personalized import (
    CoverInputs,
    PersonalizedConfig,
    PersonalizedRewardModel,
    colour_statistics,
)
from icg_rec.rewards.personalized.training import HistoryTable, beta_prior_strength

CNN = PersonalizedConfig(
    cover_tower="cnn",
    image_size=8,
    cnn_channels=4,
    dim=8,
    epochs=15,
    batch_size=64,
    lr=1e-2,
    valid_fraction=0.2,
)
EMB = PersonalizedConfig(dim=8, hidden=16, epochs=15, batch_size=64, lr=1e-2, valid_fraction=0.2)


@pytest.fixture(scope="module")
def cnn_model(taste_log):
    frame, covers = taste_log
    return PersonalizedRewardModel(CNN).fit(frame, CoverInputs(np.arange(24), covers.numpy()), seed=0)


@pytest.fixture(scope="module")
def emb_model(taste_log, tiny_image_encoder):
    frame, covers = taste_log
    with torch.no_grad():
        feats = tiny_image_encoder(covers).numpy()
    model = PersonalizedRewardModel(EMB, image_encoder=tiny_image_encoder)
    return model.fit(frame, CoverInputs(np.arange(24), feats), seed=0)


def test_learns_each_users_colour_taste(cnn_model, taste_log):
    frame, covers = taste_log
    users = torch.arange(20).repeat_interleave(24)  # every user x every item
    items = torch.arange(24).repeat(20)
    p = cnn_model(RewardInputs(images=covers[items], item_ids=items, user_ids=users)).detach().numpy()
    likes = ((items < 12) == (users % 2 == 0)).numpy()
    assert auc(likes, p) > 0.9


def test_gradients_flow_from_reward_to_pixels(emb_model, cnn_model, taste_log):
    _, covers = taste_log
    for model in (emb_model, cnn_model):
        pixels = covers[:3].clone().requires_grad_(True)
        reward = model(
            RewardInputs(images=pixels, item_ids=torch.arange(3), user_ids=torch.tensor([0, 1, -1]))
        )
        reward.sum().backward()
        assert reward.shape == (3,)
        assert pixels.grad is not None and pixels.grad.abs().sum() > 0


def test_generic_user_is_minus_one_or_no_user_ids(cnn_model, taste_log):
    _, covers = taste_log
    explicit = cnn_model(RewardInputs(images=covers[:4], user_ids=torch.full((4,), -1)))
    implicit = cnn_model(RewardInputs(images=covers[:4]))
    torch.testing.assert_close(explicit, implicit)


def test_unknown_user_raises_unless_generic(cnn_model, taste_log):
    frame, covers = taste_log
    with pytest.raises(UnknownIdError, match=r"\[99\].*-1"):
        cnn_model(RewardInputs(images=covers[:2], user_ids=torch.tensor([0, 99])))
    with pytest.raises(UnknownIdError, match="99"):
        cnn_model.predict(
            pl.DataFrame({"user_id": [99], "item_id": [0]}), CoverInputs(np.arange(24), covers.numpy())
        )


def test_wrong_image_size_raises(cnn_model, taste_log):
    with pytest.raises(ValueError, match="8x8"):
        cnn_model(RewardInputs(images=torch.rand(2, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        cnn_model(RewardInputs(images=torch.rand(2, 8, 8)))


def test_embedding_tower_needs_an_encoder_to_score_pixels(emb_model, taste_log):
    no_encoder = copy.copy(emb_model)
    no_encoder.image_encoder = None
    with pytest.raises(ValueError, match="image_encoder"):
        no_encoder(RewardInputs(images=taste_log[1][:2]))


def test_bad_inputs_to_fit(taste_log):
    frame, covers = taste_log
    good = CoverInputs(np.arange(24), covers.numpy())
    with pytest.raises(SchemaError, match="timestamp"):
        PersonalizedRewardModel(CNN).fit(frame.drop("timestamp"), good)
    with pytest.raises(UnknownIdError, match="no cover features"):
        PersonalizedRewardModel(CNN).fit(frame, CoverInputs(np.arange(20), covers[:20].numpy()))
    with pytest.raises(SchemaError, match=r"\(n, 3, 8, 8\)"):
        PersonalizedRewardModel(CNN).fit(frame, CoverInputs(np.arange(24), covers[:, :, :4, :4].numpy()))
    with pytest.raises(ValueError, match="cover_tower"):
        PersonalizedRewardModel(PersonalizedConfig(cover_tower="vit")).fit(frame, good)
    with pytest.raises(ValueError, match="not fitted"):
        PersonalizedRewardModel(CNN).predict(frame, good)


def test_a_log_with_the_reserved_generic_user_id_is_refused(taste_log):
    frame, covers = taste_log
    with_minus_one = frame.with_columns(
        pl.when(pl.col("user_id") == 3).then(-1).otherwise("user_id").alias("user_id")
    )
    with pytest.raises(SchemaError, match=r"16 row\(s\) of user_id -1, the id reserved for the generic user"):
        PersonalizedRewardModel(CNN).fit(with_minus_one, CoverInputs(np.arange(24), covers.numpy()))


def test_freeze_stops_gradients_into_the_model_but_not_into_the_pixels(cnn_model, taste_log):
    model = copy.deepcopy(cnn_model).freeze()
    assert not any(p.requires_grad for p in model.net_.parameters())
    pixels = taste_log[1][:2].clone().requires_grad_(True)
    model(RewardInputs(images=pixels)).sum().backward()
    assert pixels.grad.abs().sum() > 0


def test_load_names_a_missing_file(emb_model, tmp_path):
    emb_model.save(tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match="'weights.safetensors' listed in MANIFEST.json is missing"):
        PersonalizedRewardModel.load(tmp_path / "m")
    (tmp_path / "m" / "MANIFEST.json").unlink()  # a folder saved by hand or by an older icg_rec
    with pytest.raises(CheckpointError, match="has no MANIFEST.json"):
        PersonalizedRewardModel.load(tmp_path / "m")


def test_save_load_round_trip(emb_model, taste_log, tiny_image_encoder, tmp_path):
    frame, covers = taste_log
    emb_model.save(tmp_path / "m")
    loaded = PersonalizedRewardModel.load(tmp_path / "m", image_encoder=tiny_image_encoder)
    inputs = RewardInputs(
        images=covers[:5], user_ids=torch.tensor([0, 1, 2, -1, 19]), item_ids=torch.arange(5)
    )
    torch.testing.assert_close(loaded(inputs), emb_model(inputs), rtol=0, atol=0)
    with torch.no_grad():
        feats = CoverInputs(np.arange(24), tiny_image_encoder(covers).numpy())
    np.testing.assert_array_equal(loaded.predict(frame, feats), emb_model.predict(frame, feats))


def test_load_refuses_another_encoder_and_broken_files(emb_model, tiny_image_encoder, tmp_path):
    emb_model.save(tmp_path / "m")
    other = type(tiny_image_encoder)()
    other.name = "other-encoder"
    with pytest.raises(CheckpointError, match="other-encoder"):
        PersonalizedRewardModel.load(tmp_path / "m", image_encoder=other)
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        PersonalizedRewardModel.load(tmp_path / "m")


def test_same_seed_same_numbers(taste_log):
    frame, covers = taste_log
    feats = CoverInputs(np.arange(24), covers.numpy())
    cfg = PersonalizedConfig(cover_tower="cnn", image_size=8, cnn_channels=4, dim=4, epochs=2, batch_size=128)
    a = PersonalizedRewardModel(cfg).fit(frame, feats, seed=3).predict(frame, feats)
    b = PersonalizedRewardModel(cfg).fit(frame, feats, seed=3).predict(frame, feats)
    np.testing.assert_array_equal(a, b)


def test_history_table_sums_exclude_the_rows_own_fold_and_follow_updates():
    u = torch.tensor([1, 1, 1, 2])
    values = torch.tensor([[1.0], [10.0], [100.0], [1000.0]])
    folds = torch.tensor([0, 1, 0, 1])
    table = HistoryTable(values, u, folds, n_user_rows=3, k=2)
    every = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 0, 1])  # (user row, fold) pairs
    assert table.out_of_fold(*every)[:, 0].tolist() == [0.0, 0.0, 10.0, 101.0, 1000.0, 0.0]
    table.update(torch.tensor([1, 3]), torch.tensor([[20.0], [3000.0]]))  # rows 1 and 3 change
    assert table.out_of_fold(*every)[:, 0].tolist() == [0.0, 0.0, 20.0, 101.0, 3000.0, 0.0]


def test_beta_prior_strength_recovers_the_spread_of_the_rates():
    rng = np.random.default_rng(0)
    rates = rng.beta(2.0, 18.0, size=5000)  # Beta(a, b): strength a + b = 20 pseudo-impressions
    shown = np.full(5000, 200)
    clicks = rng.binomial(shown, rates)
    strength = beta_prior_strength(torch.tensor(clicks).float(), torch.tensor(shown).float())
    assert 18.0 < strength < 22.0
    same = beta_prior_strength(torch.full((100,), 5.0), torch.full((100,), 50.0))  # no spread at all
    assert same == 1e6


def test_a_users_history_moves_their_taste_toward_what_they_clicked(emb_model):
    taste = emb_model.user_vectors(np.arange(20))  # (20, dim)
    generic = emb_model.user_vectors(np.array([-1]))  # (1, dim): the prior mixture
    red_lovers, blue_lovers = taste[0::2].mean(0), taste[1::2].mean(0)
    assert (red_lovers - blue_lovers).norm() > (red_lovers - generic[0]).norm() * 0.5
    assert torch.cosine_similarity(red_lovers - generic[0], blue_lovers - generic[0], dim=0) < 0


def test_calibrated_probabilities_match_the_click_rate(cnn_model, taste_log):
    frame, covers = taste_log
    p = cnn_model.predict(frame, CoverInputs(np.arange(24), covers.numpy()))
    assert p.dtype == np.float64 and ((p > 0) & (p < 1)).all()
    assert abs(p.mean() - frame["label"].mean()) < 0.05


def test_colour_statistics_of_flat_covers():
    red, grey = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    red[:, 0] = 1.0
    stats = colour_statistics(torch.cat([red, grey]), bins=6)  # (2, 6 + 5)
    assert stats.shape == (2, 11)
    hist = stats[:, :6]
    assert hist[0].argmax().item() == 0  # red is bin 0
    torch.testing.assert_close(hist[0, 0], torch.tensor(1.0))  # full chroma, on the bin centre
    torch.testing.assert_close(hist[0, 1], hist[0, 5])  # yellow and magenta neighbours alike
    torch.testing.assert_close(hist[1], torch.zeros(6))  # grey: no hue mass
    # luma mean, luma sd, chroma, centre - mean, edges
    torch.testing.assert_close(stats[0, 6:], torch.tensor([0.299, 0.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(stats[1, 6:], torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0]))


def test_colour_statistics_have_finite_gradients_on_grey_pixels():
    pixels = torch.full((2, 3, 8, 8), 0.5, requires_grad=True)  # grey: hue undefined
    colour_statistics(pixels).sum().backward()
    assert torch.isfinite(pixels.grad).all()


def test_colour_bins_zero_drops_the_colour_statistics(taste_log):
    frame, covers = taste_log
    feats = CoverInputs(np.arange(24), covers.numpy())
    plain = PersonalizedRewardModel(PersonalizedConfig(**{**CNN.__dict__, "colour_bins": 0, "epochs": 1}))
    keys = set(plain.fit(frame, feats, seed=0).net_.state_dict())
    assert not any(k.startswith("tower.stats_norm") for k in keys)
    assert plain.net_.tower.out.in_features == 4 * 4 + 6
    assert PersonalizedRewardModel(CNN).fit(frame, feats, seed=0).net_.tower.out.in_features == 4 * 4 + 6 + 17


def test_negative_colour_bins_raise(taste_log):
    frame, covers = taste_log
    with pytest.raises(ValueError, match="colour_bins must be >= 0, got -1"):
        PersonalizedRewardModel(PersonalizedConfig(**{**CNN.__dict__, "colour_bins": -1})).fit(
            frame, CoverInputs(np.arange(24), covers.numpy())
        )


def test_checkpoints_without_colour_bins_load_as_before(taste_log, tmp_path):
    """Checkpoints written before `colour_bins` existed hold a cnn tower without colour statistics."""
    frame, covers = taste_log
    feats = CoverInputs(np.arange(24), covers.numpy())
    old = PersonalizedRewardModel(PersonalizedConfig(**{**CNN.__dict__, "colour_bins": 0, "epochs": 1}))
    old.fit(frame, feats, seed=0).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    del meta["config"]["colour_bins"]
    weights = (tmp_path / "m" / "weights.safetensors").read_bytes()

    def older(folder):  # the same checkpoint as an icg_rec before colour_bins would have written it
        (folder / "config.json").write_text(json.dumps(meta))
        (folder / "weights.safetensors").write_bytes(weights)

    write_folder(tmp_path / "m", older)
    loaded = PersonalizedRewardModel.load(tmp_path / "m")
    assert loaded.config.colour_bins == 0
    np.testing.assert_array_equal(loaded.predict(frame, feats), old.predict(frame, feats))
