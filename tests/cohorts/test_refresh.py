import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.refresh import (
    build_manifest,
    item_content_hashes,
    plan_work,
    read_manifest,
    refresh_covers,
    run_refresh,
    shard,
    write_manifest,
)
from icg_rec.errors import CheckpointError, IcgRecError, SchemaError
from icg_rec.ranking.cover_arms import load_refreshed_covers

GENERATOR_SOURCE = '''
import time
import torch

class ColourGenerator:
    """Covers of one flat colour derived from (item, user embedding, seed); counts what it makes."""

    def __init__(self, version="g1", delay=0.0):
        self.version = version
        self.delay = delay
        self.made = []

    def generate(self, item_ids, user_embeddings, seeds):
        time.sleep(self.delay)
        self.made.extend(zip(item_ids.tolist(), seeds))
        base = (item_ids[:, None].float() * 0.013 + user_embeddings[:, :3].float() * 0.1) % 1.0  # (B, 3)
        return base[:, :, None, None].expand(-1, 3, 8, 8).clone()
'''
namespace: dict = {}
exec(GENERATOR_SOURCE, namespace)
ColourGenerator = namespace["ColourGenerator"]


def make_items(folder: Path, n: int = 6) -> pl.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        if not path.is_file():  # torchrun ranks call this at once: rewriting a file another rank hashes races
            Image.new("RGB", (4, 4), (i * 30, 10, 10)).save(path)
        paths.append(str(path))
    return pl.DataFrame(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "title": [f"t{i}" for i in range(n)],
            "text": ["g"] * n,
            "image_path": paths,
        }
    )


def make_cohorts(n_cohorts: int = 3) -> UserCohorts:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(k * 4, 0.2, size=(20, 4)) for k in range(n_cohorts)]).astype(np.float32)
    return UserCohorts(CohortConfig(n_cohorts=n_cohorts)).fit(np.arange(len(x)), x)


def test_keys_change_exactly_when_an_input_changes(tmp_path):
    items = make_items(tmp_path / "img")
    base = plan_work(item_content_hashes(items), ["a", "b"], "g1", seed=0)
    same = plan_work(item_content_hashes(items), ["a", "b"], "g1", seed=0)
    assert base["key"].to_list() == same["key"].to_list()
    edited = items.with_columns(title=pl.when(pl.col("item_id") == 2).then(pl.lit("new")).otherwise("title"))
    changed = plan_work(item_content_hashes(edited), ["a", "b"], "g1", seed=0)
    assert (base["key"] != changed["key"]).to_list() == [
        r[0] == 2 for r in base.select("item_id").iter_rows()
    ]
    moved = plan_work(item_content_hashes(edited), ["a", "b2"], "g1", seed=0)
    assert (changed["key"] != moved["key"]).to_list() == [c == 1 for c in base["cohort_id"]]
    Image.new("RGB", (4, 4), (1, 2, 3)).save(items["image_path"][4])  # same path, new pixels
    repainted = plan_work(item_content_hashes(items), ["a", "b"], "g1", seed=0)
    assert (base["key"] != repainted["key"]).to_list() == [
        r[0] == 4 for r in base.select("item_id").iter_rows()
    ]
    assert set(plan_work(item_content_hashes(items), ["a", "b"], "g2", 0)["key"]).isdisjoint(repainted["key"])


def test_refresh_is_incremental(tmp_path):
    items = make_items(tmp_path / "img")
    cohorts = make_cohorts()
    generator = ColourGenerator()
    manifest, stats = refresh_covers(
        items, cohorts, generator, tmp_path / "out", batch_size=4, progress=False
    )
    assert (stats.generated, stats.cached) == (24, 0)
    assert manifest["status"].to_list() == ["generated"] * 24
    generic = manifest.filter((pl.col("cohort_id") == -1) & (pl.col("item_id") == 2))["key"][0]
    expected = torch.full((3, 8, 8), round(2 * 0.013 * 255) / 255)  # zero user embedding: item colour only
    torch.testing.assert_close(CoverCache(tmp_path / "out" / "covers").get(generic), expected)
    generator.made.clear()
    manifest, stats = refresh_covers(
        items, cohorts, generator, tmp_path / "out", batch_size=4, progress=False
    )
    assert (stats.generated, stats.cached, generator.made) == (0, 24, [])
    assert manifest["status"].to_list() == ["cached"] * 24
    edited = items.with_columns(
        title=pl.when(pl.col("item_id") == 5).then(pl.lit("edited")).otherwise("title")
    )
    manifest, stats = refresh_covers(
        edited, cohorts, generator, tmp_path / "out", batch_size=4, progress=False
    )
    assert stats.generated == 4 and sorted({i for i, _ in generator.made}) == [5]
    assert manifest.filter(pl.col("status") == "generated")["item_id"].to_list() == [5, 5, 5, 5]
    assert pl.read_parquet(tmp_path / "out" / "manifest.parquet").equals(manifest)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_cover_the_work_list_exactly_once(tmp_path, world_size):
    work = plan_work(item_content_hashes(make_items(tmp_path / "img", 7)), ["a", "b", "c"], "g1", 0)
    keys = [k for rank in range(world_size) for k in shard(work, rank, world_size)["key"]]
    assert sorted(keys) == sorted(work["key"]) and len(set(keys)) == len(keys)


