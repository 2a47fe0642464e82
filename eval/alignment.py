"""Covers users prefer, without losing the item? `python -m eval.alignment --out out/alignment`.

SimWorld per taste family and seed: a world (--sim-impressions per user), rewards (aesthetic; relevance, title
<-> colour grid; personalized, fitted on the log), a warm-up generator and arms from it, each with its own seed:
public (DRaFT to aesthetic + relevance), personal (+ personalized, fixed weights), constrained (+ personalized,
relevance >= 0.9 and aesthetic >= 1.0 of warm-up on validation pairs), oracle (diagnostic: the judge as a
reward). Users: training audience, validation pairs (training rewards only), test pairs. The judge (oracle
p(click)) scores the test pairs and, as a monitor, the validations (trade-off curves); it never trains or
chooses. Ceilings: covers optimized directly (free pixels, RMSE <= 0.1 to warm-up, relevance >= 0.9 of warm-up)
against the learned reward and the judge. Writes <out>/<family>/seed<s>/ (reused) and <out>/summary.{json,md}.
"""

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icg_rec import alignment as al
from icg_rec.data.sim import TASTES, SimConfig, SimWorld
from icg_rec.figures import contact_sheet
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer
from icg_rec.io import read_json, write_json
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel, RelevanceReward

SIZE, STEPS = 16, 6  # cover side; DDIM steps, all of them backpropagated (K = 6)
PUBLIC = {"aesthetic": 0.5, "relevance": 1.0}
PERSONAL = PUBLIC | {"personalized": 4.0}  # weight 4 chosen by the training reward (RESULTS, round 5)
ARMS = {  # arm -> (reward weights, its own AlignConfig settings)
    "public": (PUBLIC, {}),
    "personal": (PERSONAL, {"keep": "last"}),
    # 300 steps, dual_lr 10, weight 4: the best kept validation personalized reward (colour world 0, RESULTS)
    "constrained": (
        PERSONAL,
        {"constraints": {"relevance": 0.9, "aesthetic": 1.0}, "dual_lr": 10.0, "steps": 300},
    ),
    "oracle": (PUBLIC | {"judge": 2.0}, {}),
}
REWARDS = ("aesthetic", "relevance", "personalized")


@dataclass
class Setup:
    """One world as the arms see it: items, rewards, judge and a three-way split of the users."""

    items: al.ItemSet
    rewards: dict  # aesthetic, relevance, personalized and "judge": Rewards of RewardInputs
    audience: al.Audience  # the training users
    valid: al.HeldOutPairs  # validation pairs (noise seeds 20_000 + i)
    test: al.HeldOutPairs  # test pairs (noise seeds 10_000 + i)
    cohorts: np.ndarray  # (P,) cohort of each test pair's user
    wrong: torch.Tensor  # (P, dim) the next cohort's mean test-user vector: the other-cohort control
    text: object  # the generator's text encoder
    grid: object  # the generator's image encoder (colour grid)


