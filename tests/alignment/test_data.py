import pytest
import torch

from icg_rec.alignment import Audience, HeldOutPairs, ItemSet, evaluation_pairs, personalized_user_vectors
from icg_rec.errors import SchemaError
from icg_rec.rewards.personalized import PersonalizedConfig, PersonalizedRewardModel


def test_evaluation_pairs_are_fixed_by_seed_and_balanced_over_groups():
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    items, users = evaluation_pairs(groups, n_items=5, users_per_group=2, items_per_user=3, seed=7)
    again = evaluation_pairs(groups, n_items=5, users_per_group=2, items_per_user=3, seed=7)
    torch.testing.assert_close(items, again[0], rtol=0, atol=0)
    torch.testing.assert_close(users, again[1], rtol=0, atol=0)
    assert [int((groups[users] == g).sum()) for g in range(3)] == [6, 6, 3]  # group 2 has one user
    for user in users.unique().tolist():
        assert len(set(items[users == user].tolist())) == 3  # distinct items per user
    _, others = evaluation_pairs(groups, 5, 2, 1, seed=7, exclude=users.unique())
    assert others.tolist() == [2]  # the only user left: groups 0 and 2 have none
    with pytest.raises(ValueError, match="items_per_user"):
        evaluation_pairs(groups, n_items=2, users_per_group=1, items_per_user=3, seed=0)


def test_item_set_and_audience_refuse_mismatched_rows():
    with pytest.raises(SchemaError, match="one reference cover and one id per title"):
        ItemSet(titles=["a", "b"], images=torch.zeros(1, 3, 8, 8), item_ids=torch.arange(2))
    with pytest.raises(SchemaError, match="empty"):
        ItemSet(titles=[], images=torch.zeros(0, 3, 8, 8), item_ids=torch.zeros(0))
    with pytest.raises(SchemaError, match=r"\(U=2, user_dim\)"):
        Audience(user_ids=torch.arange(2), vectors=torch.zeros(3, 4))
    with pytest.raises(SchemaError, match=r"one item row per user: item_index \(3,\), 2 users"):
        HeldOutPairs(torch.arange(3), Audience(user_ids=torch.arange(2), vectors=torch.zeros(2, 4)))


def test_personalized_user_vectors_need_a_user_side():
    with pytest.raises(ValueError, match="use_user=False"):
        personalized_user_vectors(
            PersonalizedRewardModel(PersonalizedConfig(use_user=False)), torch.arange(2)
        )


def test_personalized_user_vectors_are_centred_with_unit_mean_norm_and_refuse_unknown_users():
    import numpy as np
    import polars as pl

    from icg_rec.errors import UnknownIdError
    from icg_rec.rewards.personalized import CoverInputs

    users = np.repeat(np.arange(3), 4)
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": np.tile(np.arange(4), 3),
            "label": (np.arange(12) % 3 == 0).astype(float),
            "timestamp": np.arange(12),
        }
    )
    covers = CoverInputs(
        np.arange(4), torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)).numpy()
    )
    config = PersonalizedConfig(
        cover_tower="cnn", image_size=8, cnn_channels=4, dim=5, epochs=1, valid_fraction=0.25
    )
    model = PersonalizedRewardModel(config).fit(frame, covers, seed=0)
    vectors = personalized_user_vectors(model, torch.arange(3))
    assert vectors.shape == (3, 5)
    assert vectors.norm(dim=1).mean().item() == pytest.approx(1.0, abs=1e-5)
    # centred: the shared part of the users' vectors would only shift every cover alike
    torch.testing.assert_close(vectors.mean(dim=0), torch.zeros(5), rtol=0, atol=1e-6)
    mixed = personalized_user_vectors(model, torch.tensor([1, -1]))
    torch.testing.assert_close(mixed, torch.stack([vectors[1], torch.zeros(5)]), rtol=0, atol=0)
    with pytest.raises(UnknownIdError):
        personalized_user_vectors(model, torch.tensor([7]))


def test_held_out_split_gives_disjoint_test_and_validation_users_and_trains_the_rest():
    import numpy as np
    import polars as pl

    from icg_rec.alignment import held_out_split
    from icg_rec.rewards.personalized import CoverInputs

    users = np.repeat(np.arange(30), 4)
    frame = pl.DataFrame(
        {"user_id": users, "item_id": np.tile(np.arange(4), 30), "label": (np.arange(120) % 3 == 0) * 1.0,
         "timestamp": np.arange(120)}
    )  # fmt: skip
    covers = CoverInputs(
        np.arange(4), torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)).numpy()
    )
    config = PersonalizedConfig(
        cover_tower="cnn", image_size=8, cnn_channels=2, dim=3, epochs=1, valid_fraction=0.25
    )
    model = PersonalizedRewardModel(config).fit(frame, covers, seed=0)
    ids, groups = np.arange(10, 30), np.arange(20) % 2  # held-out users come from ids 10..29 only
    test, valid, audience = held_out_split(
        model, ids, groups, 4, seed=1, test_users=3, valid_users=2, items_per_user=2
    )
    test_ids, valid_ids = set(test.users.user_ids.tolist()), set(valid.users.user_ids.tolist())
    assert len(test) == 2 * 3 * 2 and len(valid) == 2 * 2 * 2 and not test_ids & valid_ids
    assert min(test_ids | valid_ids) >= 10 and test.noise_seed == 10_000 and valid.noise_seed == 20_000
    assert sorted(audience.user_ids.tolist()) == sorted(set(range(30)) - test_ids - valid_ids)
    torch.testing.assert_close(test.users.vectors, personalized_user_vectors(model, test.users.user_ids))
    again = held_out_split(model, ids, groups, 4, seed=1, test_users=3, valid_users=2, items_per_user=2)
    assert torch.equal(again[1].item_index, valid.item_index) and torch.equal(
        again[0].item_index, test.item_index
    )
