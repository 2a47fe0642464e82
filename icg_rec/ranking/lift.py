"""Lift experiments: the same ranker, the same split, a baseline feature set against treatments, over seeds.

Per seed every arm is trained with that seed (and the same early-stopping rows), and predicts the
test rows. An arm's AUC / gAUC / logloss are computed on its seed-averaged predictions; the AUC delta
of a treatment gets a 95% CI and p-value from a user-level paired bootstrap on those averaged
predictions, and the per-seed deltas are reported beside it (mean, sd, how many seeds are positive).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from icg_rec.errors import SchemaError
from icg_rec.features.frames import (
    add_target_stats,
    add_taste_cosine,
    attach_item_vectors,
    pca_item_vectors,
)
from icg_rec.figures import new_figure, save_figure
from icg_rec.io import atomic_write, write_json
from icg_rec.metrics import auc, calibration_table, format_relaimpr, gauc, logloss, relaimpr
from icg_rec.metrics.stats import paired_bootstrap
from icg_rec.ranking.base import FeatureSpec, Ranker


@dataclass
class LiftConfig:
    baseline: str = "base"  # arm every other arm is compared with
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # one training run per arm per seed
    valid_fraction: float = 0.1  # training rows held out at random per seed for early stopping (0 = none)
    n_boot: int = 1000  # user-level bootstrap resamples for the AUC-delta CI and p-value
    bootstrap_seed: int = 0  # seeds the bootstrap


@dataclass
class ItemVectors:
    """One kind of item vector to turn into features: `{name}_pca` and `{name}_taste` columns."""

    name: str  # column prefix, e.g. "text" or "poster"
    item_ids: np.ndarray  # (n_items,) int64
    vectors: np.ndarray  # (n_items, D) float
    pca_dim: int  # width of the `{name}_pca` embedding column


@dataclass
class ArmResult:
    auc: float  # AUC of the seed-averaged predictions
    gauc: float  # user-grouped AUC of the seed-averaged predictions
    logloss: float  # logloss of the seed-averaged predictions
    auc_per_seed: list[float]  # AUC of each seed's predictions
    predictions: np.ndarray  # (n_test,) seed-averaged p(click)


@dataclass
class TreatmentLift:
    relaimpr: float | None  # RelaImpr of the treatment's AUC over the baseline's; None: baseline AUC <= 0.5
    auc_delta: float  # treatment AUC - baseline AUC (averaged predictions)
    ci95: tuple[float, float]  # user-level paired bootstrap interval of auc_delta
    p_value: float  # bootstrap p-value of auc_delta != 0
    delta_per_seed: list[float]  # treatment - baseline AUC, seed by seed


@dataclass
class LiftResult:
    n_train: int  # training rows (before the early-stopping hold-out)
    n_test: int  # test rows
    labels: np.ndarray  # (n_test,) test labels
    groups: np.ndarray  # (n_test,) user id of each test row
    arms: dict[str, ArmResult]
    lift: dict[str, TreatmentLift]  # one entry per arm other than the baseline


def build_lift_frames(
    train: pl.DataFrame, test: pl.DataFrame, item_vectors: list[ItemVectors], n_folds: int = 5, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Adds the features lift arms choose from: id target statistics, PCA vectors and taste cosines.

    Columns: `user_id_ctr`, `item_id_ctr`, `user_id_log_n`, `item_id_log_n` (out-of-fold on train);
    per ItemVectors `{name}_pca` (PCA fitted on training items only) and `{name}_taste` (taste cosine
    over the vectors centred on the training-item mean, out-of-fold on train).

    Args:
        train: training interactions.
        test: test interactions.
        item_vectors: the item vectors to featurize; must cover every item of train and test.
        n_folds: K of the out-of-fold scheme.
        seed: seeds folds and PCA.

    Returns:
        (train, test) with the feature columns added.
    """
    train, test = add_target_stats(train, test, n_folds=n_folds, seed=seed)
    train_items = np.unique(train["item_id"].to_numpy())
    for vec in item_vectors:
        reduced = pca_item_vectors(vec.item_ids, vec.vectors, train_items, vec.pca_dim, seed=seed)
        train = attach_item_vectors(train, vec.item_ids, reduced, f"{vec.name}_pca")
        test = attach_item_vectors(test, vec.item_ids, reduced, f"{vec.name}_pca")
        centred = vec.vectors - vec.vectors[np.isin(vec.item_ids, train_items)].mean(axis=0)
        train, test = add_taste_cosine(
            train, test, vec.item_ids, centred, f"{vec.name}_taste", n_folds=n_folds, seed=seed
        )
    return train, test


