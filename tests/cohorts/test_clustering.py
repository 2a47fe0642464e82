import numpy as np
import pytest

from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.errors import CheckpointError, IcgRecError, UnknownIdError
from icg_rec.io import read_json, write_folder, write_json

CENTRES = np.array([[0, 0, 0, 0], [5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0]], dtype=np.float32) + 1.0


def make_users(seed, n_per=200, centres=CENTRES):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(0, 0.3, size=(n_per, 4)) for c in centres]).astype(np.float32)
    return np.arange(len(x), dtype=np.int64), x


def test_refit_keeps_cohort_ids_and_versions():
    ids, x = make_users(0)
    first = UserCohorts(CohortConfig(n_cohorts=4, seed=0)).fit(ids, x)
    _, x2 = make_users(1)  # same tastes, fresh noise
    second = UserCohorts(CohortConfig(n_cohorts=4, seed=7)).fit(ids, x2, previous=first)
    assert second.versions_ == first.versions_
    np.testing.assert_allclose(second.centroids_, first.centroids_, atol=0.1)
    assert (second.labels_ == first.labels_).mean() > 0.99


def test_a_moved_centroid_gets_a_new_version_and_the_others_keep_theirs():
    ids, x = make_users(0)
    first = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x)
    moved = CENTRES.copy()
    moved[2] += np.array([0, 3, 0, 0], dtype=np.float32)
    _, x2 = make_users(0, centres=moved)
    second = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x2, previous=first)
    cohort_of_moved = int(first.cohort_of(np.array([2 * 200]))[0])
    changed = [k for k in range(4) if second.versions_[k] != first.versions_[k]]
    assert changed == [cohort_of_moved]


def test_new_users_go_to_the_nearest_centroid_and_unknown_ids_are_refused():
    ids, x = make_users(0)
    cohorts = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x)
    expected = cohorts.cohort_of(np.array([0, 200, 400, 600]))
    np.testing.assert_array_equal(cohorts.predict(CENTRES), expected)
    assert len(set(expected.tolist())) == 4
    with pytest.raises(UnknownIdError, match=r"1 user id\(s\) were not seen at fit, e.g. \[10000\]"):
        cohorts.cohort_of(np.array([0, 10_000]))


def test_fit_is_deterministic_under_a_seed():
    ids, x = make_users(0)
    a = UserCohorts(CohortConfig(n_cohorts=4, seed=3)).fit(ids, x)
    b = UserCohorts(CohortConfig(n_cohorts=4, seed=3)).fit(ids, x)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    assert a.versions_ == b.versions_


def test_save_load_round_trip_and_truncated_file(tmp_path):
    ids, x = make_users(0)
    cohorts = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x)
    loaded = UserCohorts.load(cohorts.save(tmp_path / "c"))
    np.testing.assert_array_equal(loaded.centroids_, cohorts.centroids_)
    np.testing.assert_array_equal(loaded.cohort_of(ids), cohorts.labels_)
    assert loaded.versions_ == cohorts.versions_
    weights = tmp_path / "c" / "cohorts.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cohorts.safetensors"):
        UserCohorts.load(tmp_path / "c")


@pytest.mark.parametrize(
    ("ids", "x", "message"),
    [
        (np.arange(3), np.ones((3, 4)), "cannot form 4 cohorts"),
        (np.array([0, 1, 1, 2, 3]), np.random.default_rng(0).normal(size=(5, 4)), "1 duplicate"),
        (np.arange(5), np.full((5, 4), np.nan), "5 user"),
        (np.arange(5), np.ones(5), "must be"),
    ],
)
def test_bad_inputs_are_refused(ids, x, message):
    with pytest.raises(IcgRecError, match=message):
        UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x)


def test_previous_of_another_width_is_refused():
    ids, x = make_users(0)
    first = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x)
    with pytest.raises(IcgRecError, match=r"previous cohorts have centroids \(4, 4\)"):
        UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x[:, :3], previous=first)


def _edit_meta(folder, edit):
    """Rewrites the checkpoint with an edited cohorts.json, as a (buggy) writer would: it still verifies."""
    meta = read_json(folder / "cohorts.json")
    edit(meta)
    weights = (folder / "cohorts.safetensors").read_bytes()

    def write(tmp):
        write_json(tmp / "cohorts.json", meta)
        (tmp / "cohorts.safetensors").write_bytes(weights)

    write_folder(folder, write)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["versions"].pop(), r"config says 4 cohorts, but the checkpoint holds 3 versions"),
        (lambda m: m["versions"].append("abc"), r"holds 5 versions"),
        (lambda m: m.pop("versions"), r"cohorts.json lacks key\(s\) \['versions'\]"),
        (lambda m: m.pop("config"), r"cohorts.json lacks key\(s\) \['config'\]"),
        (lambda m: m.update(versions="abcd"), r"versions must be a list of strings"),
        (
            lambda m: m["config"].update(n_cohorts=3),
            r"config says 3 cohorts, but .* centroids of shape \(4, 4\)",
        ),
    ],
)
def test_an_inconsistent_cohorts_json_is_refused(tmp_path, edit, message):
    ids, x = make_users(0)
    folder = UserCohorts(CohortConfig(n_cohorts=4)).fit(ids, x).save(tmp_path / "c")
    _edit_meta(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        UserCohorts.load(folder)
