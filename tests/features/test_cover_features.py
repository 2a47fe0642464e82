import json
import os
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.refresh import build_manifest, plan_work, write_manifest
from icg_rec.errors import CheckpointError, SchemaError, UnknownIdError
from icg_rec.features.cover_features import (
    CoverFeatures,
    CoverFeaturesConfig,
    WithCovers,
    reward_tables,
)
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore

# item 10: default + cohort 1; item 20: default only; item 30: cohort 2 only (no default)
ITEMS = np.array([10, 10, 20, 30])
COHORTS = np.array([DEFAULT_COHORT, 1, DEFAULT_COHORT, 2])
VECTORS = np.array([[1, 1], [2, 2], [3, 3], [4, 4]], dtype=np.float32)
HISTORY = CoverFeaturesConfig(item_keys=["item_id", "history"])


def kjt(columns: dict[str, list]) -> KeyedJaggedTensor:
    """A KJT from key -> per-row lists of ids (a bare int = one id)."""
    values, lengths = [], []
    for rows in columns.values():
        rows = [r if isinstance(r, list) else [r] for r in rows]
        values += [v for r in rows for v in r]
        lengths += [len(r) for r in rows]
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(columns), values=torch.tensor(values, dtype=torch.long), lengths=torch.tensor(lengths)
    )


def test_exact_fallback_and_missing_are_served_and_counted():
    covers = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS, HISTORY)
    out = covers(
        kjt(
            {
                "item_id": [10, 10, 30, 99],
                "history": [[10, 20], [30], [], [20]],
                "cohort_id": [1, 5, 2, DEFAULT_COHORT],  # 5: a cohort with no covers at all
            }
        )
    )
    assert out.keys() == ["item_id_cover", "history_cover"]
    assert covers.output_dim == 4
    expected_item = [[2, 2], [1, 1], [4, 4], [0, 0]]  # exact, fallback, exact, unknown item
    expected_history = [
        [2.5, 2.5],
        [0, 0],
        [0, 0],
        [3, 3],
    ]  # mean of (exact 2, fallback 3); 30 has no default
    torch.testing.assert_close(out["item_id_cover"], torch.tensor(expected_item, dtype=torch.float32))
    torch.testing.assert_close(out["history_cover"], torch.tensor(expected_history, dtype=torch.float32))
    assert covers.counts() == {"exact": 4, "fallback": 2, "missing": 2}
    covers.reset_counts()
    assert covers.counts() == {"exact": 0, "fallback": 0, "missing": 0}


def test_matches_the_store_lookup():
    rng = np.random.default_rng(0)
    items, cohorts = np.repeat(np.arange(50), 3), np.tile([DEFAULT_COHORT, 0, 3], 50)
    keep = rng.random(150) < 0.7
    store = CoverEmbeddingStore().build(items[keep], cohorts[keep], rng.normal(size=(int(keep.sum()), 8)))
    covers = CoverFeatures.from_store(store)
    query_items, query_cohorts = rng.integers(0, 55, 400), rng.choice([DEFAULT_COHORT, 0, 1, 3], 400)
    expected = store.lookup(query_items, query_cohorts)
    out = covers(kjt({"item_id": query_items.tolist(), "cohort_id": query_cohorts.tolist()}))
    np.testing.assert_array_equal(out["item_id_cover"].numpy(), expected.vectors)
    assert covers.counts() == {
        "exact": expected.n_exact,
        "fallback": expected.n_fallback,
        "missing": expected.n_missing,
    }


def test_frozen_by_default_trainable_on_request():
    batch = kjt({"item_id": [10, 20], "cohort_id": [1, 1]})
    frozen = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen(batch).values().requires_grad
    trainable = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS, CoverFeaturesConfig(trainable=True))
    trainable(batch).values().sum().backward()
    grad = trainable.tables.embedding_bags["covers"].weight.grad  # rows 1 (10, cohort 1) and 2 (20, default)
    torch.testing.assert_close(
        grad[:, :2], torch.tensor([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=torch.float32)
    )


def test_load_rewrites_rows_in_place_and_refuses_new_keys():
    covers = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS)
    assert covers.load(np.array([10]), np.array([1]), np.array([[9.0, 8.0]])) == 1
    out = covers(kjt({"item_id": [10, 10], "cohort_id": [1, DEFAULT_COHORT]}))
    torch.testing.assert_close(out.values(), torch.tensor([[9.0, 8.0], [1.0, 1.0]]))
    with pytest.raises(UnknownIdError, match=r"1 \(item_id, cohort_id\) key\(s\).*\[\[20, 1\]\].*new module"):
        covers.load(np.array([10, 20]), np.array([1, 1]), np.zeros((2, 2)))
    with pytest.raises(SchemaError, match=r"vectors must be \(1, 2\)"):
        covers.load(np.array([10]), np.array([1]), np.zeros((1, 3)))
    with pytest.raises(SchemaError, match="NaN"):
        covers.load(np.array([10]), np.array([1]), np.full((1, 2), np.nan))


