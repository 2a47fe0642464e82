"""Warm up the embedded ICG generator on one GPU (MovieLens posters or SimWorld), score it on the dev box.

The GPU host has neither the MiniLM / EfficientNet-Lite0 weights nor the posters, so the work is split:

    python -m eval.gpu.warmup_gpu prepare --dataset movielens --out .gpu/posters   # dev box, ~2 min
    python -m eval.gpu.warmup_gpu prepare --dataset simworld --out .gpu/simworld   # dev box
    python3 -m eval.gpu.warmup_gpu train --data .gpu/posters --out $OUT            # GPU host
    python -m eval.gpu.warmup_gpu score --data .gpu/posters --covers DIR           # dev box

`prepare` runs the prompter's own `prepare` (the frozen encoders) on every item and writes those
features (float16) with the reference covers (lossless WebP) and the item split: posters 90/10 at
random with `posters.toml`; SimWorld the same world, split and config as `python -m eval.generation`
(`simworld.toml`). `train` feeds the features back through lookup encoders, so the GPU run goes through
the same `WarmupTrainer` and `ICGPipeline` code as everywhere else, trains for a wall-clock budget, and
writes covers generated for the held-out items and as many training items. `score` measures them like
`eval.generation`: posters by EfficientNet-Lite0 cosine to the own reference vs a shuffled one and title
relevance vs shuffled titles; SimWorld by the oracle's attribute error vs a shuffled reference.
"""

import argparse
import hashlib
import io
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from icg_rec.figures import contact_sheet
from icg_rec.generation.backbones import build_pipeline, generator_config_from_dict
from icg_rec.generation.prompter import to_pil
from icg_rec.generation.warmup import (
    WarmupConfig,
    WarmupTrainer,
    prepare_items,
    reference_tensor,
)
from icg_rec.io import config_from_dict, load_weights, read_json, save_weights, write_json

CONFIGS = {
    "movielens": Path(__file__).with_name("posters.toml"),
    "simworld": Path(__file__).with_name("simworld.toml"),
}
POSTER_HELDOUT_FRACTION = 0.1
SIM_TRAIN_FRACTION = 0.8  # as eval.generation
SIM_WORLD = {
    "n_users": 200,
    "impressions_per_user": 10,
}  # as eval.generation: warm-up reads covers and titles


def _config(dataset: str) -> dict:
    with CONFIGS[dataset].open("rb") as fh:
        return tomllib.load(fh)


def _sim_world(n_items: int, seed: int):
    from icg_rec.data.sim import SimConfig, SimWorld

    return SimWorld.generate(SimConfig(n_items=n_items, seed=seed, **SIM_WORLD))


def _pixel_key(image: Image.Image) -> str:
    return hashlib.md5(image.convert("RGB").tobytes()).hexdigest()


class LookupTextEncoder:
    """Title features computed on the dev box, looked up by title (duck-types icg_rec's TextEncoder)."""

    name = "lookup-text"

    def __init__(self, titles: list[str], features: torch.Tensor) -> None:
        self.dim = features.shape[1]
        self.rows = {title: features[i].float().numpy() for i, title in enumerate(titles)}

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.stack([self.rows[text] for text in texts])