def parse_args(argv: list[str] | None, p: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/alignment"))
    p.add_argument("--families", nargs="+", choices=TASTES, default=list(TASTES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sim-impressions", type=int, default=120, help="log impressions per user")
    p.add_argument("--warmup-steps", type=int, default=450)
    p.add_argument("--align-steps", type=int, default=200, help="DRaFT steps (the constrained arm: 300)")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=["public", "personal", "constrained"])
    return p.parse_args(argv)


def public_rewards(titles: list[str], covers: torch.Tensor, seed: int):
    """(text encoder, colour-grid encoder, {"aesthetic", "relevance"}), relevance fitted on (title, cover)."""
    from icg_rec.encoders import MiniLMTextEncoder
    from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder

    text, grid = MemoTextEncoder(MiniLMTextEncoder()), ColourGridEncoder(4, SIZE).freeze()
    model = RelevanceModel(RelevanceConfig(shared_dim=32, epochs=60, batch_size=64))
    model.fit(text.encode(titles), grid(covers).numpy(), seed=seed).freeze()
    return text, grid, {"aesthetic": AestheticReward(), "relevance": RelevanceReward(model, text, grid)}


def reward_model(rows, covers: CoverInputs, config: PersonalizedConfig, seed: int, folder: Path):
    """The personalized reward fitted on `rows` and kept in `folder` (read from there when it is), frozen."""
    if not folder.is_dir():
        PersonalizedRewardModel(config).fit(rows, covers, seed=seed).save(folder)
    return PersonalizedRewardModel.load(folder).freeze()


def make_setup(items: al.ItemSet, rewards: dict, ids: np.ndarray, groups: np.ndarray, seed: int, text, grid):
    """The Setup of users `ids` (sorted) of cohorts `groups`, split by `held_out_split` (8 test and 4
    validation users a cohort, 4 items each); the generator reads the personalized reward's user vectors."""
    test, valid, audience = al.held_out_split(rewards["personalized"], ids, groups, len(items), seed)
    cohorts = groups[np.searchsorted(ids, test.users.user_ids.numpy())]
    labels = np.unique(cohorts)  # the other-cohort control: the next cohort's mean test-user vector
    means = torch.stack([test.users.vectors[torch.from_numpy(cohorts == c)].mean(0) for c in labels])
    wrong = means[(np.searchsorted(labels, cohorts) + 1) % len(labels)]  # (P, dim)
    return Setup(items, rewards, audience, valid, test, cohorts, wrong, text, grid)


def simworld(family: str, seed: int, args, folder: Path) -> Setup:
    """World, rewards, judge and users of one (taste family, seed); the subjects of the composition and
    random_conv worlds sit up to 0.35 half-widths off-centre, the colour world is the default world."""
    config = SimConfig(image_size=SIZE, impressions_per_user=args.sim_impressions, seed=seed, taste=family,
                       subject_offset=0.0 if family == "colour" else 0.35)  # fmt: skip
    world = SimWorld.generate(config)
    titles, ids = world.dataset.items["title"].to_list(), torch.arange(config.n_items)
    text, grid, rewards = public_rewards(titles, world.covers, seed)
    covers = CoverInputs(ids.numpy(), world.covers.numpy())
    tower = PersonalizedConfig(cover_tower="cnn", image_size=SIZE, epochs=6)
    rewards["personalized"] = reward_model(world.dataset.interactions, covers, tower, seed, folder / "reward")
    rewards["judge"] = judge = lambda x: world.oracle.click_prob(x.user_ids, x.images, x.item_ids)  # noqa: E731
    judge.name, judge.differentiable = "judge", True  # a Reward: it judges, and trains the oracle arm only
    items, users = al.ItemSet(titles, world.covers, ids), np.arange(config.n_users)
    return make_setup(items, rewards, users, world.user_cohort.numpy(), seed, text, grid)


def warm_up(setup: Setup, args, seed: int, folder: Path) -> Path:
    """The warm-up generator's folder (trained there, resumably, unless it is already)."""
    if not (folder / "pipeline").is_dir():
        torch.manual_seed(seed)
        prompter = PrompterConfig(
            hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2
        )
        config = GeneratorConfig(resolution=SIZE, cross_attention_dim=64, num_tokens=4,
                                 user_dim=setup.wrong.shape[1], prompter=prompter)  # fmt: skip
        # lr 1e-3, batch 16, high-noise timesteps: held-out relevance 0.54 (lr 2e-3, batch 32, uniform: 0.04)
        warm = WarmupConfig(steps=args.warmup_steps, batch_size=16, learning_rate=1e-3, sample_steps=STEPS,
                            guidance_scale=1.0, checkpoint_every=50, seed=seed, timestep_power=2.0)  # fmt: skip
        pipe = build_pipeline(config, setup.grid, setup.text)
        WarmupTrainer(pipe, warm).fit(setup.items.titles, setup.items.images, folder, resume=True)
    return folder / "pipeline"


def train_arm(name: str, setup: Setup, args, seed: int, warm: Path, folder: Path) -> tuple:
    """Aligns a fresh copy of the warm-up for one arm (or reloads it): (pipeline, validations)."""
    weights, own = ARMS[name]
    if not (folder / "validations.json").is_file():
        reward = MultiReward({k: setup.rewards[k] for k in weights}, MultiRewardConfig(weights=dict(weights)))
        config = al.AlignConfig(**{
            "steps": args.align_steps, "batch_size": 8, "learning_rate": 3e-3, "num_inference_steps": STEPS,
            "grad_steps": STEPS, "checkpoint_every": 20, "seed": al.derive_seed(seed, "arm", name)} | own)  # fmt: skip
        held_out = setup.valid if "personalized" in weights else None  # the validations: the trade-off curve
        aligner = al.RewardAligner(ICGPipeline.from_pretrained(warm, setup.grid, setup.text), reward, config)
        aligner.fit(setup.items, setup.audience, folder, True, held_out, {"judge": setup.rewards["judge"]})
        write_json(folder / "validations.json", aligner.validations_ if held_out else [])
    pipe = ICGPipeline.from_pretrained(folder / "pipeline", setup.grid, setup.text)
    return pipe, read_json(folder / "validations.json")


def inputs(setup: Setup, covers: torch.Tensor | None) -> RewardInputs:
    """The test pairs' reward inputs with `covers` (P, 3, S, S)."""
    index, titles = setup.test.item_index, setup.items.titles
    return RewardInputs(covers, setup.items.item_ids[index], setup.test.users.user_ids, [titles[i] for i in index.tolist()])  # fmt: skip


def covers_for(pipe: ICGPipeline, setup: Setup, vectors: torch.Tensor) -> torch.Tensor:
    """One cover (P, 3, S, S) per test pair, made for `vectors` (P, dim), from noise seed 10_000 + i."""
    x, images = inputs(setup, None), [setup.items.images[i] for i in setup.test.item_index.tolist()]
    return pipe(x.titles, images, vectors, setup.test.noise_seed, STEPS, 1.0, output_type="pt").images


def rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b).pow(2).flatten(1).mean(1) + 1e-12).sqrt()  # (P,); eps: a finite gradient at a == b


