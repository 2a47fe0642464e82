"""Reward-model evidence: `python -m eval.rewards --out out/rewards` writes rewards.json and report.md.

MovieLens (ml-latest-small with posters) and SimWorld, each on the warm temporal protocol (every user's
last 20% of rows by time are the test set):
- personalized: AUC / gAUC / log loss / ECE of PersonalizedRewardModel against a popularity baseline, an
  id-only matrix factorization and a non-personalized cover model (the same model, no user side), with
  user-level paired bootstrap intervals of the gAUC differences.
  SimWorld adds the oracle agreement: the oracle's own AUC on the test labels, the model's AUC as a
  share of it, and the Spearman correlation of the model's scores with the oracle probabilities, and
  the ceilings (`oracle_ceilings`): how much of the oracle's AUC is reachable from the training log.
- relevance: title -> cover retrieval recall@1/@10 of RelevanceModel on held-out items (20%, by item).
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
from torch.nn import functional as F

from icg_rec.data.movielens import load_movielens_with_posters
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.data.sim.oracle import visual_attributes
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.encoders import EfficientNetLite0Encoder, EmbeddingCache, MiniLMTextEncoder, embed_items
from icg_rec.encoders.items import item_texts
from icg_rec.io import read_json, write_json
from icg_rec.metrics import auc, ece, gauc, logloss
from icg_rec.metrics.stats import bootstrap_ci, paired_bootstrap
from icg_rec.rewards.baselines import MatrixFactorizationBaseline, PopularityBaseline
from icg_rec.rewards.personalized import CoverFeatures, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel

MACHINE = "dev box: 2-core CPU, no GPU"


def scores(test: pl.DataFrame, p: np.ndarray) -> dict:
    """AUC, gAUC (by user), log loss and ECE of probabilities `p` on the test rows."""
    y = test["label"].to_numpy()
    g = gauc(y, p, test["user_id"].to_numpy())
    return {
        "auc": auc(y, p),
        "gauc": g.value,
        "gauc_users": g.n_groups,
        "logloss": logloss(y, p),
        "ece": ece(y, p),
    }


def personalized_block(
    train: pl.DataFrame, test: pl.DataFrame, covers: CoverFeatures, config: PersonalizedConfig, seed: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Fits the model and its baselines on `train`; returns metrics and the test predictions."""
    preds, seconds = {}, {}
    fits = {
        "personalized": lambda: PersonalizedRewardModel(config).fit(train, covers, seed=seed, progress=True),
        "cover_only": lambda: PersonalizedRewardModel(replace(config, use_user=False)).fit(
            train, covers, seed=seed
        ),
    }
    for name, fit in fits.items():
        t = time.perf_counter()
        preds[name] = fit().predict(test, covers)
        seconds[name] = time.perf_counter() - t
    t = time.perf_counter()
    preds["popularity"] = PopularityBaseline().fit(train).predict(test)
    seconds["popularity"] = time.perf_counter() - t
    t = time.perf_counter()
    preds["id_mf"] = MatrixFactorizationBaseline().fit(train, seed=seed).predict(test)
    seconds["id_mf"] = time.perf_counter() - t
    block = {**scores(test, preds["personalized"]), "fit_seconds": seconds["personalized"]}
    block["config"] = asdict(config)
    block["baselines"] = {
        k: {**scores(test, preds[k]), "fit_seconds": seconds[k]}
        for k in ("popularity", "id_mf", "cover_only")
    }
    y, users = test["label"].to_numpy(), test["user_id"].to_numpy()
    block["gauc_minus_baseline"] = {}  # user-level paired bootstrap, 1000 replicates
    for k in block["baselines"]:
        boot = paired_bootstrap(y, preds[k], preds["personalized"], users, "gauc", n_boot=1000, seed=seed)
        block["gauc_minus_baseline"][k] = {
            "delta": boot.delta,
            "ci95": list(boot.ci95),
            "p_value": boot.p_value,
        }
    return block, preds


def relevance_block(text: np.ndarray, image: np.ndarray, seed: int, config: RelevanceConfig) -> dict:
    """Fits RelevanceModel on 80% of items and reports retrieval on the other 20%."""
    order = np.random.default_rng(seed).permutation(len(text))
    n_test = len(text) // 5
    held, fit_rows = order[:n_test], order[n_test:]
    model = RelevanceModel(config).fit(text[fit_rows], image[fit_rows], seed=seed)
    return {**model.recall_at_k(text[held], image[held]), "n_train": len(fit_rows)}


