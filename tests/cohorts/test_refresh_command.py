"""`icg-rec refresh --pipeline FOLDER` rebuilds the perception the folder records, and nothing else."""

import numpy as np
import polars as pl
import torch
from PIL import Image

from icg_rec.cli import main
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.encoders import MiniLMTextEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.prompter import PrompterConfig


def test_refresh_with_a_saved_colour_grid_pipeline_makes_the_covers_of_the_trained_one(tmp_path):
    colours = [(230, 20, 20), (20, 200, 40), (20, 40, 220)]
    for i, colour in enumerate(colours):
        Image.new("RGB", (16, 16), colour).save(tmp_path / f"{i}.png")
    items = pl.DataFrame(
        {
            "item_id": np.arange(3, dtype=np.int64),
            "title": ["red night", "green day", "blue song"],
            "text": ["", "", ""],
            "image_path": [str(tmp_path / f"{i}.png") for i in range(3)],
        }
    )
    items.write_parquet(tmp_path / "items.parquet")
    rng = np.random.default_rng(0)
    users = np.concatenate([rng.normal(k * 3, 0.1, size=(10, 4)) for k in range(2)]).astype(np.float32)
    cohorts = UserCohorts(CohortConfig(n_cohorts=2)).fit(np.arange(20), users)
    cohorts.save(tmp_path / "cohorts")
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=3, image_prefix_tokens=2),
    )  # fmt: skip
    pipe = build_pipeline(
        config, ColourGridEncoder(grid=4, image_size=16), MemoTextEncoder(MiniLMTextEncoder())
    )  # what the warmup/align stages build
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipeline")

    main(
        ["refresh", "--pipeline", str(tmp_path / "pipeline"), "--cohorts", str(tmp_path / "cohorts"),
         "--items", str(tmp_path / "items.parquet"), "--out", str(tmp_path / "cli"), "--steps", "2"]
    )  # fmt: skip

    trained = PipelineCoverGenerator(pipe, items["item_id"], items["title"], items["image_path"], 2, 3.0)
    expected, _ = refresh_covers(items, cohorts, trained, tmp_path / "trained", progress=False)
    made = pl.read_parquet(tmp_path / "cli" / "manifest.parquet")
    assert made["key"].to_list() == expected["key"].to_list() and made.height == 3 * 3  # 2 cohorts + generic
    for key in made["key"]:
        cli = next((tmp_path / "cli" / "covers").rglob(f"{key}.png")).read_bytes()
        assert cli == next((tmp_path / "trained" / "covers").rglob(f"{key}.png")).read_bytes()
