import faiss
import numpy as np
import pytest

from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore, StoreConfig


def _store(config: StoreConfig | None = None) -> CoverEmbeddingStore:
    # item 1: default + cohort 7; item 2: default only; item 3: cohort 7 only (no default)
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    return CoverEmbeddingStore(config).build(
        np.array([1, 1, 2, 3]), np.array([DEFAULT_COHORT, 7, DEFAULT_COHORT, 7]), vectors
    )


def test_lookup_exact_then_default_then_counted_zero():
    found = _store().lookup(np.array([1, 1, 2, 3, 3, 9]), np.array([7, 5, 7, 7, 5, 7]))
    expected = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(found.vectors, expected)
    np.testing.assert_array_equal(found.has_cover, [True, True, True, True, False, False])
    assert (found.n_exact, found.n_fallback, found.n_missing) == (2, 2, 2)


def test_miss_policy_raise_names_the_key():
    with pytest.raises(UnknownIdError, match=r"\(9, 7\)"):
        _store(StoreConfig(miss_policy="raise")).lookup(np.array([1, 9]), np.array([7, 7]))


def test_bad_inputs_are_refused():
    with pytest.raises(SchemaError, match="duplicate"):
        CoverEmbeddingStore().build(np.array([1, 1]), np.array([0, 0]), np.ones((2, 3)))
    with pytest.raises(SchemaError, match="NaN"):
        CoverEmbeddingStore().build(np.array([1, 2]), np.array([0, 0]), np.array([[1.0, np.nan], [1, 1]]))
    with pytest.raises(SchemaError, match="expected n item ids"):
        CoverEmbeddingStore().build(np.array([1, 2]), np.array([0]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="miss_policy"):
        CoverEmbeddingStore(StoreConfig(miss_policy="skip")).build(
            np.array([1]), np.array([0]), np.ones((1, 3))
        )
    with pytest.raises(SchemaError, match=r"shape \(n, 3\)"):
        _store().nearest(np.ones((1, 4)))


def test_pca_keeps_distances_of_low_rank_vectors():
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(30, 2)) @ rng.normal(size=(2, 8))).astype(np.float32)  # rank 2 in 8-d
    store = CoverEmbeddingStore(StoreConfig(projection_dim=2)).build(np.arange(30), np.zeros(30), vectors)
    assert store.dim == 2
    dist_in = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    dist_out = np.linalg.norm(store.vectors_[:, None] - store.vectors_[None], axis=-1)
    np.testing.assert_allclose(dist_out, dist_in, atol=1e-4)
    with pytest.raises(ValueError, match="projection_dim"):
        CoverEmbeddingStore(StoreConfig(projection_dim=9)).build(np.arange(30), np.zeros(30), vectors)


def test_index_is_ivf_from_the_size_threshold_and_finds_itself():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    flat = CoverEmbeddingStore(StoreConfig(ivf_min_size=201)).build(np.arange(200), np.zeros(200), vectors)
    ivf = CoverEmbeddingStore(StoreConfig(ivf_min_size=200, nprobe=64)).build(
        np.arange(200), np.zeros(200), vectors
    )
    assert isinstance(flat.index_, faiss.IndexFlatIP) and isinstance(ivf.index_, faiss.IndexIVFFlat)
    keys, cosine = ivf.nearest(vectors[[5, 17]], k=3)
    assert keys.filter(keys["rank"] == 0)["item_id"].to_list() == [5, 17]
    np.testing.assert_allclose(cosine[:, 0], 1.0, atol=1e-5)


def test_duplicates_finds_the_planted_pair_only():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 16)).astype(np.float32)
    vectors[13] = 2.0 * vectors[4]  # same direction: a duplicate cover at another scale
    dups = CoverEmbeddingStore().build(np.arange(20), np.full(20, DEFAULT_COHORT), vectors).duplicates(0.99)
    assert dups.select("item_id", "dup_item_id").rows() == [(4, 13)]


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    store = CoverEmbeddingStore(StoreConfig(projection_dim=3, ivf_min_size=30)).build(
        np.arange(40) // 2, np.arange(40) % 2, vectors
    )
    loaded = CoverEmbeddingStore.load(store.save(tmp_path / "store"))
    items, cohorts = np.array([0, 3, 19, 50]), np.array([1, 0, 5, 0])
    np.testing.assert_array_equal(loaded.lookup(items, cohorts).vectors, store.lookup(items, cohorts).vectors)
    keys_a, cos_a = store.nearest(vectors[:4], k=5)
    keys_b, cos_b = loaded.nearest(vectors[:4], k=5)
    assert keys_a.equals(keys_b)
    np.testing.assert_array_equal(cos_a, cos_b)
    assert not list(tmp_path.rglob("*.pkl"))
