"""The refresh's device and speed options: writer threads write what inline writing writes; clear refusals."""

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.device import DeviceError
from icg_rec.errors import CheckpointError
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.fast import FastConfig
from icg_rec.generation.prompter import PrompterConfig


def _pipeline(tiny_perception):
    torch.manual_seed(0)
    image, text = tiny_perception
    config = GeneratorConfig(
        resolution=8, cross_attention_dim=32, num_tokens=2, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=2, image_prefix_tokens=1),
    )  # fmt: skip
    pipe = build_pipeline(config, image(), text())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _catalogue(folder, n: int = 5) -> pl.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 200 - 30 * i, 90)).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return pl.DataFrame(
        {
            "item_id": np.arange(n),
            "title": [f"a b {i}" for i in range(n)],
            "text": [""] * n,
            "image_path": paths,
        }
    )


def _cohorts() -> UserCohorts:
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    return UserCohorts(CohortConfig(n_cohorts=2)).fit(np.arange(30), x)


def _generator(pipe, items, **kwargs) -> PipelineCoverGenerator:
    return PipelineCoverGenerator(
        pipe, items["item_id"], items["title"], items["image_path"], 3, 2.0, **kwargs
    )


def test_writer_threads_write_byte_identical_covers(tiny_perception, tmp_path):
    items, cohorts = _catalogue(tmp_path / "img"), _cohorts()
    runs = {}
    for writers in (0, 2):
        generator = _generator(_pipeline(tiny_perception), items)
        manifest, stats = refresh_covers(
            items, cohorts, generator, tmp_path / f"w{writers}", batch_size=4, progress=False, writers=writers
        )
        assert stats.generated == 15
        files = sorted((tmp_path / f"w{writers}" / "covers").rglob("*.png"))
        runs[writers] = (manifest.drop("path"), {f.name: f.read_bytes() for f in files})
    assert runs[2][0].equals(runs[0][0])
    assert runs[2][1] == runs[0][1] and len(runs[0][1]) == 15


class _WrongShape:
    version = "v"

    def generate(self, item_ids, user_embeddings, seeds):
        return torch.zeros(len(seeds), 4, 8, 8)


def test_a_writer_thread_error_stops_the_refresh(tmp_path):
    items = _catalogue(tmp_path / "img")
    with pytest.raises(CheckpointError, match=r"a cover must be \(3, H, W\)"):
        refresh_covers(items, _cohorts(), _WrongShape(), tmp_path / "out", progress=False, writers=2)
    with pytest.raises(ValueError, match="writers must be >= 0, got -1"):
        refresh_covers(items, _cohorts(), _WrongShape(), tmp_path / "out", progress=False, writers=-1)


def test_generator_covers_equal_the_pipelines_and_its_version_ignores_speed_switches(
    tiny_perception, tmp_path
):
    items = _catalogue(tmp_path / "img")
    pipe = _pipeline(tiny_perception)
    plain = _generator(pipe, items)
    fused = _generator(_pipeline(tiny_perception), items, fast=FastConfig(fuse_qkv=True, channels_last=True))
    assert fused.version == plain.version
    users = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    covers = plain.generate(torch.tensor([2, 0, 2]), users, [7, 8, 9])
    batch = pipe.prompter.prepare(
        [items["title"][i] for i in (2, 0, 2)], [items["image_path"][i] for i in (2, 0, 2)]
    )
    with torch.no_grad():
        expected = pipe.generate_with_grad(batch, users, pipe.noise_for([7, 8, 9]), 3, 0, 2.0)
    torch.testing.assert_close(covers, expected, rtol=0, atol=0)
    torch.testing.assert_close(
        fused.generate(torch.tensor([2, 0, 2]), users, [7, 8, 9]), covers, rtol=0, atol=1e-4
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_generator_on_a_missing_device_fails_at_its_first_batch(tiny_perception, tmp_path):
    items = _catalogue(tmp_path / "img")
    generator = _generator(_pipeline(tiny_perception), items, device="cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        generator.generate(torch.tensor([0]), torch.zeros(1, 4), [0])