def _script(tmp_path: Path, delay: float, batch_size: int) -> Path:
    """A refresh run as its own program (for torchrun and for kill -9), using this module's fixtures."""
    script = tmp_path / "run.py"
    script.write_text(
        GENERATOR_SOURCE
        + textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_refresh import make_items, make_cohorts
        from icg_rec.cohorts.refresh import refresh_covers
        root = Path({str(tmp_path)!r})
        generator = ColourGenerator(delay={delay})
        refresh_covers(make_items(root / "img"), make_cohorts(), generator, root / "out",
                       batch_size={batch_size}, progress=False)
        rank = os.environ.get("RANK", "0")
        (root / f"made.{{rank}}").write_text("\\n".join(f"{{i}},{{s}}" for i, s in generator.made))
        import torch
        (root / f"group.{{rank}}").write_text(str(torch.distributed.is_initialized()))
        """)
    )
    return script


def test_two_processes_under_torchrun_generate_each_cover_once(tmp_path, torchrun):
    make_items(tmp_path / "img")
    run = subprocess.run(
        [*torchrun, str(_script(tmp_path, 0.0, 4))], timeout=120, capture_output=True, text=True
    )
    assert run.returncode == 0 and "terminate called" not in run.stderr, run.stderr
    made = [line for r in range(2) for line in (tmp_path / f"made.{r}").read_text().splitlines()]
    manifest = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(made) == len(set(made)) == manifest.height == 24
    assert manifest["status"].to_list() == ["generated"] * 24
    # the process group the refresh started is gone before the interpreter exits (gloo aborts otherwise)
    assert [(tmp_path / f"group.{r}").read_text() for r in range(2)] == ["False", "False"]


def test_kill_minus_nine_then_rerun_finishes_every_cover_once(tmp_path):
    make_items(tmp_path / "img")
    proc = subprocess.Popen([sys.executable, str(_script(tmp_path, 0.3, 2))])
    covers = tmp_path / "out" / "covers"
    deadline = time.time() + 60
    while len(list(covers.glob("*/*.png"))) < 4 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(covers.glob("*/*.png")))
    assert 4 <= done_before < 24, "the kill must land mid-run"
    generator = ColourGenerator()
    manifest, stats = refresh_covers(
        make_items(tmp_path / "img"), make_cohorts(), generator, tmp_path / "out", progress=False
    )
    assert stats.generated == 24 - done_before == len(generator.made)
    pngs = sorted(p.stem for p in covers.glob("*/*.png"))
    assert pngs == sorted(manifest["key"]) and len(set(pngs)) == 24
    for key in manifest["key"]:
        CoverCache(covers).get(key)  # every cover is a complete image


def test_missing_cover_and_bad_inputs_are_reported(tmp_path):
    items = make_items(tmp_path / "img")
    cache = CoverCache(tmp_path / "c")
    work = plan_work(item_content_hashes(items), ["a"], "g1", 0)
    with pytest.raises(IcgRecError, match="12 cover"):
        build_manifest(work, cache, time.time())
    with pytest.raises(IcgRecError, match="planned for generator 'g1', got 'g2'"):
        run_refresh(work, ColourGenerator("g2"), torch.zeros(1, 4), cache, progress=False)
    with pytest.raises(IcgRecError, match="only 1 centroids"):
        run_refresh(
            plan_work(item_content_hashes(items), ["a", "b"], "g1", 0),
            ColourGenerator(),
            torch.zeros(1, 4),
            cache,
            progress=False,
        )
    with pytest.raises(SchemaError, match="does not exist"):
        item_content_hashes(items.with_columns(image_path=pl.lit("/nonexistent.png")))
    with pytest.raises(SchemaError, match=r"\['image_path'\]"):
        item_content_hashes(items.drop("image_path"))
    with pytest.raises(IcgRecError, match="rank 2 outside"):
        shard(work, 2, 2)
    with pytest.raises(CheckpointError, match="must be"):
        cache.put("ab" * 12, torch.zeros(8, 8))
    cache.path("cd" * 12).parent.mkdir(parents=True)
    cache.path("cd" * 12).write_bytes(b"not a png")
    with pytest.raises(CheckpointError, match="does not decode"):
        cache.get("cd" * 12)


def _damage(cache, keys, other):
    """Four ways a cover file goes bad: empty, cut short, one flipped bit, another valid image."""
    damages = [
        lambda b: b"",
        lambda b: b[:40],
        lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x10]) + b[len(b) // 2 + 1 :],
        lambda b: other,
    ]
    for key, damage in zip(keys, damages, strict=True):
        path = cache.path(key)
        path.write_bytes(damage(path.read_bytes()))


def test_damaged_covers_are_regenerated_and_counted(tmp_path):
    items, cohorts = make_items(tmp_path / "img"), make_cohorts()
    first, _ = refresh_covers(
        items, cohorts, ColourGenerator(), tmp_path / "out", batch_size=4, progress=False
    )
    cache = CoverCache(tmp_path / "out" / "covers")
    originals = {key: cache.path(key).read_bytes() for key in first["key"]}
    assert first["sha256"].to_list() == [cache.digest(k) for k in first["key"]]
    damaged = first["key"].to_list()[3:7]
    _damage(cache, damaged, originals[first["key"][0]])
    generator = ColourGenerator()
    manifest, stats = refresh_covers(
        items, cohorts, generator, tmp_path / "out", batch_size=4, progress=False
    )
    assert (stats.repaired, stats.generated, stats.cached, len(generator.made)) == (4, 4, 20, 4)
    assert manifest.filter(pl.col("status") == "generated")["key"].to_list() == damaged
    assert {key: cache.path(key).read_bytes() for key in manifest["key"]} == originals
    assert manifest["sha256"].equals(first["sha256"])


def test_without_a_manifest_covers_that_do_not_decode_are_regenerated(tmp_path):
    items, cohorts = make_items(tmp_path / "img"), make_cohorts()
    first, _ = refresh_covers(
        items, cohorts, ColourGenerator(), tmp_path / "out", batch_size=4, progress=False
    )
    (tmp_path / "out" / "manifest.parquet").write_bytes(b"PAR1 garbage")  # unreadable: every cover is decoded
    cache = CoverCache(tmp_path / "out" / "covers")
    for key in first["key"].to_list()[:3]:
        cache.path(key).write_bytes(cache.path(key).read_bytes()[:40])
    manifest, stats = refresh_covers(items, cohorts, ColourGenerator(), tmp_path / "out", progress=False)
    assert (stats.repaired, stats.generated) == (3, 3)
    assert manifest["sha256"].equals(first["sha256"])


class ReentrantGenerator(ColourGenerator):
    """Starts a second refresh of the same folder from inside the first one's generation."""

    def __init__(self, second):
        super().__init__()
        self.second = second
        self.error = None

    def generate(self, item_ids, user_embeddings, seeds):
        if self.error is None:
            try:
                self.second()
            except IcgRecError as err:
                self.error = err
        return super().generate(item_ids, user_embeddings, seeds)


def test_a_second_refresh_of_a_folder_in_use_is_refused(tmp_path):
    items, cohorts = make_items(tmp_path / "img"), make_cohorts()
    second_generator = ColourGenerator()

    def second():
        refresh_covers(items, cohorts, second_generator, tmp_path / "out", progress=False)

    generator = ReentrantGenerator(second)
    manifest, stats = refresh_covers(
        items, cohorts, generator, tmp_path / "out", batch_size=4, progress=False
    )
    assert isinstance(generator.error, IcgRecError), "the second refresh must be refused"
    assert f"process {os.getpid()}" in str(generator.error) and ".refresh.lock" in str(generator.error)
    assert second_generator.made == [] and stats.generated == manifest.height == 24
    _, again = refresh_covers(items, cohorts, ColourGenerator(), tmp_path / "out", progress=False)
    assert again.cached == 24  # released when the first run ended


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: pl.concat([f, f.tail(1)]), r"items.item_id .*unique ids, found repeats"),
        (lambda f: f.drop("title"), r"items are missing column\(s\) \['title'\]"),
        (
            lambda f: f.with_columns(pl.col("item_id").cast(pl.String)),
            r"items.item_id: expected Int64, got String",
        ),
        (lambda f: f.with_columns(title=pl.lit(None, pl.String)), r"items.title .*without nulls"),
    ],
)
def test_items_are_validated_before_any_cover_is_made(tmp_path, edit, message):
    generator = ColourGenerator()
    with pytest.raises(SchemaError, match=message):
        refresh_covers(edit(make_items(tmp_path / "img")), make_cohorts(), generator, tmp_path / "out")
    assert generator.made == [] and not (tmp_path / "out" / "covers").exists()