def test_state_dict_round_trip_and_fp16():
    covers = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS + 0.1)
    again = CoverFeatures(ITEMS, COHORTS, dim=2)
    again.load_state_dict(covers.state_dict())
    batch = kjt({"item_id": [10, 20, 30], "cohort_id": [1, 2, 2]})
    torch.testing.assert_close(again(batch).values(), covers(batch).values())
    half = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS + 0.1, CoverFeaturesConfig(dtype="fp16"))
    assert half.tables.embedding_bags["covers"].weight.dtype == torch.float16
    assert half(batch).values().dtype == torch.float32
    torch.testing.assert_close(half(batch).values(), covers(batch).values(), atol=5e-3, rtol=0)


def test_with_covers_appends_the_covers_to_the_dense_input():
    seen = {}

    class Model(torch.nn.Module):
        def forward(self, dense, sparse):
            seen["dense"] = dense
            return dense.sum(dim=1, keepdim=True)

    covers = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS)
    WithCovers(Model(), covers)(torch.zeros(2, 1), kjt({"item_id": [10, 20], "cohort_id": [1, 1]}))
    torch.testing.assert_close(seen["dense"], torch.tensor([[0.0, 2.0, 2.0], [0.0, 3.0, 3.0]]))


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(SchemaError, match=r"1 duplicate \(item_id, cohort_id\) key\(s\), e.g. \[\(10, 1\)\]"):
        CoverFeatures(np.array([10, 10, 10]), np.array([1, 1, DEFAULT_COHORT]), dim=2)
    with pytest.raises(SchemaError, match=r"cohort ids must be >= 0 or DEFAULT_COHORT \(-1\), got \[-3\]"):
        CoverFeatures(np.array([10]), np.array([-3]), dim=2)
    with pytest.raises(SchemaError, match="must be integers"):
        CoverFeatures(np.array([1.5]), np.array([0]), dim=2)
    with pytest.raises(ValueError, match="dtype must be one of"):
        CoverFeatures(ITEMS, COHORTS, dim=2, config=CoverFeaturesConfig(dtype="int8"))
    with pytest.raises(ValueError, match="distinct KJT keys"):
        CoverFeatures(ITEMS, COHORTS, dim=2, config=CoverFeaturesConfig(item_keys=["cohort_id"]))
    covers = CoverFeatures.from_vectors(ITEMS, COHORTS, VECTORS)
    with pytest.raises(SchemaError, match="no key 'cohort_id'"):
        covers(kjt({"item_id": [10]}))
    with pytest.raises(SchemaError, match="'cohort_id' must hold exactly one id per row"):
        covers(kjt({"item_id": [10, 20], "cohort_id": [[1, 2], []]}))
    with pytest.raises(ValueError, match="meta device"):
        CoverFeatures(ITEMS, COHORTS, dim=2, device=torch.device("meta")).load(ITEMS, COHORTS, VECTORS)
    with pytest.raises(ValueError, match="no reward tables"):
        covers.load_reward(ITEMS, COHORTS, None)


def test_reward_score_equals_the_reward_models_prediction():
    from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 5)).astype(np.float32)
    users, items = np.repeat(np.arange(10) * 1000, 8), rng.integers(0, 12, 80)  # sparse user ids
    log = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "label": (rng.random(80) < 0.4).astype(float),
            "timestamp": np.arange(80),
        }
    )
    config = PersonalizedConfig(dim=4, hidden=8, n_tastes=3, epochs=2, batch_size=32, valid_fraction=0.2)
    model = PersonalizedRewardModel(config).fit(log, CoverInputs(np.arange(12), feats), seed=0)

    # covers of items 0..11: default = the item's own features, cohort 0 = another item's features
    cover_items = np.concatenate([np.arange(12), np.arange(12)])
    cover_cohorts = np.repeat([DEFAULT_COHORT, 0], 12)
    cover_feats = np.concatenate([feats, feats[::-1]])
    tables = reward_tables(model, cover_items, cover_feats)
    vectors = rng.normal(size=(24, 3)).astype(np.float32)
    covers = CoverFeatures.from_vectors(cover_items, cover_cohorts, vectors, reward=tables)
    query_users = np.array([0, 3000, 9000, 77])  # 77: unknown -> the generic user
    query_items = np.array([2, 5, 11, 4])
    query_cohorts = np.array([DEFAULT_COHORT, 0, 0, DEFAULT_COHORT])
    out = covers(
        kjt(
            {
                "user_id": query_users.tolist(),
                "item_id": query_items.tolist(),
                "cohort_id": query_cohorts.tolist(),
            }
        )
    )
    assert out.keys() == ["item_id_cover", "item_id_cover_reward"]
    shown = np.where(query_cohorts == 0, 11 - query_items, query_items)  # whose features each cover has
    frame = pl.DataFrame({"user_id": np.where(query_users == 77, -1, query_users), "item_id": query_items})
    expected = [
        model.predict(frame[i], CoverInputs(np.array([query_items[i]]), feats[shown[i]][None]))[0]
        for i in range(4)
    ]
    np.testing.assert_allclose(out["item_id_cover_reward"][:, 0].numpy(), expected, rtol=1e-5)


