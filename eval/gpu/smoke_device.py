"""Every heavy class once, tiny, on one device: does `device` reach it end to end?

    python -m eval.gpu.smoke_device --device cuda --out $OUT/smoke.json   # GPU host (run_device.sh)
    python -m eval.gpu.smoke_device --device cpu                          # dry run anywhere

Checks: warm-up (bfloat16 autocast), DRaFT with LoRA and DPO (bfloat16), the personalized reward (fit,
predict, reward call on covers on the device, save/load), the relevance model, the refresh (fp16 with
channels_last, fused QKV, CUDA graphs and writer threads on CUDA; float32 on CPU), the TorchRec ranker
(fit/predict/save/load) and DMP under torchrun (one process: nccl on CUDA, gloo on CPU). Each check
asserts that its model's parameters sit on the device; a failing check is recorded and the rest still
run; one that cannot run on the host (DMP without fbgemm's CUDA kernels) says why. Last line:
`smoke: N ok, M failed (names), K skipped`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch

from eval.gpu.bench_refresh_gpu import HashText
from icg_rec.alignment import AlignConfig, Audience, DPOAligner, DPOConfig, ItemSet, RewardAligner
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.device import resolve_device
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.fast import FastConfig
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.dlrm import TorchRecConfig
from icg_rec.ranking.torchrec_ranker import TorchRecRanker
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel

USER_DIM = 8


class Skipped(Exception):
    """A check that cannot run on this host, with the reason."""


def _world() -> SimWorld:
    return SimWorld.generate(SimConfig(n_users=80, n_items=24, n_cohorts=2, impressions_per_user=12, seed=0))


def _pipeline():
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=USER_DIM,
        prompter=PrompterConfig(hidden_size=32, num_layers=1, num_heads=2, num_meta_tokens=2, image_prefix_tokens=1),
    )  # fmt: skip
    pipe = build_pipeline(config, ColourGridEncoder(image_size=16).freeze(), HashText())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _on(module: torch.nn.Module, device: torch.device) -> str:
    where = next(module.parameters()).device
    assert where.type == device.type, f"parameters on {where}, expected {device}"
    return str(where)


def check_warmup(device: torch.device, folder: Path) -> dict:
    world = _world()
    trainer = WarmupTrainer(_pipeline(), WarmupConfig(steps=3, batch_size=4), str(device), "bfloat16")
    trainer.fit(world.dataset.items["title"].to_list(), world.covers)
    assert all(np.isfinite(trainer.losses_))
    return {"unet": _on(trainer.pipeline.unet, device), "loss": trainer.losses_[-1]}


def _alignment_inputs():
    world = _world()
    items = ItemSet(world.dataset.items["title"].to_list()[:6], world.covers[:6], torch.arange(6))
    audience = Audience(torch.arange(3), torch.randn(3, USER_DIM, generator=torch.Generator().manual_seed(0)))
    reward = MultiReward({"aesthetic": AestheticReward()}, MultiRewardConfig(weights={"aesthetic": 1.0}))
    return items, audience, reward


def check_align_draft(device: torch.device, folder: Path) -> dict:
    items, audience, reward = _alignment_inputs()
    config = AlignConfig(steps=2, batch_size=2, num_inference_steps=3, grad_steps=1, lora_rank=2)
    aligner = RewardAligner(_pipeline(), reward, config, str(device), "bfloat16").fit(items, audience)
    return {"unet": _on(aligner.pipeline.unet, device), "reward": aligner.history_[-1]["reward_total"]}


def check_align_dpo(device: torch.device, folder: Path) -> dict:
    items, audience, reward = _alignment_inputs()
    config = DPOConfig(
        rounds=1, pairs_per_round=2, candidates=2, steps_per_round=1, batch_size=2, num_inference_steps=2
    )
    aligner = DPOAligner(_pipeline(), reward, config, str(device), "bfloat16").fit(items, audience)
    return {"adapter": _on(aligner.pipeline.adapter, device), "loss": aligner.history_[-1]["loss"]}


def check_personalized(device: torch.device, folder: Path) -> dict:
    world = _world()
    config = PersonalizedConfig(
        cover_tower="cnn", image_size=world.covers.shape[-1], cnn_channels=4, dim=8, epochs=2
    )
    covers = CoverInputs(world.dataset.items["item_id"].to_numpy(), world.covers.numpy())
    model = PersonalizedRewardModel(config, device=str(device)).fit(
        world.dataset.interactions, covers, seed=0
    )
    predicted = model.predict(world.dataset.interactions.head(50), covers)
    loaded = PersonalizedRewardModel.load(model.save(folder / "personalized"), device=str(device))
    score = loaded(RewardInputs(images=world.covers[:4].to(device), user_ids=torch.tensor([-1, -1, -1, -1])))
    np.testing.assert_allclose(
        loaded.predict(world.dataset.interactions.head(50), covers), predicted, atol=1e-5
    )
    return {
        "net": _on(loaded.net_, device),
        "score_device": str(score.device),
        "user_vectors": list(model.user_vectors().shape),
    }


def check_relevance(device: torch.device, folder: Path) -> dict:
    gen = torch.Generator().manual_seed(0)
    text, image = torch.randn(40, 6, generator=gen).numpy(), torch.randn(40, 5, generator=gen).numpy()
    model = RelevanceModel(RelevanceConfig(shared_dim=4, epochs=2), device=str(device)).fit(text, image)
    loaded = RelevanceModel.load(model.save(folder / "relevance"), device=str(device))
    np.testing.assert_allclose(loaded.similarity(text, image), model.similarity(text, image), atol=1e-6)
    return {"net": _on(loaded.net_, device)}


def check_refresh(device: torch.device, folder: Path) -> dict:
    world = _world()
    items = world.save_covers(folder / "ref").items.head(6)
    cohorts = UserCohorts(CohortConfig(n_cohorts=2)).fit(
        np.arange(80), np.random.default_rng(0).normal(size=(80, USER_DIM)).astype("f4")
    )
    cuda = device.type == "cuda"
    fast = FastConfig(channels_last=True, fuse_qkv=True, compile="reduce-overhead" if cuda else "off")
    pipe = _pipeline()
    generator = PipelineCoverGenerator(
        pipe, items["item_id"], items["title"], items["image_path"], 3, 2.0,
        device=str(device), dtype="float16" if cuda else "float32", fast=fast,
    )  # fmt: skip
    manifest, stats = refresh_covers(
        items, cohorts, generator, folder / "refresh", batch_size=6, progress=False, writers=2
    )
    assert stats.generated == 18 and manifest.height == 18
    return {"unet": _on(pipe.unet, device), "dtype": str(pipe.unet.dtype), "covers": stats.generated}


def _ranker_frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    users, items = rng.integers(0, 20, n), rng.integers(0, 30, n)
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "x": rng.normal(size=n),
            "label": ((users + items) % 3 == 0).astype(float),
        }
    )


def check_torchrec_ranker(device: torch.device, folder: Path) -> dict:
    frame, spec = _ranker_frame(), FeatureSpec(sparse=["user_id", "item_id"], dense=["x"])
    ranker = TorchRecRanker(TorchRecConfig(epochs=2, batch_size=64, progress=False), device=str(device))
    ranker.fit(frame, spec, seed=0)
    loaded = TorchRecRanker.load(ranker.save(folder / "ranker"), device=str(device))
    np.testing.assert_allclose(loaded.predict(frame), ranker.predict(frame), atol=1e-6)
    return {"model": _on(loaded.model_, device)}


def check_dmp(device: torch.device, folder: Path) -> dict:
    if device.type == "cuda":
        try:  # sharded tables run fbgemm's CUDA kernels; the CPU build of fbgemm-gpu has none
            torch.ops.fbgemm.asynchronous_complete_cumsum(torch.ones(2, dtype=torch.int32, device=device))
        except (NotImplementedError, RuntimeError) as err:
            raise Skipped(
                f"fbgemm_gpu here has no CUDA kernels ({type(err).__name__}); DMP needs the CUDA build"
            ) from err
    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    _ranker_frame().write_parquet(folder / "train.parquet")
    done = subprocess.run(
        [*command, "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", "29533",
         "-m", "icg_rec.cli", "ranker", "fit", "--train", str(folder / "train.parquet"),
         "--sparse", "user_id", "item_id", "--dense", "x", "--out", str(folder / "dmp"), "--device", device.type],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        "backend": "nccl" if device.type == "cuda" else "gloo",
        "saved": (folder / "dmp" / "ranker.json").is_file(),
    }


CHECKS: dict[str, Callable[[torch.device, Path], dict]] = {
    "warmup": check_warmup,
    "align_draft": check_align_draft,
    "align_dpo": check_align_dpo,
    "personalized": check_personalized,
    "relevance": check_relevance,
    "refresh": check_refresh,
    "torchrec_ranker": check_torchrec_ranker,
    "dmp": check_dmp,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--checks", nargs="*", default=list(CHECKS), choices=list(CHECKS))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.checks:
            (Path(tmp) / name).mkdir()
            try:
                results[name] = {"ok": True, **CHECKS[name](device, Path(tmp) / name)}
            except Skipped as why:
                results[name] = {"ok": None, "skipped": str(why)}
            except Exception as err:  # noqa: BLE001 - record every failure, run the other checks
                results[name] = {
                    "ok": False,
                    "error": f"{type(err).__name__}: {err}",
                    "trace": traceback.format_exc()[-3000:],
                }
            row = results[name]
            state = {
                True: "ok",
                None: f"skipped: {row.get('skipped')}",
                False: f"FAILED {row.get('error', '')[:300]}",
            }
            print(f"{name:16s} {state[row['ok']]}", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"device": str(device), "checks": results}, indent=2, default=str) + "\n"
        )
    failed = [name for name, row in results.items() if row["ok"] is False]
    skipped = [name for name, row in results.items() if row["ok"] is None]
    ok = len(results) - len(failed) - len(skipped)
    print(f"smoke: {ok} ok, {len(failed)} failed ({', '.join(failed) or 'none'}), {len(skipped)} skipped")
    return results


if __name__ == "__main__":
    main()