def run_lift(
    train: pl.DataFrame,
    test: pl.DataFrame,
    arms: dict[str, FeatureSpec],
    make_ranker: Callable[[], Ranker],
    config: LiftConfig | None = None,
    group: str = "user_id",
    progress: bool = True,
) -> LiftResult:
    """Trains every arm on every seed and compares each treatment with the baseline.

    Args:
        train: training frame holding every column the arms name.
        test: test frame with the same columns.
        arms: arm name -> FeatureSpec; must include `config.baseline`.
        make_ranker: builds a fresh, unfitted ranker (same settings for every arm).
        config: seeds, early-stopping hold-out, bootstrap settings.
        group: column whose values are the bootstrap clusters and gAUC groups.
        progress: show a tqdm bar over (seed, arm) runs.

    Returns:
        A LiftResult with per-arm metrics and per-treatment lift.
    """
    config = config or LiftConfig()
    if config.baseline not in arms:
        raise SchemaError(f"baseline arm {config.baseline!r} is not among the arms {sorted(arms)}")
    if not config.seeds:
        raise ValueError("LiftConfig.seeds is empty; give at least one seed")
    labels = test[arms[config.baseline].label].cast(pl.Float64).to_numpy()
    groups = test[group].to_numpy()
    per_seed = {name: [] for name in arms}
    bar = tqdm(total=len(config.seeds) * len(arms), desc="lift runs", disable=not progress)
    for seed in config.seeds:
        fit_rows, valid = _hold_out(train, config.valid_fraction, seed)
        for name, spec in arms.items():
            ranker = make_ranker().fit(fit_rows, spec, valid=valid, seed=seed)
            per_seed[name].append(ranker.predict(test))
            bar.update(1)
    bar.close()

    results = {}
    for name, preds in per_seed.items():
        mean = np.mean(preds, axis=0)  # (n_test,)
        results[name] = ArmResult(
            auc=float(auc(labels, mean)),
            gauc=float(gauc(labels, mean, groups).value),
            logloss=float(logloss(labels, mean)),
            auc_per_seed=[float(auc(labels, p)) for p in preds],
            predictions=mean,
        )
    base = results[config.baseline]
    lift = {}
    for name, arm in results.items():
        if name == config.baseline:
            continue
        boot = paired_bootstrap(
            labels, base.predictions, arm.predictions, groups, auc, config.n_boot, config.bootstrap_seed
        )
        lift[name] = TreatmentLift(
            relaimpr=relaimpr(arm.auc, base.auc),
            auc_delta=arm.auc - base.auc,
            ci95=(float(boot.ci95[0]), float(boot.ci95[1])),
            p_value=float(boot.p_value),
            delta_per_seed=[t - b for t, b in zip(arm.auc_per_seed, base.auc_per_seed, strict=True)],
        )
    return LiftResult(len(train), len(test), labels, groups, results, lift)


def per_user_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict:
    """AUC per group, for groups that hold both a click and a non-click (others are left out)."""
    order = np.argsort(groups, kind="stable")
    keys, starts = np.unique(groups[order], return_index=True)
    out = {}
    for key, rows in zip(keys, np.split(order, starts[1:]), strict=True):
        if 0 < labels[rows].sum() < len(rows):
            out[key.item()] = float(auc(labels[rows], scores[rows]))
    return out


