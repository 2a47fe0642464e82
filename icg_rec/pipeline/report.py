"""report.md of a run: stage times, reward metrics vs baselines, the kept alignment, contact sheets, lift,
A/B spec."""

from pathlib import Path


def write_report(out: Path, summary: dict) -> str:
    """The Markdown report of a run folder (links are relative to it).

    Args:
        out: the run folder.
        summary: what run.json holds.

    Returns:
        The report text.
    """
    lines = [
        f"# icg_rec run: {out.name}",
        "",
        "## Stages",
        "",
        "| stage | status | seconds | compute seconds |",
        "|---|---|---|---|",
    ]
    for name, entry in summary["stages"].items():
        status = entry["status"] + (f" ({entry['reason']})" if "reason" in entry else "")
        lines.append(
            f"| {name} | {status} | {entry['seconds']:.1f} | {entry.get('compute_seconds', 0):.1f} |"
        )
    if data := summary.get("data"):
        lines += [
            "",
            f"Data: {data['items']} items, {data['users']} users; train {data['rows']['train']} rows "
            f"({data['clicks']['train']} clicks), test {data['rows']['test']} rows ({data['clicks']['test']} clicks).",
        ]
    if rewards := summary.get("rewards"):
        lines += _rewards(rewards)
    if aligned := summary.get("align"):
        lines += _aligned(aligned)
    if covers := summary.get("covers"):
        lines += [
            "",
            "## Covers",
            "",
            f"{covers['items']} items x ({covers['cohorts']} cohorts + generic): {covers['generated']} generated, "
            f"{covers['cached']} reused from the cache.",
            "",
        ]
        sheets = sorted((out / "refresh" / "contact_sheets").glob("*.png"))
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in sheets]
    if lift := summary.get("lift"):
        lines += [
            "",
            "## Ranker lift (test rows)",
            "",
            "| arm | AUC | AUC delta | 95% CI |",
            "|---|---|---|---|",
        ]
        for arm, row in lift.items():
            low, high = row["ci95"]
            lines.append(
                f"| {arm} | {row['auc']:.4f} | {row['auc_delta']:+.4f} | [{low:+.4f}, {high:+.4f}] |"
            )
        lines += ["", "Details: `lift/report.md`.", ""]
        lines += [f"![{name}](lift/{name}.png)" for name in ("roc", "user_auc_delta", "calibration")]
    if "ope" in summary:
        lines += [
            "",
            "## Off-policy evaluation of cover policies (test rows)",
            "",
            "Estimates and CIs per policy: `ope/report.md`.",
        ]
    if ab := summary.get("ab"):
        spec = out / "ab" / "spec.md"
        lines += [
            "",
            "## A/B plan",
            "",
            f"{ab['sample_size_per_arm']:,} users per arm with CUPED ({ab['sample_size_per_arm_without_cuped']:,} "
            f"without), {ab['duration_days']} days. Spec: `ab/spec.md`; assignment and per-arm covers in `ab/`.",
            "",
            spec.read_text() if spec.is_file() else "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _rewards(rewards: dict) -> list[str]:
    lines = [
        "",
        "## Personalized reward model (test rows)",
        "",
        "| model | AUC | gAUC | log loss | gAUC minus it (95% CI) |",
        "|---|---|---|---|---|",
        f"| personalized | {rewards['auc']:.4f} | {rewards['gauc']:.4f} | {rewards['logloss']:.4f} | |",
    ]
    for name, m in rewards["baselines"].items():
        d = rewards["gauc_minus_baseline"][name]
        lines.append(
            f"| {name} | {m['auc']:.4f} | {m['gauc']:.4f} | {m['logloss']:.4f} | "
            f"{d['delta']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |"
        )
    return lines


def _aligned(aligned: dict) -> list[str]:
    objective = aligned["objective"]
    kept = (
        f"the best {objective} reward among the validations meeting every floor"
        if aligned["keep"] == "best"
        else 'the last state (keep = "last")'
    )
    warmup = "" if aligned["kept_step"] else " Step 0 is the warm-up itself."
    lines = [
        "",
        "## Alignment (held-out users)",
        "",
        f"DRaFT kept step {aligned['kept_step']} of {aligned['steps']}: {kept}, on {aligned['pairs']} "
        f"held-out (item, user) pairs.{warmup} Every validation: `align/tradeoff.md`.",
        "",
        "| reward | warm-up | kept | kept / warm-up | floor |",
        "|---|---|---|---|---|",
    ]
    for name, row in aligned["rewards"].items():
        share = "n/a (warm-up <= 0)" if row["share"] is None else f"{row['share']:.3f}"
        floor = aligned["floors"].get(name, "")
        lines.append(f"| {name} | {row['warmup']:.4f} | {row['kept']:.4f} | {share} | {floor} |")
    return lines