@pytest.mark.parametrize(
    "key", ["../../../etc/passwd", "ABCDEF0123456789ABCDEF01", "ab" * 11, "ab" * 12 + "/"]
)
def test_a_cover_key_of_another_form_is_refused(tmp_path, key):
    with pytest.raises(CheckpointError, match="is not 24 lowercase hex characters"):
        CoverCache(tmp_path).get(key)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.with_columns(key=pl.lit("../../../secret")), "a key that is not 24 lowercase hex"),
        (lambda m: m.with_columns(path=pl.lit("/etc/passwd")), "a path that is not its key's cover file"),
        (
            lambda m: m.with_columns(path=pl.format("/x/../{}/{}.png", pl.col("key").str.slice(0, 2), "key")),
            "a path that is not its key's cover file",
        ),
        (lambda m: m.with_columns(sha256=pl.lit("00")), "a sha256 that is not 64"),
        (lambda m: pl.concat([m, m.head(1)]), r"a repeated \(item_id, cohort_id\)"),
        (lambda m: m.drop("sha256"), "predates cover hashes: rerun the refresh"),
        (
            lambda m: m.with_columns(pl.col("item_id").cast(pl.String)),
            r"mistyped column\(s\) \{'item_id': 'String'\}",
        ),
    ],
)
def test_a_malformed_manifest_is_refused_by_its_readers(tmp_path, edit, message):
    manifest, _ = refresh_covers(
        make_items(tmp_path / "img"), make_cohorts(), ColourGenerator(), tmp_path / "out", progress=False
    )
    write_manifest(edit(manifest), tmp_path / "out" / "manifest.parquet")  # a checksum that matches
    with pytest.raises(CheckpointError, match=message):
        read_manifest(tmp_path / "out" / "manifest.parquet")
    with pytest.raises(CheckpointError, match=message):
        load_refreshed_covers(tmp_path / "out")


