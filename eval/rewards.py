"""Reward-model evidence: `python -m eval.rewards --out out/rewards` writes rewards.json and report.md.

MovieLens (ml-latest-small with posters) and SimWorld, each on the warm temporal protocol (every user's
last 20% of rows by time are the test set). The personalized block is the rewards stage's metrics
(`icg_rec.pipeline.rewards`: AUC / gAUC / log loss / ECE against popularity and id-only MF, with
user-level paired bootstrap CIs of the gAUC differences) plus what only an evaluation needs: a
non-personalized cover model (the same model, no user side), on SimWorld the oracle agreement (its AUC
on the test labels, the model's share of it, Spearman with the oracle's probabilities) and the ceilings
of what the training log allows; and title -> cover retrieval recall of RelevanceModel on held-out items.
Image features are frozen EfficientNet-Lite0 embeddings, text features MiniLM, through the cache.
"""

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.data.sim.ceilings import oracle_ceilings
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.encoders import EfficientNetLite0Encoder, EmbeddingCache, MiniLMTextEncoder, embed_items
from icg_rec.encoders.items import item_texts
from icg_rec.io import read_json, write_json
from icg_rec.metrics import auc
from icg_rec.metrics.stats import bootstrap_ci, paired_bootstrap
from icg_rec.pipeline.rewards import baseline_predictions, reward_metrics
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel

MACHINE = "dev box: 2-core CPU, no GPU"


def personalized_block(train: pl.DataFrame, test: pl.DataFrame, covers: CoverInputs, config, seed: int):
    """The stage's metrics plus the cover-only model, with fit times; returns the block and the predictions."""
    fits = {
        "personalized": lambda: PersonalizedRewardModel(config).fit(train, covers, seed=seed, progress=True),
        "cover_only": lambda: PersonalizedRewardModel(replace(config, use_user=False)).fit(
            train, covers, seed=seed
        ),
    }
    preds, seconds = {}, {}
    for name, fit in fits.items():
        t = time.perf_counter()
        preds[name] = fit().predict(test, covers)
        seconds[name] = time.perf_counter() - t
    t = time.perf_counter()
    preds.update(baseline_predictions(train, test, seed))
    seconds["popularity"] = seconds["id_mf"] = time.perf_counter() - t  # both baselines together
    block = {
        **reward_metrics(test, preds, seed=seed),
        "fit_seconds": seconds["personalized"],
        "config": asdict(config),
    }
    for name, values in block["baselines"].items():
        values["fit_seconds"] = seconds[name]
    return block, preds