def test_from_refresh_embeds_every_cover_of_the_manifest(tmp_path):
    cache = CoverCache(tmp_path / "covers")
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    work = plan_work(
        pl.DataFrame({"item_id": [1, 2], "item_hash": ["h1", "h2"]}), ["v0"], "g", seed=0
    ).filter(
        pl.col("item_id").is_in([1]) | (pl.col("cohort_id") == DEFAULT_COHORT)
    )  # (1, -1), (1, 0), (2, -1)
    for key, image in zip(work["key"], images, strict=True):
        cache.put(key, image)
    write_manifest(build_manifest(work, cache, run_started=0.0), tmp_path / "manifest.parquet")

    def encoder(pixels):
        return pixels.mean(dim=(2, 3))  # (B, 3)

    covers = CoverFeatures.from_refresh(tmp_path, encoder)
    out = covers(kjt({"item_id": [1, 1, 2], "cohort_id": [DEFAULT_COHORT, 0, 0]}))
    expected = torch.stack([cache.get(k) for k in work["key"]]).mean(dim=(2, 3))
    torch.testing.assert_close(out.values(), expected)
    with pytest.raises(CheckpointError, match="no manifest.parquet"):
        CoverFeatures.from_refresh(tmp_path / "covers", encoder)


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise"])
def test_dmp_sharded_cover_table_matches_unsharded(tmp_path, sharding, torchrun):
    worker = Path(__file__).with_name("cover_dmp_worker.py")
    command = [*torchrun, str(worker), sharding, str(tmp_path / "report.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    shards = report["shards"]
    if sharding == "table_wise":
        assert len(shards) == 1 and shards[0][1] == [41, 8]
    else:  # one half of the columns on each process
        assert [(s[0], s[1], s[2]) for s in shards] == [
            ([0, 0], [41, 4], "rank:0/cpu"),
            ([0, 4], [41, 4], "rank:1/cpu"),
        ]
    assert report["written"] == 41
    assert report["forward"] < 1e-6 and report["after_load"] < 1e-6
    assert report["counts"][0] == report["counts"][1]
    np.testing.assert_allclose(report["loss_sharded"], report["loss_single"], atol=1e-5)
    assert report["predict"] < 1e-4
    assert report["cover_table_moved_single"] == 0.0 and report["cover_table_moved_sharded"] == 0.0


def test_dense_ids_are_slots_without_search_and_sparse_ids_are_searched():
    rng = np.random.default_rng(1)
    items, cohorts = np.repeat(np.arange(100, 140), 2), np.tile([DEFAULT_COHORT, 0], 40)
    vectors = rng.normal(size=(80, 4)).astype(np.float32)
    dense = CoverFeatures.from_vectors(items, cohorts, vectors)
    sparse = CoverFeatures.from_vectors(items * 10**12, cohorts, vectors)  # hash-like ids
    assert dense.item_vocab.numel() == 0 and int(dense.item_base) == 100 and dense.rows.shape == (40, 2)
    assert sparse.item_vocab.numel() == 40
    query, query_cohorts = rng.integers(90, 150, 64), rng.choice([DEFAULT_COHORT, 0, 1], 64)
    a = dense(kjt({"item_id": query.tolist(), "cohort_id": query_cohorts.tolist()}))
    b = sparse(kjt({"item_id": (query * 10**12).tolist(), "cohort_id": query_cohorts.tolist()}))
    torch.testing.assert_close(a.values(), b.values())
    assert dense.counts() == sparse.counts() and dense.counts()["missing"] > 0  # ids 90..99, 140..149