@torch.no_grad()
def score(setup: Setup, own: torch.Tensor, warm: torch.Tensor, pipe: ICGPipeline | None = None) -> dict:
    """Per test pair: judge CTR, the training rewards, fidelity; with `pipe`, the cohort controls."""
    x, judge = inputs(setup, own), setup.rewards["judge"]
    out = {"judge_ctr": judge(x), "fidelity": 1 - rmse(own, warm)} | {k: setup.rewards[k](x) for k in REWARDS}
    if pipe is not None:
        wrong, generic = (covers_for(pipe, setup, v) for v in (setup.wrong, torch.zeros_like(setup.wrong)))
        out |= {"judge_ctr_wrong_cohort": judge(inputs(setup, wrong)), "cohort_distance": rmse(own, wrong),
                "judge_ctr_generic": judge(inputs(setup, generic))}  # fmt: skip
    return {k: v.numpy() for k, v in out.items()}


def ceiling(setup: Setup, reward, warm: torch.Tensor, steps: int = 150) -> dict[str, float]:
    """Judge CTR over warm-up of covers optimized directly against `reward` (free pixels per test pair;
    RMSE to the warm-up cover <= 0.1 and relevance >= 0.9 of warm-up by penalties): what `reward` offers."""
    relevance, judge = setup.rewards["relevance"], setup.rewards["judge"]
    with torch.no_grad():
        start, judged = relevance(inputs(setup, warm)).mean(), judge(inputs(setup, warm)).mean()
    delta = torch.zeros_like(warm, requires_grad=True)  # (P, 3, S, S)
    optimizer = torch.optim.Adam([delta], lr=0.01)
    for _ in range(steps):
        x = inputs(setup, (warm + delta).clamp(0, 1))
        short = (
            F.relu(start - 0.1 * start.abs() - relevance(x).mean())
            + F.relu(rmse(x.images, warm) - 0.1).mean()
        )
        optimizer.zero_grad()
        (10.0 * short - reward(x).mean()).backward()
        optimizer.step()
    with torch.no_grad():
        x = inputs(setup, (warm + delta).clamp(0, 1))
        share = float(relevance(x).mean() / start) if start > 0 else float("nan")
        return {"judge_ctr_share": float(judge(x).mean() / judged), "relevance_share": share}


def paired_delta(a: np.ndarray, b: np.ndarray, users: np.ndarray) -> dict:
    """Mean of a - b with a 95% normal interval from per-user means (a user's pairs are not independent),
    and the share mean(a) / mean(b)."""
    diff = a - b
    per_user = np.array([diff[users == u].mean() for u in np.unique(users)])
    half = 1.96 * per_user.std(ddof=1) / np.sqrt(len(per_user))
    ci95 = [float(diff.mean() - half), float(diff.mean() + half)]
    return {"delta": float(diff.mean()), "ci95": ci95, "share": float(a.mean() / b.mean())}


