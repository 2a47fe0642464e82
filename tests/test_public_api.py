"""The names each package exports: all importable, listed for type checkers, and lazily imported."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = [
    "alignment",
    "cohorts",
    "data",
    "encoders",
    "experiment",
    "features",
    "generation",
    "ope",
    "ranking",
    "rewards",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_resolves_and_type_checkers_see_the_same_names(package):
    module = importlib.import_module(f"icg_rec.{package}")
    assert all(getattr(module, name) is not None for name in module.__all__)
    tree = ast.parse(Path(module.__file__).read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If))  # `if TYPE_CHECKING:`
    typed = sorted(alias.name for node in guarded.body for alias in node.names)
    assert typed == module.__all__
    assert dir(module) == module.__all__


def test_an_unknown_name_is_an_attribute_error():
    import icg_rec.ranking

    with pytest.raises(AttributeError, match="module 'icg_rec.ranking' has no attribute 'Nope'"):
        icg_rec.ranking.Nope  # noqa: B018


def test_the_readme_imports():
    from icg_rec.features import CoverEmbeddingStore, FeatureProvider
    from icg_rec.generation import ICGPipeline
    from icg_rec.ranking import LightGBMRanker, Ranker, TorchRecRanker
    from icg_rec.rewards import AestheticReward, MultiReward, PersonalizedRewardModel, RelevanceReward

    assert TorchRecRanker.__module__ == "icg_rec.ranking.torchrec_ranker"
    assert {CoverEmbeddingStore, FeatureProvider, ICGPipeline, LightGBMRanker, Ranker} and {
        AestheticReward,
        MultiReward,
        PersonalizedRewardModel,
        RelevanceReward,
    }


def test_importing_the_packages_imports_no_heavy_library():
    code = (
        "import sys, icg_rec; "
        + "; ".join(f"import icg_rec.{p}" for p in PACKAGES)
        + "; print(sorted(m for m in ('torch', 'torchrec', 'diffusers', 'transformers', 'faiss', 'lightgbm')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
