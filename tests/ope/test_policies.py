import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.errors import CheckpointError, IcgRecError, SchemaError, UnknownIdError
from icg_rec.ope.policies import (
    CoverCandidates,
    OwnCohortPolicy,
    load_policy,
    parse_policy,
    policy_context,
    save_policy,
)


def test_candidates_lay_out_slots_in_cover_id_order(small_candidates):
    c = small_candidates
    assert c.item_ids.tolist() == [0, 1, 2] and c.n_slots == 4
    assert c.cover_ids[1].tolist() == [0, 1, 2, 3]
    assert c.kinds[1].tolist() == [1, 2, 3, 3] and c.cohort_ids[1].tolist() == [-1, -1, 0, 1]
    assert c.slots_of(np.array([2, 0]), np.array([3, 1])).tolist() == [3, 1]
    torch.testing.assert_close(c.images[1, 2], torch.full((3, 8, 8), 6 / 11))  # table row 6 = item 1, cover 2
    assert c.table().sort("item_id", "cover_id")["cohort_id"].to_list()[:4] == [None, None, 0, 1]


def test_candidates_pad_items_with_fewer_covers():
    table = pl.DataFrame(
        {
            "item_id": [5, 5, 9],
            "cover_id": [4, 0, 0],
            "kind": ["cohort", "original", "original"],
            "cohort_id": [1, None, None],
        }
    )
    c = CoverCandidates.from_table(table)
    assert c.cover_ids.tolist() == [[0, 4], [0, -1]] and c.kinds.tolist() == [[1, 3], [1, 0]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": ["original", "poster"]}, "kind must be one of"),
        ({"cover_id": [0, 0]}, "repeat"),
        ({"cover_id": [0, -1]}, ">= 0"),
        ({"kind": ["original", "original"]}, "two original"),
        ({"kind": ["original", "cohort"], "cohort_id": [None, None]}, "cohort_id >= 0"),
    ],
)
def test_candidates_refuse_bad_tables(change, message):
    table = {
        "item_id": [1, 1],
        "cover_id": [0, 1],
        "kind": ["original", "generic"],
        "cohort_id": [None, None],
    }
    with pytest.raises(SchemaError, match=message):
        CoverCandidates.from_table(
            pl.DataFrame({**table, **change}, schema_overrides={"cohort_id": pl.Int64})
        )


def test_candidates_refuse_missing_columns_empty_tables_and_bad_images():
    with pytest.raises(SchemaError, match="missing column"):
        CoverCandidates.from_table(pl.DataFrame({"item_id": [1]}))
    empty = pl.DataFrame(
        schema={"item_id": pl.Int64, "cover_id": pl.Int64, "kind": pl.String, "cohort_id": pl.Int64}
    )
    with pytest.raises(SchemaError, match="empty"):
        CoverCandidates.from_table(empty)
    table = pl.DataFrame({"item_id": [1], "cover_id": [0], "kind": ["original"], "cohort_id": [None]})
    with pytest.raises(SchemaError, match="images must be"):
        CoverCandidates.from_table(table, torch.zeros(2, 3, 8, 8))


def test_unknown_items_and_covers_are_named(small_candidates):
    with pytest.raises(UnknownIdError, match=r"\[7\]"):
        small_candidates.item_rows(np.array([0, 7]))
    with pytest.raises(UnknownIdError, match=r"\(1, 9\)"):
        small_candidates.slots_of(np.array([1]), np.array([9]))


def test_fixed_policies(small_candidates):
    ctx = policy_context(
        small_candidates, np.array([10, 11, 12]), np.array([0, 1, 2]), user_cohort=np.array([1, 0, 5])
    )
    assert parse_policy("original").probabilities(ctx)[:, 0].tolist() == [1, 1, 1]
    assert parse_policy("generic").probabilities(ctx)[:, 1].tolist() == [1, 1, 1]
    own = parse_policy("own_cohort").probabilities(ctx)
    assert own.argmax(axis=1).tolist() == [3, 2, 1]  # cohort 5 has no cover: the generic one
    assert OwnCohortPolicy.fallbacks(ctx) == 1
    np.testing.assert_allclose(parse_policy("uniform").probabilities(ctx), np.full((3, 4), 0.25))


def test_reward_policies(small_candidates):
    scores = np.array([[0.1, 0.2, 0.4, 0.3]] * 2)
    ctx = policy_context(small_candidates, np.array([1, 2]), np.array([0, 1]), scores=scores)
    assert parse_policy("reward_greedy").probabilities(ctx)[0].tolist() == [0, 0, 1, 0]
    soft = parse_policy("softmax:0.5").probabilities(ctx)[0]
    logits = np.log(scores[0] / (1 - scores[0])) / 0.5
    np.testing.assert_allclose(soft, np.exp(logits) / np.exp(logits).sum())
    mix = parse_policy("epsilon:0.2:reward_greedy").probabilities(ctx)[0]
    np.testing.assert_allclose(mix, [0.05, 0.05, 0.85, 0.05])


def test_policies_put_no_mass_on_empty_slots():
    table = pl.DataFrame(
        {
            "item_id": [0, 0, 1],
            "cover_id": [0, 1, 0],
            "kind": ["original", "generic", "original"],
            "cohort_id": [None, None, None],
        },
        schema_overrides={"cohort_id": pl.Int64},
    )
    c = CoverCandidates.from_table(table)
    ctx = policy_context(c, np.array([0, 0]), np.array([0, 1]), scores=np.array([[0.1, 0.2], [0.5, 0.0]]))
    for spec in ("uniform", "reward_greedy", "softmax:1", "epsilon:0.5:original"):
        probs = parse_policy(spec).probabilities(ctx)
        assert probs[1].tolist() == [1.0, 0.0], spec
    with pytest.raises(IcgRecError, match="no generic cover"):
        parse_policy("generic").probabilities(ctx)


def test_policies_say_what_they_need(small_candidates):
    ctx = policy_context(small_candidates, np.array([1]), np.array([0]))
    with pytest.raises(IcgRecError, match="user_cohort"):
        parse_policy("own_cohort").probabilities(ctx)
    with pytest.raises(IcgRecError, match="scores"):
        parse_policy("reward_greedy").probabilities(ctx)
    with pytest.raises(SchemaError, match="scores must be"):
        policy_context(small_candidates, np.array([1]), np.array([0]), scores=np.zeros((1, 3)))
    with pytest.raises(SchemaError, match="user_cohort must be"):
        policy_context(small_candidates, np.array([1]), np.array([0]), user_cohort=np.zeros(2))


@pytest.mark.parametrize(
    "spec",
    [
        "original",
        "generic",
        "own_cohort",
        "reward_greedy",
        "uniform",
        "softmax:0.25",
        "epsilon:0.1:own_cohort",
        "epsilon:0.5:softmax:2",
    ],
)
def test_specs_round_trip_through_files(spec, tmp_path):
    save_policy(parse_policy(spec), tmp_path / "p.json")
    assert load_policy(tmp_path / "p.json").spec == spec


@pytest.mark.parametrize(
    "spec",
    ["greedy", "softmax:", "softmax:x", "softmax:0", "epsilon:2:original", "epsilon:0.1", "epsilon:0.1:nope"],
)
def test_bad_specs_are_refused(spec):
    with pytest.raises(IcgRecError):
        parse_policy(spec)


def test_a_file_without_a_policy_is_refused(tmp_path):
    (tmp_path / "p.json").write_text('{"name": "x"}')
    with pytest.raises(CheckpointError, match="policy"):
        load_policy(tmp_path / "p.json")