def run_world(setup: Setup, args, seed: int, folder: Path, start: float) -> dict:
    """Warm-up, arms, scores and ceilings of one world set up since `start` (perf_counter); writes
    alignment.json and contact_sheet.png."""
    seconds, validations = {"setup": time.perf_counter() - start}, {}
    warm = warm_up(setup, args, seed, folder / "warmup")
    seconds["warmup"] = time.perf_counter() - start - seconds["setup"]
    pipes = {"warmup": ICGPipeline.from_pretrained(warm, setup.grid, setup.text)}
    for name in args.arms:
        pipes[name], validations[name] = train_arm(name, setup, args, seed, warm, folder / name)
        seconds[name] = time.perf_counter() - start - sum(seconds.values())
    covers = {name: covers_for(pipe, setup, setup.test.users.vectors) for name, pipe in pipes.items()}
    per_pair = {name: score(setup, covers[name], covers["warmup"], pipe) for name, pipe in pipes.items()}
    covers["reference"] = setup.items.images[setup.test.item_index]  # (P, 3, S, S) the items' own covers
    per_pair["reference"] = score(setup, covers["reference"], covers["warmup"])
    means = {name: {k: float(v.mean()) for k, v in p.items()} for name, p in per_pair.items()}
    users, arms = setup.test.users.user_ids.numpy(), {}
    for name in args.arms:
        arm, ctr = per_pair[name], per_pair[name]["judge_ctr"]
        arms[name] = {f"{k}_share": means[name][k] / means["warmup"][k] for k in ("judge_ctr", *REWARDS)}
        for base in [b for b in ("warmup", "public") if b in means and b != name]:
            arms[name][f"ctr_vs_{base}"] = paired_delta(ctr, per_pair[base]["judge_ctr"], users)
        arms[name]["own_vs_other_cohort"] = paired_delta(ctr, arm["judge_ctr_wrong_cohort"], users)
    result = {
        "means": means, "arms": arms, "validations": validations, "users": {"audience": len(setup.audience)},
        "ceilings": {k: ceiling(setup, setup.rewards[k], covers["warmup"]) for k in ("personalized", "judge")},
        "seconds": seconds | {"world": time.perf_counter() - start},
    }  # fmt: skip
    write_json(folder / "alignment.json", result)
    first = np.unique(setup.cohorts, return_index=True)[1]  # one pair per cohort
    rows = [F.interpolate(covers[k][first], scale_factor=3) for k in ["reference", "warmup", *args.arms]]
    contact_sheet(
        folder / "contact_sheet.png", rows, title=f"{folder}: reference, warm-up, {', '.join(args.arms)}"
    )
    return result


def summarise(results: dict[str, list[dict]], arms: list[str]) -> tuple[dict, list[str]]:
    """Mean and sd over each family's worlds of the arms' and ceilings' shares, and the trade-off curves.

    Returns:
        (summary, Markdown lines: a table with a row per family and arm or ceiling, then the curves).
    """
    keys = ("judge_ctr_share", "ctr_vs_public", "relevance_share", "aesthetic_share")
    head = "| family | arm | judge CTR / warm-up | / public | relevance / warm-up | aesthetic / warm-up |"
    summary, lines, curves = {}, [head, "|---" * 6 + "|"], []
    for family, worlds in results.items():
        rows = {n: [w["arms"][n] | {"ctr_vs_public": w["arms"][n].get("ctr_vs_public", {}).get("share")} for w in worlds] for n in arms}  # fmt: skip
        rows |= {f"ceiling_{k}": [w["ceilings"][k] for w in worlds] for k in ("personalized", "judge")}
        for name, values in rows.items():
            cells = {k: np.array([v.get(k) for v in values], dtype=float) for k in keys}  # None: NaN
            row = {k: [c.mean(), c.std(ddof=1) if len(c) > 1 else np.nan] for k, c in cells.items()}
            lines.append(
                f"| {family} | {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in row.values()) + " |"
            )
            if trails := [w["validations"][name] for w in worlds if w["validations"].get(name)]:
                row["curve"] = [[s[0]["step"], *(np.mean([v[k] / t[0][k] for v, t in zip(s, trails, strict=True)])
                                                 for k in ("judge", "relevance"))] for s in zip(*trails, strict=True)]  # fmt: skip
                curves.append(
                    f"- {family} {name}: "
                    + ", ".join(f"{s:.0f}: {j:.3f} / {r:.2f}" for s, j, r in row["curve"])
                )
            summary[f"{family}/{name}"] = row
        summary[f"{family}/relevance"] = rel = {
            k: np.mean([w["means"][k]["relevance"] for w in worlds]) for k in ("warmup", "reference")
        }
        curves.insert(0, f"- {family}: relevance of the warm-up covers {rel['warmup']:.3f}, of the references {rel['reference']:.3f}")  # fmt: skip
    head = "Trade-off curves, validation pairs (step: judge CTR / relevance, as shares of step 0, mean over seeds):"
    return summary, [*lines, "", head, *curves]


def run(args: argparse.Namespace, build, families: list[str]) -> int:
    """Runs (or reuses) each world `build(family, seed, folder) -> Setup`; writes and prints the summary."""
    torch.set_num_threads(1)  # tiny models: more threads stalled on the shared 2-core box
    results = {}
    for family, seed in [(f, s) for f in families for s in args.seeds]:
        folder, start = args.out / family / f"seed{seed}", time.perf_counter()
        done = folder / "alignment.json"
        reuse = done.is_file() and set(args.arms) <= set(read_json(done)["arms"])
        result = (
            read_json(done) if reuse else run_world(build(family, seed, folder), args, seed, folder, start)
        )
        results.setdefault(family, []).append(result)
    summary, lines = summarise(results, args.arms)
    write_json(args.out / "summary.json", {"args": vars(args), "summary": summary})
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args, lambda family, seed, folder: simworld(family, seed, args, folder), args.families)


if __name__ == "__main__":
    sys.exit(main())
