"""Off-policy evaluation of cover policies judged against SimWorld's truth: `python -m eval.ope --out DIR`.

World and covers: the quickstart's (`--covers RUN`, default runs/quickstart; built there first with the
quickstart's own code path when missing, ~10 minutes once): each item has its original cover, its
generic generated cover and the 8 covers refreshed for the quickstart's cohorts (K = 10 candidates).
The impressions are the world's log (user, item, time); each replicate draws a fresh exploration log
on them (a cover uniform over the item's candidates, propensity 1/K, a click from the oracle on the
shown cover), fits the outcome model out-of-fold on it, and estimates each target policy's CTR:
- original, generic: the item's original / generic cover;
- own_cohort: the cover refreshed for the user's cohort (the quickstart's cohorts);
- reward_greedy: the candidate the quickstart's personalized reward model (its rewards stage) scores
  highest for the user.
Truth: each policy's expected CTR under the oracle on the same impressions. Reported per policy and
estimator: mean estimate, bias, RMSE, and the coverage of the 95% user-level bootstrap interval; the
DR ranking of the policies against the true ranking; and the exploration share of traffic the DR lift
over the original cover needs for a 95% CI half-width of 2% of the original CTR (from the estimator's
clustered variance on each replicate, checked against the spread of the DR lift across replicates and
against the a-priori formula that `icg-rec ab plan` uses).
"""

import argparse
import itertools
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy import stats

from icg_rec.data.sim import SimWorld
from icg_rec.data.sim.exploration import CoverExposure
from icg_rec.io import atomic_write, config_from_dict, read_json, write_json
from icg_rec.ope.covers import candidates_from_refresh
from icg_rec.ope.design import dr_lift_variance_prior, exploration_impressions
from icg_rec.ope.estimators import BanditLog, clustered_variance, round_terms
from icg_rec.ope.evaluate import OPEConfig, estimate_all, reward_scores
from icg_rec.ope.outcome import OutcomeConfig, candidate_features, fit_outcome_oof
from icg_rec.ope.policies import parse_policy, policy_context
from icg_rec.ranking.cover_arms import read_cover_run

