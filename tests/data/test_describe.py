import json

from icg_rec.cli import main
from icg_rec.data.describe import describe
from icg_rec.data.sim import SimConfig, SimWorld


def test_describe_cli_writes_the_counts(tiny_movielens, tmp_path, capsys):
    out = tmp_path / "out" / "describe.json"
    assert (
        main(
            [
                "data",
                "describe",
                "--dataset",
                "movielens",
                "--data-dir",
                str(tiny_movielens),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text()) == {
        "dataset": "movielens/ml-latest-small",
        "users": 3,
        "items": 4,
        "items_with_posters": 2,
        "interactions": 6,
        "interactions_on_items_with_posters": 4,
        "interacted_items_with_posters": 2,
        "users_on_items_with_posters": 3,
        "click_rate": 0.5,
        "time_min": 900_000_050,
        "time_max": 900_000_300,
        "time_min_utc": "1998-07-09T16:00:50+00:00",
        "time_max_utc": "1998-07-09T16:05:00+00:00",
    }
    assert "interactions_on_items_with_posters: 4" in capsys.readouterr().out


def test_describe_cli_without_posters_and_another_layout(tiny_layouts, tmp_path):
    out = tmp_path / "describe.json"
    root = tiny_layouts["dat"].parent
    main(["data", "describe", "--data-dir", str(root), "--layout", "ml-1m", "--json", str(out)])
    summary = json.loads(out.read_text())
    assert (summary["dataset"], summary["items_with_posters"], summary["interactions"]) == (
        "movielens/ml-1m",
        0,
        6,
    )


def test_describe_real_movielens(movielens_root, tmp_path):
    out = tmp_path / "describe.json"
    main(["data", "describe", "--data-dir", str(movielens_root), "--json", str(out)])
    summary = json.loads(out.read_text())
    assert summary["interactions_on_items_with_posters"] == 58_498
    assert summary["interacted_items_with_posters"] == 2_943
    assert summary["users_on_items_with_posters"] == 610
    assert (summary["users"], summary["items"], summary["interactions"]) == (610, 9_742, 100_836)


def test_describe_simworld():
    world = SimWorld.generate(SimConfig(n_users=6, n_items=5, impressions_per_user=3, seed=1))
    summary = describe(world.dataset)
    assert (summary["dataset"], summary["users"], summary["items"], summary["interactions"]) == (
        "simworld",
        6,
        5,
        18,
    )
    assert summary["items_with_posters"] == 0
    assert summary["click_rate"] == world.dataset.interactions["label"].mean()