def test_a_cover_that_differs_from_its_manifest_hash_is_refused_by_readers(tmp_path):
    manifest, _ = refresh_covers(
        make_items(tmp_path / "img"), make_cohorts(), ColourGenerator(), tmp_path / "out", progress=False
    )
    cache = CoverCache(tmp_path / "out" / "covers")
    last = manifest["key"][-1]
    cache.path(last).write_bytes(cache.path(manifest["key"][0]).read_bytes())  # a valid PNG, the wrong one
    with pytest.raises(CheckpointError, match=f"cover {last} .* does not match the sha256 of its manifest"):
        load_refreshed_covers(tmp_path / "out")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1, got 0"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be an integer >= 1"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0, got nan"),
        ({"guidance_scale": -1.0}, "guidance_scale must be a finite number >= 0"),
    ],
)
def test_the_pipeline_generator_refuses_bad_sampling_settings(kwargs, message):
    from icg_rec.cohorts.generator import PipelineCoverGenerator

    with pytest.raises(IcgRecError, match=message):
        PipelineCoverGenerator(None, [1], ["t"], ["r.png"], **kwargs)


def test_a_batch_size_below_one_is_refused(tmp_path):
    work = plan_work(item_content_hashes(make_items(tmp_path / "img")), ["a"], "g1", 0)
    with pytest.raises(IcgRecError, match="batch_size must be >= 1, got 0"):
        run_refresh(work, ColourGenerator(), torch.zeros(1, 4), CoverCache(tmp_path / "c"), 0, progress=False)


def test_a_manifest_whose_rows_changed_fails_its_checksum(tmp_path):
    manifest, _ = refresh_covers(
        make_items(tmp_path / "img"), make_cohorts(), ColourGenerator(), tmp_path / "out", progress=False
    )
    path = tmp_path / "out" / "manifest.parquet"
    manifest.with_columns(seed=pl.col("seed") + 1).write_parquet(
        path
    )  # well-formed, but not what was written
    with pytest.raises(CheckpointError, match="fails its checksum"):
        read_manifest(path)
