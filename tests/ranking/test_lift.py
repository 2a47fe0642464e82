"""The lift harness end to end on a tiny synthetic dataset, and `python -m eval.lift` on a tiny SimWorld."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from icg_rec.errors import SchemaError
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.lift import (
    ItemVectors,
    LiftConfig,
    build_lift_frames,
    per_user_auc,
    run_lift,
    write_lift_report,
)
from icg_rec.ranking.lightgbm_ranker import LightGBMConfig, LightGBMRanker

REPO = Path(__file__).resolve().parents[2]
TINY = LightGBMConfig(n_estimators=30, min_child_samples=5, min_data_per_group=5)
STATS = ["user_id_ctr", "item_id_ctr", "user_id_log_n", "item_id_log_n"]


def _world(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, ItemVectors]:
    """40 users, 60 items; clicks depend on <user taste, item vector>, which the ids alone cannot know."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n = 40, 60, 3000
    items = rng.normal(size=(n_items, 4))
    taste = rng.normal(size=(n_users, 4))
    users, its = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    logit = 1.5 * np.einsum("nd,nd->n", taste[users], items[its])
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": its,
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64),
            "timestamp": np.arange(n),
        }
    )
    return frame.head(2400), frame.tail(600), ItemVectors("vec", np.arange(n_items), items, pca_dim=4)


@pytest.fixture(scope="module")
def lift_result():
    train, test, vectors = _world()
    train, test = build_lift_frames(train, test, [vectors], n_folds=3, seed=0)
    arms = {
        "ids": FeatureSpec(sparse=["user_id", "item_id"], dense=STATS),
        "taste": FeatureSpec(sparse=["user_id", "item_id"], dense=[*STATS, "vec_taste"]),
        "vec": FeatureSpec(sparse=["user_id", "item_id"], dense=STATS, embeddings=["vec_pca"]),
    }
    config = LiftConfig(baseline="ids", seeds=[0, 1], n_boot=100)
    return run_lift(train, test, arms, lambda: LightGBMRanker(TINY), config, progress=False)


def test_taste_arm_lifts_auc_where_clicks_follow_item_vectors(lift_result):
    taste = lift_result.lift["taste"]
    assert taste.auc_delta > 0.05 and taste.ci95[0] > 0.0 and taste.p_value < 0.05
    assert len(taste.delta_per_seed) == 2 and min(taste.delta_per_seed) > 0.0
    assert lift_result.n_train == 2400 and lift_result.n_test == 600
    assert set(lift_result.lift) == {"taste", "vec"}


def test_report_has_the_contract_keys_and_plots(lift_result, tmp_path):
    path = write_lift_report(lift_result, tmp_path, {"dataset": "tiny", "ranker": "lightgbm"})
    summary = json.loads(path.read_text())
    assert {"dataset", "ranker", "n_train", "n_test", "arms", "lift"} <= set(summary)
    assert set(summary["arms"]) == {"ids", "taste", "vec"}
    for arm in summary["arms"].values():
        assert {"auc", "gauc", "logloss"} <= set(arm)
    for lift in summary["lift"].values():
        assert {"relaimpr", "auc_delta", "ci95", "p_value"} <= set(lift)
        assert lift["ci95"][0] <= lift["ci95"][1]
    for name in ("roc.png", "user_auc_delta.png", "calibration.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text()
    assert "| taste |" in report and "![ROC](roc.png)" in report
    assert report.splitlines()[0] == "# Lift: tiny, ranker lightgbm"  # no "()" for a missing protocol


def test_report_title_of_an_unnamed_dataset(lift_result, tmp_path):
    write_lift_report(lift_result, tmp_path, {})
    assert (tmp_path / "report.md").read_text().splitlines()[0] == "# Lift"


def test_per_user_auc_skips_single_class_users():
    labels = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    scores = np.array([0.9, 0.1, 0.5, 0.4, 0.8, 0.2])
    groups = np.array([7, 7, 8, 8, 9, 9])
    assert per_user_auc(labels, scores, groups) == {7: 1.0, 9: 0.0}


def test_bad_config_is_refused():
    train, test, _ = _world()
    arms = {"a": FeatureSpec(sparse=["user_id"])}
    with pytest.raises(SchemaError, match="baseline arm 'base' is not among the arms \\['a'\\]"):
        run_lift(train, test, arms, LightGBMRanker, LiftConfig())
    with pytest.raises(ValueError, match="seeds is empty"):
        run_lift(train, test, arms, LightGBMRanker, LiftConfig(baseline="a", seeds=[]))


def test_eval_lift_runs_on_a_tiny_simworld(tmp_path):
    pytest.importorskip("icg_rec.data.sim")
    out = tmp_path / "out"
    argv = ["--dataset", "simworld", "--sim-users", "80", "--sim-items", "40", "--seeds", "0"]
    argv += ["--n-boot", "20", "--image-pca", "4", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "eval.lift", *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "lift.json").read_text())
    assert summary["dataset"] == "simworld" and summary["ranker"] == "lightgbm"
    assert set(summary["lift"]) == {"cover", "cover_taste"}
    assert (out / "report.md").is_file()
    assert "wrote " in done.stdout