class LookupImageEncoder:
    """Image features computed on the dev box, looked up by the exact pixels of the reference cover."""

    name = "lookup-image"

    def __init__(self, references: torch.Tensor, features: torch.Tensor) -> None:
        self.dim = features.shape[1]
        self.rows = {
            _pixel_key(to_pil(reference, i)): features[i].float().numpy()
            for i, reference in enumerate(references)
        }
        if len(self.rows) != len(references):
            raise ValueError("two reference covers have identical pixels; the lookup would be ambiguous")

    def encode(self, images, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.stack([self.rows[_pixel_key(image)] for image in images])


def _encode_webp(references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, S, S) uint8 -> one uint8 byte tensor of lossless WebP files and their end offsets."""
    blobs = []
    for image in references:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="WEBP", lossless=True)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    ends = torch.from_numpy(np.cumsum([len(b) for b in blobs]))
    return torch.from_numpy(np.concatenate(blobs)), ends


def _decode_webp(data: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    starts = torch.cat([torch.zeros(1, dtype=ends.dtype), ends[:-1]])
    raw = data.numpy().tobytes()
    images = [
        np.asarray(Image.open(io.BytesIO(raw[s:e])).convert("RGB")) for s, e in zip(starts, ends, strict=True)
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (n, 3, S, S) uint8


def load_prepared(folder: Path) -> tuple[dict, dict[str, torch.Tensor], torch.Tensor]:
    """The `prepare` output: metadata, prompter features and (n, 3, S, S) float references in [0, 1]."""
    meta = read_json(folder / "meta.json")
    tensors = load_weights(folder / "items.safetensors")
    references = _decode_webp(tensors.pop("references_webp"), tensors.pop("references_ends")).float() / 255.0
    return meta, tensors, references


def prepare(args: argparse.Namespace) -> None:
    values = _config(args.dataset)
    config = generator_config_from_dict(values["generator"], source=f"{CONFIGS[args.dataset]} [generator]")
    if args.dataset == "movielens":
        from icg_rec.data.movielens import load_movielens_with_posters

        items = load_movielens_with_posters(args.data_dir).items.sort("item_id")
        titles, images = items["title"].to_list(), items["image_path"].to_list()
        references = reference_tensor(images, config.resolution)  # (n, 3, S, S)
        order = torch.randperm(len(titles), generator=torch.Generator().manual_seed(args.seed)).tolist()
        n_heldout = int(POSTER_HELDOUT_FRACTION * len(titles))
        heldout, train_items = sorted(order[:n_heldout]), sorted(order[n_heldout:])
    else:
        world = _sim_world(args.sim_items, args.seed)
        titles = world.dataset.items["title"].to_list()
        references = (world.covers * 255).round() / 255  # (n, 3, 64, 64): the 8-bit covers both sides see
        images = list(references)
        n_train = int(SIM_TRAIN_FRACTION * len(titles))
        heldout, train_items = list(range(n_train, len(titles))), list(range(n_train))
    pipe = build_pipeline(config)  # the real encoders: MiniLM titles, EfficientNet-Lite0 images
    features = prepare_items(pipe, titles, images)
    data, ends = _encode_webp((references * 255).round().to(torch.uint8))
    tensors = {key: value.half() for key, value in features.items()}
    save_weights(
        args.out / "items.safetensors", {**tensors, "references_webp": data, "references_ends": ends}
    )
    write_json(args.out / "meta.json", {
        "dataset": args.dataset, "sim_items": args.sim_items, "titles": titles, "seed": args.seed,
        "heldout": heldout, "train": train_items,
        "features": "prompter.prepare on the dev box (MiniLM, EfficientNet-Lite0), stored as float16",
    })  # fmt: skip
    print(f"{len(titles)} {args.dataset} items ({len(heldout)} held out) prepared in {args.out}")


def train(args: argparse.Namespace) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    meta, features, references = load_prepared(args.data)
    titles = meta["titles"]
    source = CONFIGS[meta["dataset"]]
    values = _config(meta["dataset"])
    config = generator_config_from_dict(values["generator"], source=f"{source} [generator]")
    warm = config_from_dict(
        WarmupConfig, {"seed": meta["seed"], **values["warmup"]}, source=f"{source} [warmup]"
    )
    torch.manual_seed(meta["seed"])
    pipe = build_pipeline(
        config,
        LookupImageEncoder(references, features["image_features"]),
        LookupTextEncoder(titles, features["title_features"]),
    ).to(device)
    train_index, heldout_index = meta["train"], meta["heldout"]
    train_titles = [titles[i] for i in train_index]
    # train in chunks until the wall-clock budget is spent: each chunk resumes the last checkpoint
    start, chunk, trainer = time.perf_counter(), warm.checkpoint_every, None
    run = args.work / meta["dataset"]
    while trainer is None or time.perf_counter() - start < args.minutes * 60:
        warm.steps = chunk if trainer is None else trainer.step_ + chunk
        trainer = WarmupTrainer(pipe, warm).fit(
            train_titles, references[train_index], output_dir=run, resume=True
        )
        rate = trainer.step_ / (time.perf_counter() - start)
        print(
            f"step {trainer.step_} loss(last 50) {np.mean(trainer.losses_[-50:]):.4f} {rate:.1f} steps/s",
            flush=True,
        )
    seconds = time.perf_counter() - start
    generated = {}
    for split, index in (("heldout", heldout_index), ("train", train_index[: len(heldout_index)])):
        covers = pipe(
            [titles[i] for i in index], list(references[index]), seed=meta["seed"], batch_size=128,
            num_inference_steps=warm.sample_steps, guidance_scale=warm.guidance_scale, output_type="pt",
        ).images  # fmt: skip
        generated[split] = (covers * 255).round().to(torch.uint8)  # (n, 3, S, S)
        generated[f"{split}_index"] = torch.tensor(index)
    args.out.mkdir(parents=True, exist_ok=True)
    save_weights(args.out / "covers.safetensors", generated)
    contact_sheet(
        args.out / "contact_sheet.png",
        [
            reference_tensor(references[heldout_index[:16]], config.resolution),
            generated["heldout"][:16].float() / 255.0,
        ],
    )
    losses = trainer.losses_
    write_json(args.out / "train_summary.json", {
        "dataset": meta["dataset"], "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "steps": trainer.step_, "train_seconds": seconds,
        "steps_per_second": trainer.step_ / seconds, "n_train": len(train_index), "n_heldout": len(heldout_index),
        "loss_first50": float(np.mean(losses[:50])), "loss_last50": float(np.mean(losses[-50:])),
        "loss_every_100": [float(np.mean(losses[i : i + 100])) for i in range(0, len(losses), 100)],
        "generator": config, "warmup": warm,
    })  # fmt: skip
    print(f"done: {trainer.step_} steps in {seconds:.0f} s; covers in {args.out / 'covers.safetensors'}")


def score(args: argparse.Namespace) -> None:
    meta, features, references = load_prepared(args.data)
    generated = load_weights(args.covers / "covers.safetensors")
    report = {"train_summary": read_json(args.covers / "train_summary.json")}
    if meta["dataset"] == "simworld":
        report.update(_score_simworld(meta, generated, references))
    else:
        report.update(_score_posters(meta, features, generated, references))
    write_json(args.out, report)
    print(json.dumps({split: report[split] for split in ("heldout", "train")}, indent=1))


def _score_simworld(meta: dict, generated: dict[str, torch.Tensor], references: torch.Tensor) -> dict:
    from eval.generation import attribute_errors

    world = _sim_world(meta["sim_items"], meta["seed"])
    report = {}
    for split in ("heldout", "train"):
        index = generated[f"{split}_index"].tolist()
        covers = generated[split].float() / 255.0  # (n, 3, S, S)
        refs = reference_tensor(references[index], covers.shape[-1])  # (n, 3, S, S) at the covers' size
        report[split] = attribute_errors(world, covers, refs, meta["seed"])
    return report


def _score_posters(
    meta: dict,
    features: dict[str, torch.Tensor],
    generated: dict[str, torch.Tensor],
    references: torch.Tensor,
) -> dict:
    from eval.generation import derangement
    from icg_rec.encoders import load_image_encoder, load_text_encoder
    from icg_rec.rewards.base import RewardInputs
    from icg_rec.rewards.relevance import RelevanceModel, RelevanceReward

    titles = meta["titles"]
    image_encoder, text_encoder = load_image_encoder(), load_text_encoder()
    train_index = meta["train"]
    # the relevance judge is fitted on the training posters only (full-resolution features from prepare)
    relevance = RelevanceModel().fit(
        features["title_features"][train_index].float().numpy(),
        features["image_features"][train_index].float().numpy(),
        seed=meta["seed"],
    )
    reward = RelevanceReward(relevance, text_encoder, image_encoder)
    report = {}
    for split in ("heldout", "train"):
        index = generated[f"{split}_index"].tolist()
        covers = generated[split].float() / 255.0  # (n, 3, S, S)
        refs = reference_tensor(references[index], covers.shape[-1])  # (n, 3, S, S) at the covers' size
        split_titles = [titles[i] for i in index]
        shuffled = derangement(len(index), meta["seed"])
        with torch.no_grad():
            gen_emb = F.normalize(image_encoder(covers), dim=1)  # (n, D)
            ref_emb = F.normalize(image_encoder(refs), dim=1)  # (n, D)
            own_rel = reward(RewardInputs(images=covers, titles=split_titles))  # (n,)
            other_rel = reward(
                RewardInputs(images=covers, titles=[split_titles[i] for i in shuffled.tolist()])
            )
            ref_rel = reward(RewardInputs(images=refs, titles=split_titles))
        own_cos = (gen_emb * ref_emb).sum(dim=1)
        other_cos = (gen_emb * ref_emb[shuffled]).sum(dim=1)
        report[split] = {
            "n_items": len(index),
            "image_cosine": float(own_cos.mean()),
            "image_cosine_shuffled": float(other_cos.mean()),
            "share_items_closer_to_own": float((own_cos > other_cos).float().mean()),
            "pixel_mae": float((covers - refs).abs().mean()),
            "pixel_mae_shuffled": float((covers - refs[shuffled]).abs().mean()),
            "relevance": float(own_rel.mean()),
            "relevance_shuffled_titles": float(other_rel.mean()),
            "relevance_of_reference_posters": float(ref_rel.mean()),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="dev box: encode items, write references and the split")
    p.add_argument("--dataset", choices=sorted(CONFIGS), required=True)
    p.add_argument("--data-dir", type=Path, default=None, help="MovieLens root (default: shared data)")
    p.add_argument("--sim-items", type=int, default=160, help="SimWorld items (eval.generation's default)")
    p.add_argument("--out", type=Path, required=True, help="e.g. .gpu/posters or .gpu/simworld")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=prepare)
    t = commands.add_parser("train", help="GPU host: warm up for --minutes, write covers")
    t.add_argument("--data", type=Path, default=Path(".gpu/posters"))
    t.add_argument(
        "--out", type=Path, required=True, help="covers.safetensors, train_summary.json, contact_sheet.png"
    )
    t.add_argument(
        "--work", type=Path, default=Path("/tmp/warmup_gpu"), help="checkpoints and the pipeline, per dataset"
    )
    t.add_argument("--minutes", type=float, default=4.0, help="wall-clock training budget")
    t.set_defaults(run=train)
    s = commands.add_parser("score", help="dev box: score the covers a train run wrote")
    s.add_argument("--data", type=Path, default=Path(".gpu/posters"))
    s.add_argument("--covers", type=Path, required=True, help="the train run's --out folder")
    s.add_argument("--out", type=Path, required=True, help="the JSON report to write")
    s.set_defaults(run=score)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
