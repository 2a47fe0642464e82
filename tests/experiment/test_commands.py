"""`icg-rec ab plan` from files: bad numbers die at parse time, a partial manifest is refused with counts."""

import hashlib

import numpy as np
import polars as pl
import pytest

from icg_rec.cli import main
from icg_rec.cohorts.refresh import write_manifest
from icg_rec.errors import SchemaError
from icg_rec.experiment.commands import arm_cover_manifests


def _key(item_id, cohort_id):
    return hashlib.sha256(f"{item_id}:{cohort_id}".encode()).hexdigest()[:24]


def fake_manifest(item_ids, cohorts=(-1, 0, 1)):
    """A well-formed refresh manifest (files are not read by the plan) for items x cohorts."""
    rows = [(i, c, _key(i, c)) for i in item_ids for c in cohorts]
    return pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "cohort_id": [r[1] for r in rows],
            "key": [r[2] for r in rows],
            "path": [f"/run/covers/{k[:2]}/{k}.png" for _, _, k in rows],
            "status": ["generated"] * len(rows),
            "item_hash": ["h"] * len(rows),
            "cohort_version": ["v"] * len(rows),
            "generator_version": ["g"] * len(rows),
            "seed": [0] * len(rows),
            "sha256": [hashlib.sha256(k.encode()).hexdigest() for _, _, k in rows],
        },
        schema_overrides={"item_id": pl.Int64, "cohort_id": pl.Int64, "seed": pl.Int64},
    )


def items_frame(n):
    return pl.DataFrame(
        {"item_id": np.arange(n, dtype=np.int64), "image_path": [f"/img/{i}.jpg" for i in range(n)]}
    )


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    n = 4000
    pl.DataFrame(
        {
            "user_id": rng.integers(0, 400, n),
            "item_id": rng.integers(0, 400, n),
            "label": (rng.uniform(size=n) < 0.2).astype(np.float64),
            "timestamp": 1_700_000_000 + np.arange(n) * 600,
        }
    ).write_parquet(tmp_path / "log.parquet")
    items_frame(400).write_parquet(tmp_path / "items.parquet")
    write_manifest(fake_manifest(range(400)), tmp_path / "manifest.parquet")
    return tmp_path


def _argv(folder, *extra):
    return ["ab", "plan", "--interactions", str(folder / "log.parquet"), "--items", str(folder / "items.parquet"),
            "--manifest", str(folder / "manifest.parquet"), "--out", str(folder / "ab"), *extra]  # fmt: skip


def test_a_complete_manifest_plans(files):
    assert main(_argv(files)) == 0
    assert pl.read_parquet(files / "ab" / "covers_personalized.parquet").height == 800


@pytest.mark.parametrize("lift", ["0", "inf", "nan", "1e-9", "-0.5", "11", "five"])
def test_a_bad_expected_lift_is_one_line_and_exit_2(files, capsys, lift):
    with pytest.raises(SystemExit) as exit_info:
        main(_argv(files, "--expected-lift", lift))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"argument --expected-lift: expected a finite number in [0.001, 10], got '{lift}'" in err
    assert not (files / "ab").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[ab]\narms = {control = 0.5, generic = 0.5, personalized = 0.0}\n", "arm weights must be finite"),
        ("[ab]\narms = {control = 1.5, personalized = -0.5}\n", "arm weights must be finite"),
        ("[ab]\narms = {control = 1.0}\n", "need a 'control' arm and at least one treatment arm"),
        ("[ab]\nalpha = 0.0\n", "need 0 < alpha < power < 1"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(files, capsys, toml, message):
    (files / "ab.toml").write_text(toml)
    with pytest.raises(SystemExit) as exit_info:
        main(_argv(files, "--config", str(files / "ab.toml")))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (files / "ab").exists()


def test_a_manifest_covering_8_of_400_items_is_refused_with_the_counts(files):
    write_manifest(fake_manifest(range(8)), files / "manifest.parquet")
    with pytest.raises(
        SchemaError, match=r"the manifest covers 8 of 400 items in every cohort \[-1, 0, 1\]: 1176"
    ):
        main(_argv(files))
    assert not (files / "ab").exists()


@pytest.mark.parametrize(
    ("manifest", "items", "message"),
    [
        (
            fake_manifest(range(5)).filter(pl.col("cohort_id") != 1).vstack(fake_manifest(range(4), [1])),
            items_frame(5),
            r"covers 4 of 5 items .* 1 \(item, cohort\) cover\(s\) are missing, e.g. \[\(4, 1\)\]",
        ),
        (
            fake_manifest(range(6)),
            items_frame(5),
            r"covers of 1 item\(s\) not in the items table, e.g. item_id \[5\]",
        ),
        (fake_manifest(range(5), [0, 1]), items_frame(5), r"the generic arm needs cohort -1"),
        (fake_manifest(range(5), [-1]), items_frame(5), r"personalized arm at least one cohort"),
        (
            fake_manifest(range(5)),
            items_frame(5).with_columns(image_path=pl.lit(None, pl.String)),
            r"5 of 5 item\(s\) have no original cover",
        ),
        (fake_manifest(range(5)), pl.concat([items_frame(5), items_frame(1)]), r"items repeat 1 item id"),
    ],
)
def test_arm_manifests_must_cover_the_catalogue(manifest, items, message):
    with pytest.raises(SchemaError, match=message):
        arm_cover_manifests(items, manifest)
