"""Every long writer, killed with SIGKILL at a seeded random point: a rerun finishes with every output
present exactly once and equal to an uninterrupted run's."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import makers  # noqa: E402

from icg_rec.cohorts.cache import CoverCache  # noqa: E402
from icg_rec.cohorts.refresh import read_manifest, refresh_covers  # noqa: E402
from icg_rec.io import hash_files, verify_folder  # noqa: E402

REPO = HERE.parents[1]
KEEP = ["item_id", "cohort_id", "key", "item_hash", "cohort_version", "generator_version", "seed", "sha256"]


def kill_at_random(script: str, seed: int, started: Callable[[], bool], window: float) -> bool:
    """Runs `script` in its own interpreter, waits until `started()`, then SIGKILLs it after a seeded
    uniform delay in [0, window) seconds. Returns whether the kill landed before the script finished."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    code = "import torch\ntorch.set_num_threads(1)\nimport makers\n" + textwrap.dedent(script)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the writer never started: {proc.communicate()[1][-2000:]}")
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, window))
    landed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return landed


def outputs(folder: Path) -> list[str]:
    """Every file a run left, relative; temporary files of an interrupted write (dot-named) excluded."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_killed_refresh_reruns_to_the_uninterrupted_result(tmp_path, outcomes, seed):
    items, cohorts = makers.refresh_inputs(tmp_path / "img")
    reference, _ = refresh_covers(
        items, cohorts, makers.ColourGenerator(), tmp_path / "straight", progress=False
    )
    covers = tmp_path / "out" / "covers"
    landed = kill_at_random(
        f"""
        from pathlib import Path
        items, cohorts = makers.refresh_inputs(Path({str(tmp_path / "img")!r}))
        from icg_rec.cohorts.refresh import refresh_covers
        refresh_covers(items, cohorts, makers.ColourGenerator(delay=0.12), Path({str(tmp_path / "out")!r}),
                       batch_size=1, progress=False)
        """,
        seed,
        lambda: any(covers.glob("*/*.png")),
        window=1.5,
    )
    assert landed, "the kill must land mid-run"
    done = len(list(covers.glob("*/*.png")))
    generator = makers.ColourGenerator()
    manifest, stats = refresh_covers(items, cohorts, generator, tmp_path / "out", progress=False)
    assert stats.generated == generator.made == 15 - done  # only what the killed run had not finished
    assert manifest.select(KEEP).equals(reference.select(KEEP))
    assert read_manifest(tmp_path / "out" / "manifest.parquet").select(KEEP).equals(reference.select(KEEP))
    on_disk = sorted(p.stem for p in covers.glob("*/*.png"))
    assert on_disk == sorted(manifest["key"]) and len(set(on_disk)) == 15  # each cover exactly once
    cache, straight = CoverCache(covers), CoverCache(tmp_path / "straight" / "covers")
    assert all(cache.path(k).read_bytes() == straight.path(k).read_bytes() for k in manifest["key"])
    outcomes.kill_survived()


def _same_weights(a, b) -> None:
    for name in ("adapter", "refiner", "unet", "prompter"):
        for (key, x), (_, y) in zip(
            getattr(a, name).state_dict().items(), getattr(b, name).state_dict().items(), strict=True
        ):
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=f"{name}.{key}")


@pytest.mark.parametrize(
    ("writer", "seed"),
    [("warmup", 0), ("align", 0)],
)
def test_a_killed_trainer_resumes_to_the_uninterrupted_result(tmp_path, outcomes, writer, seed):
    steps = 8
    if writer == "warmup":
        straight = makers.warmup_trainer(steps).fit(
            makers.TITLES, makers.warmup_covers(), output_dir=tmp_path / "straight"
        )
        script = f"""
        makers.warmup_trainer({steps}).fit(makers.TITLES, makers.warmup_covers(), output_dir={str(tmp_path / "out")!r},
                                           resume=True)
        """
    else:
        trainer, items, audience = makers.aligner(steps)
        straight = trainer.fit(items, audience, tmp_path / "straight")
        script = f"""
        trainer, items, audience = makers.aligner({steps})
        trainer.fit(items, audience, {str(tmp_path / "out")!r}, resume=True)
        """
    checkpoint = tmp_path / "out" / "checkpoint" / "MANIFEST.json"
    assert kill_at_random(script, seed, checkpoint.is_file, window=1.5), "the kill must land mid-run"
    if writer == "warmup":
        resumed = makers.warmup_trainer(steps).fit(
            makers.TITLES, makers.warmup_covers(), output_dir=tmp_path / "out", resume=True
        )
        assert resumed.losses_ == straight.losses_
    else:
        trainer, items, audience = makers.aligner(steps)
        resumed = trainer.fit(items, audience, tmp_path / "out", resume=True)
        assert resumed.history_ == straight.history_
    assert resumed.step_ == straight.step_ == steps
    _same_weights(resumed.pipeline, straight.pipeline)
    assert outputs(tmp_path / "out") == outputs(tmp_path / "straight")
    verify_folder(tmp_path / "out" / "checkpoint")
    outcomes.kill_survived()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_checkpoint_resaved_in_a_loop_and_killed_is_one_whole_version(tmp_path, outcomes, seed):
    """The probe's mixed checkpoint: a re-save killed between files. Each kill leaves version 0 or 1, whole."""
    for version in (0, 1):
        makers.save_lightgbm(tmp_path / f"v{version}", version)
    expected = [makers.load_lightgbm(tmp_path / f"v{version}") for version in (0, 1)]
    folder = tmp_path / "model"
    assert kill_at_random(
        f"""
        from pathlib import Path
        from icg_rec.ranking.lightgbm_ranker import LightGBMRanker
        rankers = [LightGBMRanker.load(Path({str(tmp_path)!r}) / f"v{{v}}") for v in (0, 1)]
        for i in range(100_000):
            rankers[i % 2].save(Path({str(folder)!r}))
        """,
        seed,
        (folder / "MANIFEST.json").is_file,
        window=1.0,
    )
    got = makers.load_lightgbm(folder)
    assert any(np.array_equal(got, e) for e in expected), "a killed re-save left a mixed model"
    outcomes.kill_survived()


def test_a_killed_ranker_fit_reruns_to_the_uninterrupted_result(tmp_path, outcomes):
    makers.ranker_frame().drop("vec").write_parquet(tmp_path / "train.parquet")
    command = ["ranker", "fit", "--train", str(tmp_path / "train.parquet"), "--sparse", "user_id", "item_id",
               "--dense", "price", "--seed", "3"]  # fmt: skip
    from icg_rec.cli import main

    start = time.monotonic()
    assert main([*command, "--out", str(tmp_path / "straight")]) == 0
    took = time.monotonic() - start  # the kill lands within the fit however fast this machine is
    marker = tmp_path / "imported"
    assert kill_at_random(
        f"""
        from pathlib import Path
        from icg_rec.cli import main
        from icg_rec.ranking.torchrec_ranker import fit_from_files  # the heavy imports, before the clock starts
        Path({str(marker)!r}).touch()
        main({[*command, "--out", str(tmp_path / "out")]!r})
        """,
        0,
        marker.is_file,
        window=0.5 * took,
    )
    assert main([*command, "--out", str(tmp_path / "out")]) == 0
    assert hash_files(tmp_path / "out") == hash_files(tmp_path / "straight")
    assert outputs(tmp_path / "out") == outputs(tmp_path / "straight")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # nothing half-written is left
    outcomes.kill_survived()