def movielens(args: argparse.Namespace, cache: EmbeddingCache) -> dict:
    dataset = load_movielens_with_posters(args.data_dir)
    text, image = embed_items(
        dataset.items, MiniLMTextEncoder(), EfficientNetLite0Encoder(), cache, progress=True
    )
    covers = CoverFeatures(dataset.items["item_id"].to_numpy(), image, titles=text)
    train, test = per_user_temporal_split(dataset.interactions, 0.2)
    # chosen on a validation split carved from train (each user's last 25% of train rows): the taste
    # posterior lowered validation gAUC here (0.6727 with it, 0.6752 without; popularity 0.6708)
    config = PersonalizedConfig(epochs=args.epochs, lr=1e-3, use_history=False)
    block, _ = personalized_block(train, test, covers, config, args.seed)
    rel = relevance_block(text, image, args.seed, RelevanceConfig())
    return {"rows": {"train": train.height, "test": test.height}, "personalized": block, "relevance": rel}


def simworld(args: argparse.Namespace) -> dict:
    world = SimWorld.generate(
        SimConfig(n_users=args.sim_users, impressions_per_user=args.sim_impressions, seed=args.sim_seed)
    )
    inter = world.dataset.interactions.with_columns(
        oracle_p=pl.Series(world.impression_prob.double().numpy())
    )
    train, test = per_user_temporal_split(inter, 0.2)
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
        "embedding": (
            CoverFeatures(item_ids, image),
            PersonalizedConfig(epochs=args.epochs, lr=1e-3),
        ),
        "cnn": (
            CoverFeatures(item_ids, world.covers.numpy()),
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
        covers, config = variants[name]
        block, preds = personalized_block(train.drop("oracle_p"), test, covers, config, args.seed)
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
    text = MiniLMTextEncoder().encode(item_texts(world.dataset.items))
    out["relevance"] = relevance_block(text, image, args.seed, RelevanceConfig())
    return out


def oracle_ceilings(world: SimWorld, train: pl.DataFrame, test: pl.DataFrame) -> dict:
    """Test AUC of oracle-built predictors that know less and less of each user, as shares of the oracle's.

    Every predictor knows the world's item-side truth (quality, genre, cover attributes) and each cohort's
    taste centroid and genre vector (the cohort mean of the users' genre affinities); the cohort logit
    L[c, i] = quality_i + genre_c[genre_i] + taste_scale * <centroid_c, attributes_i>. Then
    - cohort_known: each user's true cohort and true bias (only the individual deviation is missing);
    - posterior_true_bias: a Bayes posterior over the cohorts from the user's TRAIN rows (clicks and
      non-clicks), with the user's true bias, scoring by the posterior-expected probability;
    - posterior: the same with the bias unknown too (posterior over cohort x a 41-point grid of the
      bias prior). Nothing individual is known here, so this bounds what a model fitted on this log can
      reach (approximately: it treats the users' deviations as 0 and knows the world's parameters).

    Args:
        world: the SimWorld the rows come from.
        train: its training rows (user_id, item_id, label).
        test: its test rows (user_id, item_id, label, oracle_p).

    Returns:
        {name: {"auc", "share_of_oracle_auc"}} plus the cohort accuracy of the posteriors' argmax.
    """
    oracle, cfg = world.oracle, world.config
    cohort = world.user_cohort  # (n_users,)
    with torch.no_grad():
        z = oracle.standardize(visual_attributes(world.covers))  # (n_items, A)
        genre = torch.stack(
            [oracle.user_genre_affinity[cohort == c].mean(dim=0) for c in range(cfg.n_cohorts)]
        )  # (C, G) cohort genre vectors
        cohort_logit = (
            oracle.item_quality + genre[:, oracle.item_genre] + oracle.taste_scale * oracle.cohort_taste @ z.T
        )  # (C, n_items)
    tu, ti = (torch.tensor(train[c].to_numpy()) for c in ("user_id", "item_id"))
    ty = torch.tensor(train["label"].to_numpy(), dtype=torch.float32)
    su, si = (torch.tensor(test[c].to_numpy()) for c in ("user_id", "item_id"))
    y, oracle_auc = test["label"].to_numpy(), auc(test["label"].to_numpy(), test["oracle_p"].to_numpy())

    def posterior_p(bias: torch.Tensor, log_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bias (n_users, B) grid with log prior (B,): test probabilities (n_test,), cohort accuracy."""
        x = bias[tu][:, None, :] + cohort_logit[:, ti].T[:, :, None]  # (n_train, C, B)
        loglik = -F.binary_cross_entropy_with_logits(x, ty[:, None, None].expand_as(x), reduction="none")
        total = torch.zeros(oracle.n_users, *x.shape[1:]).index_add_(0, tu, loglik) + log_prior  # (U, C, B)
        post = torch.softmax(total.flatten(1), dim=1).reshape(total.shape)  # (U, C, B)
        xs = bias[su][:, None, :] + cohort_logit[:, si].T[:, :, None]  # (n_test, C, B)
        accuracy = (post.sum(dim=2).argmax(dim=1) == cohort).float().mean().item()
        return (post[su] * torch.sigmoid(xs)).sum(dim=(1, 2)), accuracy

    with torch.no_grad():
        known = torch.sigmoid(oracle.user_bias[su] + cohort_logit[cohort[su], si])  # (n_test,)
        true_bias, acc_true = posterior_p(oracle.user_bias[:, None], torch.zeros(1))
        grid = cfg.base_logit + cfg.user_bias_sd * torch.linspace(-4.0, 4.0, 41)  # (B,)
        log_prior = -0.5 * ((grid - cfg.base_logit) / cfg.user_bias_sd) ** 2
        unknown, acc = posterior_p(grid.expand(oracle.n_users, -1), log_prior)
    out = {}
    for name, p in (("cohort_known", known), ("posterior_true_bias", true_bias), ("posterior", unknown)):
        value = auc(y, p.double().numpy())
        out[name] = {"auc": value, "share_of_oracle_auc": value / oracle_auc}
    out["posterior_true_bias"]["cohort_accuracy"] = acc_true
    out["posterior"]["cohort_accuracy"] = acc
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
            rows = {key: b, **{f"  {n}": v for n, v in b["baselines"].items()}}
            for name, m in rows.items():
                lines.append(
                    f"| {name} | {m['auc']:.4f} | {m['gauc']:.4f} | {m['logloss']:.4f} | {m['ece']:.4f} "
                    f"| {m['fit_seconds']:.0f} |"
                )
            lines.append("")
            for name, d in b["gauc_minus_baseline"].items():
                lines.append(
                    f"- gAUC personalized - {name}: {d['delta']:+.4f} "
                    f"(95% CI [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}], p = {d['p_value']:.3f})"
                )
            if "oracle_agreement" in b:
                a = b["oracle_agreement"]
                share = f"{100 * a['share_of_oracle_auc']:.1f}% of it"
                if "share_of_oracle_auc_ci95" in a:
                    lo, hi = a["share_of_oracle_auc_ci95"]
                    share += f", 95% CI [{100 * lo:.1f}%, {100 * hi:.1f}%]"
                lines.append(
                    f"\n{key}: oracle AUC {r['oracle_auc']:.4f}; model {a['auc_vs_oracle_labels']:.4f} "
                    f"({share}); "
                    f"Spearman vs oracle p {a['spearman_vs_oracle_p']:.3f}\n"
                )
        if "ceilings" in r:
            lines.append(
                f"ceilings ({r['impressions_per_user']} impressions per user): "
                + ", ".join(
                    f"{name} {c['auc']:.4f} ({100 * c['share_of_oracle_auc']:.1f}%)"
                    for name, c in r["ceilings"].items()
                )
                + "\n"
            )
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


def sim_key(args: argparse.Namespace) -> str:
    """Result key of a SimWorld run: a denser or sparser world is a separate, labelled setting."""
    default = args.sim_impressions == SimConfig.impressions_per_user
    return "simworld" if default else f"simworld_impressions{args.sim_impressions}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    path = args.out / "rewards.json"
    # datasets may be run in separate invocations: results for other datasets already in the file are kept
    result: dict = read_json(path) if path.is_file() else {}
    result.update({"machine": MACHINE, "seed": args.seed})
    if "movielens" in args.datasets:
        result["movielens"] = movielens(args, EmbeddingCache(args.cache_dir))
    if "simworld" in args.datasets:
        result[sim_key(args)] = simworld(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    report = write_report(result, args.out)
    print(report.read_text())
    keys = [sim_key(args) if ds == "simworld" else ds for ds in args.datasets]
    summary = {key: round(result[key]["personalized"]["gauc"], 4) for key in keys}
    print(f"wrote {path}; personalized gAUC {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
