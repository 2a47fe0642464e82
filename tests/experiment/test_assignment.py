import numpy as np
import pytest
from scipy import stats

from icg_rec.errors import IcgRecError, SchemaError
from icg_rec.experiment.assignment import (
    Experiment,
    Layer,
    assign,
    assign_buckets,
    check_layer,
    fnv1a_64,
    hash_to_unit_interval,
)

LAYER = Layer(name="covers", salt="covers-2026-11", n_buckets=100)


def test_fnv1a_matches_published_vectors():
    # Reference values of 64-bit FNV-1a (Fowler/Noll/Vo test suite).
    got = fnv1a_64(["", "a", "foobar"])
    assert got.tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]


@pytest.mark.parametrize("hash", ["md5", "fnv1a"])
def test_buckets_are_uniform(hash):
    layer = Layer(name="l", salt="s", n_buckets=100, hash=hash)
    buckets = assign_buckets(range(100_000), layer)
    counts = np.bincount(buckets, minlength=100)
    assert stats.chisquare(counts).pvalue > 0.001


def test_buckets_are_stable_across_runs():
    # md5("covers-2026-11:<id>") is fixed forever: these values must never change between releases.
    assert assign_buckets([0, 1, 2, "alice"], LAYER).tolist() == [86, 19, 51, 57]
    fnv_layer = Layer(name="covers", salt="covers-2026-11", n_buckets=100, hash="fnv1a")
    assert assign_buckets([0, 1, 2, "alice"], fnv_layer).tolist() == [86, 97, 51, 56]


def test_unit_interval_is_half_open():
    u = hash_to_unit_interval([str(i) for i in range(10_000)])
    assert u.min() >= 0.0 and u.max() < 1.0


def test_experiments_in_one_layer_share_no_unit_and_arms_follow_weights():
    a = Experiment("a", LAYER, 0, 50, arms={"control": 0.5, "treatment": 0.5})
    b = Experiment("b", LAYER, 50, 100, arms={"control": 0.2, "generic": 0.4, "personalized": 0.4})
    check_layer([a, b])
    ids = list(range(20_000))
    in_a = assign(ids, a).filter(assign(ids, a)["arm"].is_not_null())
    in_b = assign(ids, b).filter(assign(ids, b)["arm"].is_not_null())
    assert set(in_a["unit_id"]).isdisjoint(set(in_b["unit_id"]))
    assert len(in_a) + len(in_b) == len(ids)
    shares = in_b["arm"].value_counts(normalize=True).sort("arm")
    assert (
        stats.chisquare(
            in_b["arm"].value_counts().sort("arm")["count"].to_numpy(), len(in_b) * np.array([0.2, 0.4, 0.4])
        ).pvalue
        > 0.001
    ), shares


def test_layers_are_orthogonal():
    ids = list(range(20_000))
    first = assign(ids, Experiment("x", Layer("one", "salt-1", 10), 0, 10))
    second = assign(ids, Experiment("y", Layer("two", "salt-2", 10), 0, 10))
    table = np.zeros((2, 2))
    for arm_x, arm_y in zip(first["arm"], second["arm"], strict=True):
        table[arm_x == "treatment", arm_y == "treatment"] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_overlapping_experiments_are_refused():
    with pytest.raises(IcgRecError, match=r"'a' \[0, 60\) and 'b' \[50, 100\) overlap"):
        check_layer([Experiment("a", LAYER, 0, 60), Experiment("b", LAYER, 50, 100)])


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (Experiment("e", LAYER, 10, 10), "must lie within"),
        (Experiment("e", LAYER, 0, 101), "must lie within"),
        (Experiment("e", LAYER, 0, 10, arms={"control": 0.5, "treatment": 0.6}), "summing to 1"),
        (Experiment("e", LAYER, 0, 10, arms={"control": 1.0}), "two or more"),
        (Experiment("e", Layer("l", "s", 10, hash="crc32"), 0, 10), "unknown hash"),
    ],
)
def test_bad_experiments_are_refused(experiment, message):
    with pytest.raises(IcgRecError, match=message):
        assign([1, 2, 3], experiment)


def test_duplicate_units_are_refused():
    with pytest.raises(IcgRecError, match="1 duplicate"):
        assign([1, 2, 2], Experiment("e", LAYER, 0, 100))


def test_an_id_hashes_by_its_canonical_form_however_it_was_stored():
    forms = [
        [5, 17, 2**40],
        [5.0, 17.0, float(2**40)],
        ["5", "17", str(2**40)],
        list(np.array([5, 17, 2**40])),
    ]
    buckets = [assign_buckets(ids, LAYER).tolist() for ids in forms]
    assert buckets[1:] == [buckets[0]] * 3
    experiment = Experiment("e", LAYER, 0, 100)
    assert assign([5.0, 17.0], experiment)["arm"].equals(assign([5, 17], experiment)["arm"])


@pytest.mark.parametrize("bad", [5.5, float("nan"), float("inf"), None, True, b"5"])
def test_an_id_without_a_canonical_form_is_refused(bad):
    with pytest.raises(SchemaError, match=r"unit id .* at position 1 has no canonical form"):
        assign_buckets([1, bad], LAYER)


def test_ids_equal_in_canonical_form_are_duplicates():
    with pytest.raises(IcgRecError, match="1 duplicate"):
        assign([5, 5.0], Experiment("e", LAYER, 0, 100))
