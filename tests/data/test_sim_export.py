"""`icg-rec sim generate`: the written folder regenerates the same world and holds its frames and covers."""

import polars as pl
import pytest

from icg_rec.cli import main
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.errors import CheckpointError
from icg_rec.io import config_from_dict, read_json

TOML = "n_users = 12\nn_items = 9\nn_cohorts = 2\nimage_size = 8\nimpressions_per_user = 3\nseed = 5\n"


def test_sim_generate_writes_frames_covers_and_a_config_that_regenerates_them(tmp_path, capsys):
    (tmp_path / "sim.toml").write_text(TOML)
    assert (
        main(
            [
                "sim",
                "generate",
                "--out",
                str(tmp_path / "world"),
                "--config",
                str(tmp_path / "sim.toml"),
                "--seed",
                "7",
            ]
        )
        == 0
    )
    assert "12 users, 9 items with covers, 36 impressions" in capsys.readouterr().out

    config = config_from_dict(SimConfig, read_json(tmp_path / "world" / "config.json"))
    assert (config.n_users, config.seed) == (12, 7)
    world = SimWorld.generate(config)
    assert pl.read_parquet(tmp_path / "world" / "interactions.parquet").equals(world.dataset.interactions)
    assert pl.read_parquet(tmp_path / "world" / "users.parquet").equals(world.dataset.users)
    items = pl.read_parquet(tmp_path / "world" / "items.parquet")
    assert items.drop("image_path").equals(world.dataset.items.drop("image_path"))
    assert items["image_path"].to_list() == [
        str((tmp_path / "world" / "covers" / f"{i}.png").resolve()) for i in range(9)
    ]


def test_sim_generate_refuses_a_config_with_an_unknown_field(tmp_path):
    (tmp_path / "sim.toml").write_text(TOML + "n_userz = 3\n")
    with pytest.raises(CheckpointError, match=r"unknown key\(s\) \['n_userz'\]"):
        main(["sim", "generate", "--out", str(tmp_path / "world"), "--config", str(tmp_path / "sim.toml")])
