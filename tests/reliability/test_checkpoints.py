"""Every multi-file artifact, each file corrupted each way or swapped for another save's: a clear error."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import makers  # noqa: E402
from faults import CORRUPTIONS, artifact_files, assert_clear_error  # noqa: E402

# Every file each artifact is made of (relative to the folder its loader reads). A new file must be
# added here, so that it is corrupted too.
FILES = {
    "lightgbm": ["MANIFEST.json", "model.txt", "ranker.json"],
    "torchrec": [
        "MANIFEST.json",
        "model.safetensors",
        "provider/MANIFEST.json",
        "provider/cover_store/MANIFEST.json",
        "provider/cover_store/store.json",
        "provider/cover_store/store.safetensors",
        "provider/provider.json",
        "provider/provider.safetensors",
        "ranker.json",
    ],
    "store": ["MANIFEST.json", "store.json", "store.safetensors"],
    "provider": [
        "MANIFEST.json",
        "cover_store/MANIFEST.json",
        "cover_store/store.json",
        "cover_store/store.safetensors",
        "provider.json",
        "provider.safetensors",
    ],
    "relevance": ["MANIFEST.json", "config.json", "weights.safetensors"],
    "personalized": ["MANIFEST.json", "config.json", "weights.safetensors"],
    "pipeline": [
        "MANIFEST.json",
        "adapter/adapter.safetensors",
        "adapter/adapter_config.json",
        "model_index.json",
        "pipeline_icg.py",
        "prompter/backbone/config.json",
        "prompter/backbone/model.safetensors",
        "prompter/prompter.safetensors",
        "prompter/prompter_config.json",
        "refiner/refiner.safetensors",
        "refiner/refiner_config.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ],
    "cohorts": ["MANIFEST.json", "cohorts.json", "cohorts.safetensors"],
    "ab_plan": [
        "MANIFEST.json",
        "assignment.parquet",
        "covers_control.parquet",
        "covers_generic.parquet",
        "covers_personalized.parquet",
        "spec.json",
        "spec.md",
    ],
    "warmup_checkpoint": [
        f"checkpoint/{name}"
        for name in ["MANIFEST.json", "optimizer.pt", "rng.safetensors", "state.json", "weights.safetensors"]
    ],
    "align_checkpoint": [
        f"checkpoint/{name}"
        for name in ["MANIFEST.json", "optimizer.pt", "rng.safetensors", "state.json", "weights.safetensors"]
    ],
}
CASES = [(kind, name) for kind, names in FILES.items() for name in names]


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """kind -> (version 0 folder, version 1 folder), each made once."""
    cache: dict[str, tuple[Path, Path]] = {}

    def get(kind: str) -> tuple[Path, Path]:
        if kind not in cache:
            root = tmp_path_factory.mktemp(kind)
            for version in (0, 1):
                getattr(makers, f"save_{kind}")(root / str(version), version)
            cache[kind] = (root / "0", root / "1")
        return cache[kind]

    return get


def _checked_part(kind: str, folder: Path) -> list[str]:
    prefix = "checkpoint/" if kind.endswith("_checkpoint") else ""
    return [n for n in artifact_files(folder) if n.startswith(prefix)]


@pytest.mark.parametrize("kind", sorted(FILES))
def test_the_listed_files_are_every_file_and_the_artifact_loads(saved, kind):
    first, _ = saved(kind)
    assert _checked_part(kind, first) == FILES[kind]
    getattr(makers, f"load_{kind}")(first)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_corrupt_file_is_a_clear_error(saved, tmp_path, outcomes, kind, name, corruption):
    folder = shutil.copytree(saved(kind)[0], tmp_path / "copy")
    CORRUPTIONS[corruption](folder / name)
    with pytest.raises(Exception) as err:
        getattr(makers, f"load_{kind}")(folder)
    assert_clear_error(err.value, Path(name).name, "MANIFEST.json")
    outcomes.error()


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_file_of_another_save_is_a_clear_error(saved, tmp_path, outcomes, kind, name):
    first, second = saved(kind)
    folder = shutil.copytree(first, tmp_path / "copy")
    (folder / name).write_bytes((second / name).read_bytes())
    if (first / name).read_bytes() == (second / name).read_bytes():  # the same bytes: nothing is mixed
        getattr(makers, f"load_{kind}")(folder)
        return
    with pytest.raises(Exception) as err:
        getattr(makers, f"load_{kind}")(folder)
    names = [Path(n).name for n in FILES[kind]]  # another MANIFEST.json names the first file it disagrees on
    assert_clear_error(err.value, *(names if name.endswith("MANIFEST.json") else [Path(name).name]))
    outcomes.error()