TARGETS = ("original", "generic", "own_cohort", "reward_greedy")
REPORTED = ("ips", "snips", "dm", "dr", "dr_clipped")
LIFT_TARGETS = ("own_cohort", "reward_greedy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.ope", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/ope"))
    parser.add_argument("--covers", type=Path, default=Path("runs/quickstart"), help="quickstart folder")
    parser.add_argument("--replicates", type=int, default=50, help="fresh exploration logs")
    parser.add_argument("--n-boot", type=int, default=1000, help="user-level bootstrap replicates per CI")
    parser.add_argument(
        "--clip", type=float, default=5.0, help="weight clip of dr_clipped (weights are 0 or K)"
    )
    parser.add_argument(
        "--half-width", type=float, default=0.02, help="relative DR lift CI half-width to size for"
    )
    parser.add_argument("--outcome-epochs", type=int, default=3, help="reward-model passes per outcome fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    setup = _setup(args)
    t_setup = time.perf_counter() - start
    exposure, dists, context = setup["exposure"], setup["dists"], setup["context"]
    truth = {name: exposure.true_ctr(dists[name]) for name in TARGETS}
    print("true CTR: " + ", ".join(f"{k} {v:.4f}" for k, v in truth.items()), flush=True)

    n = exposure.impressions.height
    logging = parse_policy("uniform").probabilities(context)  # (n, K)
    users = exposure.impressions["user_id"].to_numpy()
    _, group_index = np.unique(users, return_inverse=True)
    config = OPEConfig(estimators=list(REPORTED), clip=args.clip, n_boot=args.n_boot)
    outcome = OutcomeConfig(epochs=args.outcome_epochs)
    features = candidate_features(setup["candidates"])
    z = stats.norm.isf(0.025)
    records, lift_records = [], []
    for rep in range(args.replicates):
        rng = np.random.default_rng([args.seed, rep])
        slots, labels = exposure.draw(logging, rng)
        log = BanditLog(labels, slots, logging[np.arange(n), slots], users)
        frame = exposure.impressions.with_columns(label=pl.Series(labels))
        q_hat = fit_outcome_oof(frame, slots, setup["candidates"], replace(outcome, seed=rep), features)
        config.seed = rep
        result = estimate_all(log, dists, q_hat, config, baseline="original")
        for policy, ests in result.items():
            for est, (value, lo, hi) in ests.items():
                records.append({"rep": rep, "policy": policy, "est": est, "value": value, "lo": lo, "hi": hi})
        base, _ = round_terms("dr", log, dists["original"], q_hat)
        for target in LIFT_TARGETS:
            terms, _ = round_terms("dr", log, dists[target], q_hat)
            variance = clustered_variance(terms - base, group_index)
            lift_records.append(
                {
                    "rep": rep,
                    "target": target,
                    "lift": float((terms - base).mean()),
                    "variance": variance,
                    "impressions": exploration_impressions(
                        variance, result["original"]["dr"][0], args.half_width
                    ),
                }
            )
        done = time.perf_counter() - start
        print(f"replicate {rep + 1}/{args.replicates}: {done:.0f} s", flush=True)

    frame = pl.DataFrame(records)
    seconds = time.perf_counter() - start
    summary = _summarize(frame, truth, pl.DataFrame(lift_records), setup, args, z)
    summary["seconds"] = round(seconds, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    summary["seconds_setup"] = round(t_setup, 1)
    summary["seconds_setup_parts"] = setup["laps"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "ope.json", summary)
    atomic_write(args.out / "report.md", lambda tmp: tmp.write_text(_report(summary, args)))
    g = summary["goals"]
    print(
        f"dr_coverage_min={g['dr_coverage_min']:.2f} dr_rel_rmse_max={g['dr_relative_rmse_max']:.3f} "
        f"ranking_agreement={g['dr_ranking_agreement']:.2f} dm_rel_bias_max={g['dm_relative_bias_max']:.3f} "
        f"exploration_share_own_cohort={summary['exploration']['own_cohort']['share_of_log']:.2f} "
        f"seconds={seconds:.0f}"
    )
    return 0


def _setup(args: argparse.Namespace) -> dict:
    """World, candidates, reward scores, exposure and the target policies' distributions."""
    from icg_rec.data.sim import SimConfig
    from icg_rec.pipeline.rewards import Rewards
    from icg_rec.quickstart import run_quickstart

    laps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        laps[name] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()

    folder = args.covers
    if not (folder / "quickstart.json").is_file():
        print(f"no quickstart in {folder}: running it once (about 10 minutes on 2 cores)", flush=True)
        run_quickstart(folder)
        lap("quickstart")
    run = read_cover_run(folder)
    world_config = read_json(folder / "quickstart.json")["config"]["world"]
    world = SimWorld.generate(config_from_dict(SimConfig, world_config, "quickstart.json [config.world]"))
    n_items = world.config.n_items
    candidates = candidates_from_refresh(np.arange(n_items), world.covers, folder / "refresh")
    if not np.array_equal(candidates.item_ids, np.arange(n_items)):
        raise SystemExit(f"{folder}/refresh does not cover every item of the world")
    lap("world_and_covers")

    reward = Rewards(folder / "rewards").personalized()
    lap("reward_model")
    exposure = CoverExposure.build(world, candidates.images, candidates.cover_ids)
    lap("oracle")
    users = exposure.impressions["user_id"].to_numpy()
    items = exposure.impressions["item_id"].to_numpy()
    cohort_of = dict(run.user_cohorts.iter_rows())
    context = policy_context(
        candidates,
        users,
        items,
        user_cohort=np.array([cohort_of[u] for u in users.tolist()]),
        scores=reward_scores(reward, candidates, users, items),
    )
    dists = {name: parse_policy(name).probabilities(context) for name in TARGETS}
    lap("reward_scores")
    print(f"setup seconds: {laps}", flush=True)
    return {
        "laps": laps,
        "world": world,
        "candidates": candidates,
        "exposure": exposure,
        "context": context,
        "dists": dists,
    }


def _summarize(
    frame: pl.DataFrame, truth: dict, lifts: pl.DataFrame, setup: dict, args: argparse.Namespace, z: float
) -> dict:
    policies = {}
    for name in TARGETS:
        ests = {}
        for est in REPORTED:
            rows = frame.filter((pl.col("policy") == name) & (pl.col("est") == est))
            v, lo, hi = (rows[c].to_numpy() for c in ("value", "lo", "hi"))
            t = truth[name]
            ests[est] = {
                "mean": float(v.mean()),
                "bias": float(v.mean() - t),
                "rmse": float(np.sqrt(((v - t) ** 2).mean())),
                "coverage": float(((lo <= t) & (t <= hi)).mean()),
                "relative_bias": float((v.mean() - t) / t),
                "relative_rmse": float(np.sqrt(((v - t) ** 2).mean()) / t),
                "ci_half_width": float(((hi - lo) / 2).mean()),
            }
        policies[name] = {"true_ctr": truth[name], "estimators": ests}

    # ranking: every pair whose true CTRs differ by more than 2% (relative), in every replicate
    pairs = [(a, b) for a, b in itertools.combinations(TARGETS, 2) if abs(truth[a] / truth[b] - 1) > 0.02]
    dr = frame.filter(pl.col("est") == "dr").pivot(on="policy", index="rep", values="value")
    agree = [
        float((np.sign(dr[a].to_numpy() - dr[b].to_numpy()) == np.sign(truth[a] - truth[b])).mean())
        for a, b in pairs
    ]
    all_agree = np.ones(dr.height, dtype=bool)
    for a, b in pairs:
        all_agree &= np.sign(dr[a].to_numpy() - dr[b].to_numpy()) == np.sign(truth[a] - truth[b])

    exposure, dists, context = setup["exposure"], setup["dists"], setup["context"]
    logging = parse_policy("uniform").probabilities(context)
    n_log = exposure.impressions.height
    exploration = {}
    for target in LIFT_TARGETS:
        rows = lifts.filter(pl.col("target") == target)
        true_lift = truth[target] - truth["original"]
        lift = rows["lift"].to_numpy()
        lift_ci = frame.filter((pl.col("policy") == target) & (pl.col("est") == "dr_lift"))
        covered = (lift_ci["lo"].to_numpy() <= true_lift) & (true_lift <= lift_ci["hi"].to_numpy())
        needed = float(np.median(rows["impressions"].to_numpy()))
        prior_variance = dr_lift_variance_prior(truth["original"], dists[target], dists["original"], logging)
        exploration[target] = {
            "true_lift": true_lift,
            "relative_true_lift": true_lift / truth["original"],
            "dr_lift_mean": float(lift.mean()),
            "dr_lift_ci_coverage": float(covered.mean()),
            "impressions_needed": needed,
            "share_of_log": needed / n_log,
            "impressions_needed_prior": exploration_impressions(
                prior_variance, truth["original"], args.half_width
            ),
            "predicted_half_width_at_log": float(z * np.sqrt(rows["variance"].to_numpy().mean() / n_log)),
            "empirical_half_width_at_log": float(z * lift.std(ddof=1)),
            "relative_half_width_at_log": float(z * lift.std(ddof=1) / truth["original"]),
        }
    dr_rows = [policies[p]["estimators"]["dr"] for p in TARGETS]
    return {
        "policies": policies,
        "replicates": args.replicates,
        "goals": {
            "dr_coverage_min": min(r["coverage"] for r in dr_rows),
            "dr_relative_rmse_max": max(r["relative_rmse"] for r in dr_rows),
            "dr_ranking_agreement": float(all_agree.mean()),
            "dr_ranking_pairs": [f"{a}>{b}" if truth[a] > truth[b] else f"{b}>{a}" for a, b in pairs],
            "dr_ranking_agreement_per_pair": agree,
            "dm_relative_bias_max": max(
                abs(policies[p]["estimators"]["dm"]["relative_bias"]) for p in TARGETS
            ),
        },
        "exploration": exploration,
        "config": {
            "covers": str(args.covers),
            "impressions": n_log,
            "users": int(exposure.impressions["user_id"].n_unique()),
            "candidates_per_item": int(setup["candidates"].n_slots),
            "logging_policy": "uniform",
            "clip": args.clip,
            "n_boot": args.n_boot,
            "outcome_epochs": args.outcome_epochs,
            "half_width": args.half_width,
            "seed": args.seed,
        },
    }


def _report(s: dict, args: argparse.Namespace) -> str:
    c, g = s["config"], s["goals"]
    lines = [
        "# Off-policy evaluation of cover policies on SimWorld",
        "",
        f"Quickstart world and covers from `{c['covers']}`: {c['impressions']:,} impressions of {c['users']:,} users, "
        f"{c['candidates_per_item']} candidate covers per item (original, generic, one per cohort). "
        f"{s['replicates']} replicate exploration logs (uniform over the candidates, propensity 1/{c['candidates_per_item']}; "
        f"fresh cover choices and oracle clicks), {c['n_boot']} user-level bootstrap draws per interval, "
        f"dr_clipped clips weights at {c['clip']:g}. Total {s['seconds']:.0f} s wall, {s['cpu_seconds']:.0f} CPU s "
        f"(setup {s['seconds_setup']:.0f} s: {s['seconds_setup_parts']}).",
        "",
        "| policy | true CTR | estimator | mean | bias | relative RMSE | 95% CI coverage | mean CI half-width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in s["policies"].items():
        for est, e in p["estimators"].items():
            lines.append(
                f"| `{name}` | {p['true_ctr']:.4f} | {est} | {e['mean']:.4f} | {e['bias']:+.4f} | "
                f"{e['relative_rmse']:.1%} | {e['coverage']:.2f} | {e['ci_half_width']:.4f} |"
            )
    lines += [
        "",
        "## Goals",
        "",
        f"- DR 95% CI coverage >= 0.90 for every policy: min {g['dr_coverage_min']:.2f}.",
        f"- DR relative RMSE <= 5%: max {g['dr_relative_rmse_max']:.1%}.",
        f"- DR ranks every pair of policies whose true CTRs differ by > 2% like the oracle: "
        f"{g['dr_ranking_agreement']:.0%} of replicates (pairs {g['dr_ranking_pairs']}, per pair "
        f"{[round(a, 2) for a in g['dr_ranking_agreement_per_pair']]}).",
        f"- DM alone: largest relative bias {g['dm_relative_bias_max']:.1%} (the outcome model is fitted on the "
        "exploration log itself; where it is wrong, DR's weighted residuals correct it).",
        "",
        f"## Exploration needed for a DR lift CI half-width of {args.half_width:.0%} of the original CTR",
        "",
        "| target | true lift | DR lift CI coverage | impressions needed (pilot variance) | share of the world's log | "
        "a-priori formula (ab plan) | predicted / empirical half-width at the log's size |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, e in s["exploration"].items():
        lines.append(
            f"| `{target}` | {e['true_lift']:+.4f} ({e['relative_true_lift']:+.1%}) | {e['dr_lift_ci_coverage']:.2f} | "
            f"{e['impressions_needed']:,.0f} | {e['share_of_log']:.1f}x | {e['impressions_needed_prior']:,.0f} | "
            f"{e['predicted_half_width_at_log']:.4f} / {e['empirical_half_width_at_log']:.4f} |"
        )
    lines += [
        "",
        "Share of the world's log = impressions needed / the world's impressions (uniform exploration over "
        f"{c['candidates_per_item']} covers). Above 1x, the whole log's traffic for its whole period is not enough: "
        "explore longer, or narrow the exploration to the covers the test compares.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