def relevance_block(text: np.ndarray, image: np.ndarray, seed: int) -> dict:
    """Fits RelevanceModel on 80% of items and reports retrieval on the other 20%."""
    order = np.random.default_rng(seed).permutation(len(text))
    held, fit_rows = order[: len(text) // 5], order[len(text) // 5 :]
    model = RelevanceModel(RelevanceConfig()).fit(text[fit_rows], image[fit_rows], seed=seed)
    return {**model.recall_at_k(text[held], image[held]), "n_train": len(fit_rows)}


def movielens(args: argparse.Namespace) -> dict:
    from icg_rec.data.movielens import load_movielens_with_posters

    dataset = load_movielens_with_posters(args.data_dir)
    cache = EmbeddingCache(args.cache_dir)
    text, image = embed_items(
        dataset.items, MiniLMTextEncoder(), EfficientNetLite0Encoder(), cache, progress=True
    )
    covers = CoverInputs(dataset.items["item_id"].to_numpy(), image, titles=text)
    train, test = per_user_temporal_split(dataset.interactions, 0.2)
    # chosen on a validation split carved from train (each user's last 25% of train rows): the taste
    # posterior lowered validation gAUC here (0.6727 with it, 0.6752 without; popularity 0.6708)
    block, _ = personalized_block(
        train, test, covers, PersonalizedConfig(epochs=args.epochs, lr=1e-3, use_history=False), args.seed
    )
    return {
        "rows": {"train": train.height, "test": test.height},
        "personalized": block,
        "relevance": relevance_block(text, image, args.seed),
    }


def simworld(args: argparse.Namespace) -> dict:
    world = SimWorld.generate(
        SimConfig(n_users=args.sim_users, impressions_per_user=args.sim_impressions, seed=args.sim_seed)
    )
    log = world.dataset.interactions.with_columns(oracle_p=pl.Series(world.impression_prob.double().numpy()))
    train, test = per_user_temporal_split(log, 0.2)
    encoder = EfficientNetLite0Encoder().freeze()
    with torch.no_grad():
        image = torch.cat(
            [encoder(world.covers[s : s + 64]) for s in range(0, len(world.covers), 64)]
        ).numpy()
    item_ids = world.dataset.items["item_id"].to_numpy()
    y, oracle_p, users = (test[c].to_numpy() for c in ("label", "oracle_p", "user_id"))
    oracle_auc = auc(y, oracle_p)
    out: dict = {
        "rows": {"train": train.height, "test": test.height},
        "impressions_per_user": args.sim_impressions,
        "oracle_auc": oracle_auc,
        "ceilings": oracle_ceilings(world, train, test),
    }
    # lr 1e-3 chosen on a validation carve-out of train (each user's last 25% of train rows): better than
    # 3e-3 for the embedding tower at 40 impressions per user and the cnn tower at 120
    variants = {
        "embedding": (CoverInputs(item_ids, image), PersonalizedConfig(epochs=args.epochs, lr=1e-3)),
        "cnn": (
            CoverInputs(item_ids, world.covers.numpy()),
            PersonalizedConfig(
                cover_tower="cnn",
                image_size=world.config.image_size,
                epochs=args.epochs,
                lr=1e-3,
                batch_size=4096,
            ),
        ),
    }
    for name in args.sim_towers:
        block, preds = personalized_block(train.drop("oracle_p"), test, *variants[name], args.seed)
        p = preds["personalized"]
        # user-level bootstrap (1000 replicates): the model's AUC, and its paired gap to the oracle's AUC;
        # the share's interval holds the oracle's AUC at its point value: (oracle + gap bounds) / oracle
        model_ci = bootstrap_ci(y, p, users, "auc", n_boot=1000, seed=args.seed)
        gap = paired_bootstrap(y, oracle_p, p, users, "auc", n_boot=1000, seed=args.seed)
        block["oracle_agreement"] = {
            "auc_vs_oracle_labels": auc(y, p),
            "auc_ci95": list(model_ci.ci95),
            "share_of_oracle_auc": auc(y, p) / oracle_auc,
            "auc_minus_oracle": {"delta": gap.delta, "ci95": list(gap.ci95)},
            "share_of_oracle_auc_ci95": [(oracle_auc + d) / oracle_auc for d in gap.ci95],
            "spearman_vs_oracle_p": float(spearmanr(p, oracle_p).statistic),
        }
        out[f"personalized_{name}"] = block
    out["personalized"] = out[f"personalized_{args.sim_towers[0]}"]
    out["relevance"] = relevance_block(
        MiniLMTextEncoder().encode(item_texts(world.dataset.items)), image, args.seed
    )
    return out


def write_report(result: dict, folder: Path) -> Path:
    lines = [f"# Rewards ({MACHINE})", ""]
    for ds in [k for k in result if k == "movielens" or k.startswith("simworld")]:
        r = result[ds]
        lines += [
            f"## {ds}",
            "",
            "| model | AUC | gAUC | log loss | ECE | fit s |",
            "|---|---|---|---|---|---|",
        ]
        for key in [k for k in r if k.startswith("personalized_")] or ["personalized"]:
            b = r[key]
            for name, m in {key: b, **{f"  {n}": v for n, v in b["baselines"].items()}}.items():
                lines.append(
                    f"| {name} | {m['auc']:.4f} | {m['gauc']:.4f} | {m['logloss']:.4f} | {m['ece']:.4f} | {m['fit_seconds']:.0f} |"
                )
            lines += [""] + [
                f"- gAUC personalized - {n}: {d['delta']:+.4f} (95% CI [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}], "
                f"p = {d['p_value']:.3f})"
                for n, d in b["gauc_minus_baseline"].items()
            ]
            if a := b.get("oracle_agreement"):
                lo, hi = a["share_of_oracle_auc_ci95"]
                lines.append(
                    f"\n{key}: oracle AUC {r['oracle_auc']:.4f}; model {a['auc_vs_oracle_labels']:.4f} "
                    f"({100 * a['share_of_oracle_auc']:.1f}% of it, 95% CI [{100 * lo:.1f}%, {100 * hi:.1f}%]); "
                    f"Spearman vs oracle p {a['spearman_vs_oracle_p']:.3f}\n"
                )
        if "ceilings" in r:
            cells = ", ".join(
                f"{n} {c['auc']:.4f} ({100 * c['share_of_oracle_auc']:.1f}%)"
                for n, c in r["ceilings"].items()
            )
            lines.append(f"ceilings ({r['impressions_per_user']} impressions per user): {cells}\n")
        rel = r["relevance"]
        lines += [
            "",
            f"relevance (held-out items, n={rel['n']}): recall@1 {rel['recall@1']:.3f} (chance {rel['chance@1']:.3f}), "
            f"recall@10 {rel['recall@10']:.3f} (chance {rel['chance@10']:.3f})",
            "",
        ]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.rewards", description=__doc__)
    parser.add_argument(
        "--datasets", nargs="+", choices=["movielens", "simworld"], default=["movielens", "simworld"]
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared box)"
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sim-users", type=int, default=2000)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument(
        "--sim-impressions",
        type=int,
        default=SimConfig.impressions_per_user,
        help="items shown to each user; other than the default, results go under simworld_impressions{N}",
    )
    parser.add_argument("--sim-towers", nargs="+", choices=["embedding", "cnn"], default=["embedding", "cnn"])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "icg_rec")
    parser.add_argument("--out", type=Path, default=Path("out/rewards"))
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    path = args.out / "rewards.json"
    # datasets may be run in separate invocations: results for other datasets already in the file are kept
    result: dict = {**(read_json(path) if path.is_file() else {}), "machine": MACHINE, "seed": args.seed}
    sim = (
        "simworld"
        if args.sim_impressions == SimConfig.impressions_per_user
        else f"simworld_impressions{args.sim_impressions}"
    )
    if "movielens" in args.datasets:
        result["movielens"] = movielens(args)
    if "simworld" in args.datasets:
        result[sim] = simworld(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    print(write_report(result, args.out).read_text())
    summary = {
        key: round(result[key]["personalized"]["gauc"], 4)
        for key in (sim if ds == "simworld" else ds for ds in args.datasets)
    }
    print(f"wrote {path}; personalized gAUC {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