def write_lift_report(result: LiftResult, folder: str | Path, meta: dict) -> Path:
    """Writes `lift.json`, `report.md` and PNG plots (ROC, per-user AUC deltas, calibration) to `folder`.

    Args:
        result: the output of `run_lift`.
        folder: output folder (created).
        meta: what ran: at least "dataset" and "ranker"; written into lift.json as-is.

    Returns:
        The path of lift.json.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    baseline = next(name for name in result.arms if name not in result.lift)
    summary = {
        **meta,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "n_users_test": int(np.unique(result.groups).size),
        "baseline": baseline,
        "arms": {
            name: {
                "auc": arm.auc,
                "gauc": arm.gauc,
                "logloss": arm.logloss,
                "auc_per_seed": arm.auc_per_seed,
                "auc_seed_mean": float(np.mean(arm.auc_per_seed)),
                "auc_seed_sd": float(np.std(arm.auc_per_seed)),
            }
            for name, arm in result.arms.items()
        },
        "lift": {
            name: {
                "relaimpr": t.relaimpr,
                "auc_delta": t.auc_delta,
                "ci95": list(t.ci95),
                "p_value": t.p_value,
                "delta_per_seed": t.delta_per_seed,
                "delta_seed_mean": float(np.mean(t.delta_per_seed)),
                "delta_seed_sd": float(np.std(t.delta_per_seed)),
                "seeds_positive": int(np.sum(np.asarray(t.delta_per_seed) > 0)),
            }
            for name, t in result.lift.items()
        },
    }
    path = write_json(folder / "lift.json", summary)
    _plot_roc(result, folder / "roc.png")
    _plot_user_deltas(result, baseline, folder / "user_auc_delta.png")
    _plot_calibration(result, folder / "calibration.png")
    text = _markdown(summary)
    atomic_write(folder / "report.md", lambda tmp: tmp.write_text(text))
    return path


def _title(s: dict) -> str:
    """ "# Lift: <dataset> (<protocol>), ranker <ranker>", leaving out what the caller did not name."""
    title = "# Lift" + (f": {s['dataset']}" if s.get("dataset") else "")
    title += f" ({s['protocol']})" if s.get("protocol") else ""
    return title + (f", ranker {s['ranker']}" if s.get("ranker") else "")


def _markdown(s: dict) -> str:
    lines = [
        _title(s),
        "",
        f"{s['n_train']} training rows, {s['n_test']} test rows ({s['n_users_test']} users). "
        "Arm metrics are on seed-averaged predictions; the CI and p-value come from a user-level "
        "paired bootstrap; per-seed deltas are the spread over training seeds.",
        "",
        "| arm | AUC | gAUC | logloss | AUC per seed (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    for name, a in s["arms"].items():
        lines.append(
            f"| {name} | {a['auc']:.4f} | {a['gauc']:.4f} | {a['logloss']:.4f} | "
            f"{a['auc_seed_mean']:.4f} ± {a['auc_seed_sd']:.4f} |"
        )
    lines += [
        "",
        f"Lift over `{s['baseline']}`:",
        "",
        "| treatment | AUC delta | 95% CI | p | RelaImpr | per-seed delta (mean ± sd) | seeds > 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in s["lift"].items():
        lines.append(
            f"| {name} | {t['auc_delta']:+.4f} | [{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] | "
            f"{t['p_value']:.3f} | {format_relaimpr(t['relaimpr'])} | {t['delta_seed_mean']:+.4f} ± "
            f"{t['delta_seed_sd']:.4f} | {t['seeds_positive']}/{len(t['delta_per_seed'])} |"
        )
    lines += ["", "![ROC](roc.png)", "", "![per-user AUC delta](user_auc_delta.png)", ""]
    lines += ["![calibration](calibration.png)", ""]
    return "\n".join(lines)


def _plot_roc(result: LiftResult, path: Path) -> None:
    from sklearn.metrics import roc_curve

    fig, ax = new_figure()
    for name, arm in result.arms.items():
        fpr, tpr, _ = roc_curve(result.labels, arm.predictions)
        ax.plot(fpr, tpr, label=f"{name} (AUC {arm.auc:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per arm")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_user_deltas(result: LiftResult, baseline: str, path: Path) -> None:
    base = per_user_auc(result.labels, result.arms[baseline].predictions, result.groups)
    fig, ax = new_figure()
    for name in result.lift:
        treat = per_user_auc(result.labels, result.arms[name].predictions, result.groups)
        deltas = np.array([treat[user] - base[user] for user in base])
        ax.hist(
            deltas, bins=40, alpha=0.5, label=f"{name} (median {np.median(deltas):+.4f}, n={deltas.size})"
        )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel=f"per-user AUC delta vs {baseline}", ylabel="users", title="Per-user AUC deltas")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_calibration(result: LiftResult, path: Path) -> None:
    fig, ax = new_figure()
    for name, arm in result.arms.items():
        table = calibration_table(result.labels, arm.predictions).drop_nulls("predicted")
        ax.plot(table["predicted"], table["observed"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="mean predicted p(click)", ylabel="observed click rate", title="Calibration")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _hold_out(train: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    if fraction <= 0.0:
        return train, None
    held = np.random.default_rng(seed).random(len(train)) < fraction
    return train.filter(pl.Series(~held)), train.filter(pl.Series(held))
