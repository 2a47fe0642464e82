"""The micro run every pipeline test module shares: the tiny preset cut to seconds, run once per package."""

import pytest

from icg_rec.data.toy import write_toy_catalogue
from icg_rec.pipeline.presets import preset
from icg_rec.pipeline.run import run_pipeline

# the tiny preset cut further: every stage runs, in seconds (warm-up still longer than the CPU probe)
MICRO = """
[rewards]
n_boot = 20
[rewards.personalized]
epochs = 1
[rewards.relevance]
epochs = 2
[warmup.trainer]
steps = 5
batch_size = 4
learning_rate = 2e-3  # pinned: the align tests' kept step (a state after the warm-up) was measured with it
sample_items = 2
[align.draft]
steps = 2
batch_size = 2
num_inference_steps = 2
grad_steps = 1
sample_pairs = 2
[cohorts]
n_cohorts = 2
[refresh]
num_inference_steps = 2
[lift.cover_arms]
n_folds = 2
[lift.cover_arms.lift]
seeds = [0]
n_boot = 20
"""


@pytest.fixture(scope="package")
def micro(tmp_path_factory):
    folder = tmp_path_factory.mktemp("micro")
    (folder / "micro.toml").write_text(MICRO)
    items, log = write_toy_catalogue(folder / "data", n_items=12, n_users=30, n_impressions=600)
    return folder, items, log, preset("tiny").with_toml(folder / "micro.toml")


@pytest.fixture(scope="package")
def micro_run(micro):
    folder, items, log, config = micro
    return folder / "run", run_pipeline(items, log, folder / "run", config)
