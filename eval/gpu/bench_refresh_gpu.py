"""Cover throughput against the roofline and against stock diffusers, every fast-refresh switch on and off.

    python -m eval.gpu.bench_refresh_gpu [--covers 64 --batch-size auto --steps 20] [--align]   # GPU host
    python -m eval.gpu.bench_refresh_gpu --cpu-smoke                                          # CI-size
    python -m eval.gpu.bench_refresh_gpu --flops-only                                         # any host

Setting (GPU): an SD-1.5-size UNet and VAE with random weights (throughput does not depend on them) at
512x512, 20 DDIM steps, guidance 3 (two UNet passes a step), 8 conditioning tokens of width 768, fp16.
All arms run in one process on one card, each after an untimed warm-up batch (CUDA start-up, cuDNN
autotuning and torch.compile are charged to no arm):

- `stock`: diffusers' `StableDiffusionPipeline` at the same batch size with SDPA attention and fp16 (what a
  user writes), covers kept in memory; `stock_compiled`: the same with the UNet channels_last, fused QKV
  and `torch.compile(mode="reduce-overhead")` (CUDA graphs), i.e. our best switches applied to stock.
- `icg_*`: `refresh_covers` over (item, cohort) work through `PipelineCoverGenerator`, one switch at a time
  on top of fp16 + SDPA, then all together, eager and compiled; these also hash items, write every PNG
  and the parquet manifest. The tiny-decoder pair swaps the latent width to TAEF2's 32 channels (UNet
  otherwise unchanged) and compares the full VAE decoder with TAEF2 on the same latents.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward of the actual UNet config on the meta
device (2 FLOPs per multiply-add; convolutions, linear layers and attention matmuls), at the actual
latent size and token count; per cover = 2 (guidance) x steps x that. The VAE decode is counted and
reported, not included in the roofline (as in the issue's definition). Peak: the median rate of an
8192^3 fp16 matmul on random data on the same card in the same run (1024^3 fp32 on CPU).
roofline_share = covers/s x UNet FLOPs per cover / peak.

`--align`: DRaFT-K (K=1) with LoRA (rank 4) on the same UNet size, bfloat16 autocast: steps/s and peak
GPU memory with and without gradient checkpointing.

Last line: `covers_per_s=X roofline_share=Y speedup_vs_stock=Z` for the best icg arm against the best stock arm.
"""

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from icg_rec.alignment import AlignConfig, Audience, ItemSet, RewardAligner
from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.data.paths import taef2_dir
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.device import resolve_device, synchronize
from icg_rec.encoders.base import TextEncoder
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.generation.adapter import AdapterConfig, CoverAdapter
from icg_rec.generation.fast import FastConfig
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig
from icg_rec.generation.refiner import RefinerConfig, UserRefiner
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig

TOKENS, WIDTH, USER_DIM, N_COHORTS = (
    8,
    768,
    16,
    3,
)  # conditioning tokens, their width, user embedding, cohorts
BATCH_CANDIDATES = (8, 16, 32, 48, 64)


class HashText(TextEncoder):
    """Deterministic pseudo-embeddings of titles: no text model needed to time the UNet."""

    name, dim = "hash-text", 32

    def encode(self, texts, batch_size=64, progress=False):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=32) for t in texts]).astype(
            "f4"
        )


@dataclass
class Setting:
    """What one run measures: sizes, device, and the arms."""

    device: torch.device
    dtype: str  # "float16" on CUDA, "float32" on CPU
    tiny: bool  # tiny UNet / VAE (CPU smoke)
    steps: int
    guidance: float
    covers: int
    batch: int
    arms: list[str] = field(default_factory=list)


def unet_config(tiny: bool, latent_channels: int = 4) -> dict:
    """The SD-1.5 UNet layout (diffusers defaults) at 64x64 latents, or a tiny one for the CPU smoke run."""
    if tiny:
        return dict(
            sample_size=8, in_channels=latent_channels, out_channels=latent_channels, block_out_channels=(32, 64),
            layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=WIDTH, norm_num_groups=8,
        )  # fmt: skip
    return dict(
        sample_size=64, in_channels=latent_channels, out_channels=latent_channels, cross_attention_dim=WIDTH
    )


def vae_config(tiny: bool, latent_channels: int = 4) -> dict:
    """The SD-1.5 VAE layout (8x down), or a tiny 2-level one."""
    if tiny:
        return dict(
            block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels, norm_num_groups=8,
        )  # fmt: skip
    return dict(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=latent_channels, layers_per_block=2,
    )  # fmt: skip


def backbone(setting: Setting, latent_channels: int = 4) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    """A fresh UNet and VAE (seed 0), built directly on the device."""
    torch.manual_seed(0)
    with setting.device:
        unet = UNet2DConditionModel(**unet_config(setting.tiny, latent_channels))
        vae = AutoencoderKL(**vae_config(setting.tiny, latent_channels))
    return unet, vae


def count_flops(setting: Setting) -> dict:
    """FLOPs per sample of one UNet forward and of one VAE decode, counted on the meta device."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config(setting.tiny))
        vae = AutoencoderKL(**vae_config(setting.tiny))
        size = unet.config.sample_size
        latents = torch.randn(1, 4, size, size)
        with FlopCounterMode(display=False) as counter:
            unet(latents, torch.tensor(500), encoder_hidden_states=torch.randn(1, TOKENS, WIDTH))
        unet_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            vae.decode(latents)
        decode_flops = counter.get_total_flops()
    per_cover = 2 * setting.steps * unet_flops  # guidance: conditional + unconditional pass every step
    return {
        "unet_forward_flops_per_sample": unet_flops,
        "vae_decode_flops_per_cover": decode_flops,
        "unet_flops_per_cover": per_cover,
        "method": "FlopCounterMode on the meta device, 2 FLOPs per multiply-add, "
        f"latents {size}x{size}, {TOKENS} tokens of width {WIDTH}, x2 guidance x {setting.steps} steps",
    }


def peak_flops(device: torch.device) -> float:
    """Median FLOP/s of a large matmul on random data (fp16 8192^3 on CUDA, fp32 1024^3 on CPU)."""
    n, dtype = (8192, torch.float16) if device.type == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(13):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i >= 3:  # three warm-ups
            times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times))


def sd15_scheduler() -> DDIMScheduler:
    """DDIM with SD-1.5's noise schedule, the same on both sides."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip


def icg_pipeline(setting: Setting, unet: UNet2DConditionModel, vae: AutoencoderKL) -> ICGPipeline:
    """An ICG pipeline around the given backbone: a small prompter (colour-grid perception, hashed titles)."""
    torch.manual_seed(0)
    prompter = MetaTokenPrompter.build(
        PrompterConfig(hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2),
        ColourGridEncoder(image_size=64).freeze(),
        HashText(),
    )
    adapter = CoverAdapter(AdapterConfig(meta_dim=64, num_tokens=TOKENS, cross_attention_dim=WIDTH, heads=1))
    pipe = ICGPipeline(
        unet, sd15_scheduler(), prompter, UserRefiner(RefinerConfig(USER_DIM, 64)), adapter, vae
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_rate(setting: Setting, compiled: bool) -> float:
    """Covers/s of a stock StableDiffusionPipeline at the batch size (fp16 on CUDA, SDPA)."""
    unet, vae = backbone(setting)
    dtype = torch.float16 if setting.device.type == "cuda" else torch.float32
    stock = StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sd15_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to(setting.device, dtype)  # fmt: skip
    stock.set_progress_bar_config(disable=True)
    if compiled:
        stock.unet.to(memory_format=torch.channels_last)
        stock.fuse_qkv_projections()
        stock.unet = torch.compile(stock.unet, mode="reduce-overhead")
    tokens = torch.randn(setting.batch, TOKENS, WIDTH, device=setting.device, dtype=dtype)
    size = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)

    def run(seed: int) -> None:
        stock(
            prompt_embeds=tokens, negative_prompt_embeds=torch.zeros_like(tokens), num_inference_steps=setting.steps,
            guidance_scale=setting.guidance, height=size, width=size, output_type="pt",
            generator=torch.Generator(setting.device).manual_seed(seed),
        )  # fmt: skip

    run(0)  # warm-up (and compilation)
    batches = max(1, setting.covers // setting.batch)
    synchronize(setting.device)
    start = time.perf_counter()
    for i in range(batches):
        run(i + 1)
    synchronize(setting.device)
    return batches * setting.batch / (time.perf_counter() - start)


def catalogue(setting: Setting, folder: Path):
    """SimWorld items for a warm-up slice (one batch) and the timed slice, and 3 cohorts."""
    per_item = N_COHORTS + 1  # the cohorts' covers + the generic cover
    warm_items, timed_items = -(-setting.batch // per_item), -(-setting.covers // per_item)
    world = SimWorld.generate(SimConfig(n_users=150, n_items=max(warm_items + timed_items, 40), seed=0))
    items = world.save_covers(folder / "ref").items
    cohorts = UserCohorts(CohortConfig(n_cohorts=N_COHORTS)).fit(
        np.arange(150), np.random.default_rng(0).normal(size=(150, USER_DIM)).astype("f4")
    )
    return items.head(warm_items), items.slice(warm_items, timed_items), cohorts


ALL = {"channels_last": True, "fuse_qkv": True}
ICG_ARMS = {  # name -> (dtype override or None, FastConfig fields, writers, latent channels, tiny decoder)
    "icg_fp16": (None, {}, 0, 4, False),
    "icg_all_eager": (None, ALL, 4, 4, False),
    "icg_cuda_graphs": (None, {**ALL, "compile": "reduce-overhead"}, 4, 4, False),
    "icg_classic_attention": (None, {"sdpa": False}, 0, 4, False),
    "icg_channels_last": (None, {"channels_last": True}, 0, 4, False),
    "icg_fused_qkv": (None, {"fuse_qkv": True}, 0, 4, False),
    "icg_writers": (None, {}, 4, 4, False),
    "icg_bf16": ("bfloat16", {}, 0, 4, False),
    "icg_fp32": ("float32", {}, 0, 4, False),
    "icg_compiled": (None, {**ALL, "compile": "default"}, 4, 4, False),
    "icg_latent32_vae": (None, ALL, 4, 32, False),
    "icg_latent32_tiny_decoder": (None, ALL, 4, 32, True),
}  # fmt: skip
ORDER = [  # most telling first: a run out of --budget-s drops the tail
    "stock", "icg_fp16", "icg_all_eager", "icg_cuda_graphs", "align", "stock_compiled", *list(ICG_ARMS)[3:],
]  # fmt: skip
GPU_ONLY = {
    "icg_cuda_graphs",
    "icg_bf16",
    "stock_compiled",
}  # CUDA graphs; bf16/fp16 on CPU are not the point
SLOW_ON_CPU = {
    "icg_compiled",
    "icg_fp32",
}  # inductor on 2 cores takes minutes; fp32 is the CPU default anyway


def icg_rate(setting: Setting, arm: str, folder: Path) -> float:
    """Covers/s of `refresh_covers` with one arm's switches (PNG writes and manifest included)."""
    dtype, switches, writers, channels, tiny_decoder = ICG_ARMS[arm]
    unet, vae = backbone(setting, channels)
    fast = FastConfig(**switches, tiny_decoder=str(taef2_dir()) if tiny_decoder else "")
    warm, timed, cohorts = catalogue(setting, folder)
    generator = PipelineCoverGenerator(
        icg_pipeline(setting, unet, vae), warm["item_id"].append(timed["item_id"]),
        warm["title"].append(timed["title"]), warm["image_path"].append(timed["image_path"]),
        setting.steps, setting.guidance, version=f"bench-{arm}", device=str(setting.device),
        dtype=dtype or setting.dtype, fast=fast,
    )  # fmt: skip
    kwargs = dict(batch_size=setting.batch, progress=False, writers=writers)
    refresh_covers(warm, cohorts, generator, folder / "warm", **kwargs)  # warm-up (and compilation)
    synchronize(setting.device)
    start = time.perf_counter()
    _, stats = refresh_covers(timed, cohorts, generator, folder / "timed", **kwargs)
    synchronize(setting.device)
    return stats.generated / (time.perf_counter() - start)


def sized_batch(setting: Setting) -> tuple[int, dict]:
    """The batch with the best UNet throughput (guided pass, fp16 eager) among those that fit the card."""
    unet, _ = backbone(setting)
    unet.to(torch.float16).eval()
    free = torch.cuda.mem_get_info(setting.device)[0]
    rates = {}
    for batch in BATCH_CANDIDATES:
        size = unet.config.sample_size
        x = torch.randn(2 * batch, 4, size, size, device=setting.device, dtype=torch.float16)
        h = torch.randn(2 * batch, TOKENS, WIDTH, device=setting.device, dtype=torch.float16)
        torch.cuda.reset_peak_memory_stats(setting.device)
        with torch.no_grad():
            unet(x, 500, encoder_hidden_states=h)  # warm-up
            synchronize(setting.device)
            start = time.perf_counter()
            for _ in range(3):
                unet(x, 500, encoder_hidden_states=h)
            synchronize(setting.device)
        rates[batch] = 3 * batch / (time.perf_counter() - start)
        if torch.cuda.max_memory_allocated(setting.device) > 0.5 * free:  # the VAE decode needs room too
            break
    best = max(rates, key=rates.get)
    near = [b for b in rates if rates[b] >= 0.97 * rates[best]]  # within 3%: the smaller batch wins
    return min(near), rates


def align_throughput(setting: Setting, checkpointing: bool, steps: int) -> dict:
    """DRaFT-K (K=1) with LoRA rank 4 on the UNet, bfloat16 autocast (float32 on CPU): steps/s, peak memory."""
    unet, vae = backbone(setting)
    pipe = icg_pipeline(setting, unet, vae)
    gen = torch.Generator().manual_seed(0)
    size = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    items = ItemSet(
        titles=[f"item {i}" for i in range(8)], images=torch.rand(8, 3, size, size, generator=gen),
        item_ids=torch.arange(8),
    )  # fmt: skip
    audience = Audience(torch.arange(4), torch.randn(4, USER_DIM, generator=gen))
    reward = MultiReward({"aesthetic": AestheticReward()}, MultiRewardConfig(weights={"aesthetic": 1.0}))
    config = AlignConfig(
        steps=1, batch_size=2, num_inference_steps=10 if not setting.tiny else 3, grad_steps=1, lora_rank=4,
        gradient_checkpointing=checkpointing, checkpoint_every=10**9,
    )  # fmt: skip
    dtype = "bfloat16" if setting.device.type == "cuda" else "float32"
    aligner = RewardAligner(pipe, reward, config, device=str(setting.device), dtype=dtype)
    aligner.fit(items, audience)  # first step: set-up, LoRA, cuDNN autotuning
    if setting.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setting.device)
    config.steps = steps  # a second fit starts from step 0 again (no resume)
    synchronize(setting.device)
    start = time.perf_counter()
    aligner.fit(items, audience)
    synchronize(setting.device)
    peak = torch.cuda.max_memory_allocated(setting.device) / 2**30 if setting.device.type == "cuda" else None
    return {
        "steps_per_s": steps / (time.perf_counter() - start),
        "peak_gib": peak,
        "batch": config.batch_size,
    }


def png_ms_per_cover(setting: Setting, folder: Path) -> float:
    """Milliseconds one host core takes to encode and write one cover as PNG (what writer threads hide)."""
    side = 16 if setting.tiny else 512
    covers = torch.rand(8, 3, side, side, generator=torch.Generator().manual_seed(0))
    covers = torch.nn.functional.avg_pool2d(covers, 5, 1, 2)  # smoother than noise, like a cover
    cache = CoverCache(folder)
    start = time.perf_counter()
    for i, cover in enumerate(covers):
        cache.put(f"{i:024d}", cover)
    return 1000 * (time.perf_counter() - start) / len(covers)


def align_section(setting: Setting, steps: int) -> dict:
    """`align_throughput` without and with gradient checkpointing, printed."""
    rows = {f"checkpointing_{flag}": align_throughput(setting, flag, steps) for flag in (False, True)}
    for name, row in rows.items():
        peak = "n/a" if row["peak_gib"] is None else f"{row['peak_gib']:.1f} GiB"
        print(f"align DRaFT-1 + LoRA, {name}: {row['steps_per_s']:.3f} steps/s, peak {peak}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--covers", type=int, default=64, help="timed covers per arm")
    parser.add_argument(
        "--batch-size", default="auto", help="covers per batch, or 'auto' (sized to the card)"
    )
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per cover")
    parser.add_argument("--arms", nargs="*", default=None, help="subset of arms (default: all that apply)")
    parser.add_argument("--align", action="store_true", help="also time DRaFT-K + LoRA alignment steps")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny models on CPU: checks that it all runs"
    )
    parser.add_argument("--flops-only", action="store_true", help="count the real config's FLOPs (no device)")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no arm after this many s")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.flops_only:
        flops = count_flops(Setting(torch.device("meta"), "float16", False, args.steps, 3.0, 0, 0))
        for key, value in flops.items():
            print(f"{key}: {value / 1e12:.4f} TFLOP" if isinstance(value, int) else f"{key}: {value}")
        for peak in (790e12, 990e12):
            print(
                f"UNet roofline at {peak / 1e12:.0f} TFLOP/s: {peak / flops['unet_flops_per_cover']:.2f} covers/s"
            )
        return flops
    device = torch.device("cpu") if args.cpu_smoke else resolve_device("cuda")
    if args.cpu_smoke:
        torch.set_num_threads(1)
    setting = Setting(
        device=device, dtype="float16" if device.type == "cuda" else "float32", tiny=args.cpu_smoke,
        steps=2 if args.cpu_smoke else args.steps, guidance=3.0, covers=8 if args.cpu_smoke else args.covers,
        batch=4,
    )  # fmt: skip
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if args.batch_size == "auto" and device.type == "cuda":
        setting.batch, results["batch_rates"] = sized_batch(setting)
    elif args.batch_size != "auto":
        setting.batch = int(args.batch_size)
    setting.covers = -(-setting.covers // setting.batch) * setting.batch  # whole batches: no new shapes timed
    results.update(count_flops(setting), peak_flops_per_s=peak_flops(device), batch=setting.batch)
    arms = [a for a in ORDER if a != "align"] if args.arms is None else list(args.arms)
    if args.align:  # after the headline arms, before the single-switch ones
        arms.insert(ORDER.index("align") if args.arms is None else len(arms), "align")
    if device.type != "cuda":
        arms = [a for a in arms if a not in GPU_ONLY and (args.arms or a not in SLOW_ON_CPU)]
    if not (taef2_dir() / "taef2_decoder.pth").is_file():
        arms = [a for a in arms if not a.startswith("icg_latent32")]
        results["skipped"] = f"tiny-decoder arms: no TAEF2 weights at {taef2_dir()}"
    rates, results["skipped_for_time"] = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            if time.perf_counter() - started > args.budget_s:
                results["skipped_for_time"].append(arm)
                continue
            if arm == "align":
                results["align"] = align_section(setting, steps=2 if args.cpu_smoke else 5)
                continue
            rate = stock_rate(setting, arm == "stock_compiled") if arm.startswith("stock") else None
            rate = rate if rate is not None else icg_rate(setting, arm, Path(tmp) / arm)
            rates[arm] = rate
            print(f"{arm:28s} {rate:8.3f} covers/s", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results["png_ms_per_cover"] = png_ms_per_cover(setting, Path(tmp) / "png")
    results["covers_per_s"] = rates
    print(f"PNG encode + write: {results['png_ms_per_cover']:.1f} ms per cover on one host core")
    print(f"{'arm':28s} {'covers/s':>9s} {'x stock':>8s} {'x icg_fp16':>11s}")
    for arm, rate in rates.items():
        ratios = [rate / rates[b] if b in rates else float("nan") for b in ("stock", "icg_fp16")]
        print(f"{arm:28s} {rate:9.3f} {ratios[0]:8.2f} {ratios[1]:11.2f}")
    # the headline compares the same model: the 32-channel-latent pair (tiny decoder) is reported beside it
    icg = {a: r for a, r in rates.items() if a.startswith("icg_") and not a.startswith("icg_latent32")}
    stock = {a: r for a, r in rates.items() if a.startswith("stock")}
    best, best_stock = max(icg, key=icg.get), max(stock, key=stock.get) if stock else None
    share = icg[best] * results["unet_flops_per_cover"] / results["peak_flops_per_s"]
    speedup = icg[best] / stock[best_stock] if best_stock else float("nan")
    results.update(best_icg=best, best_stock=best_stock, roofline_share=share, speedup_vs_stock=speedup)
    print(
        f"device {results['device']}, {setting.dtype} (icg_fp16 and stock run in it), batch {setting.batch}, "
        f"{setting.steps} steps; UNet "
        f"{results['unet_forward_flops_per_sample'] / 1e12:.3f} TFLOP/sample/pass, "
        f"{results['unet_flops_per_cover'] / 1e12:.2f} TFLOP/cover (+ VAE decode "
        f"{results['vae_decode_flops_per_cover'] / 1e12:.2f}); peak {results['peak_flops_per_s'] / 1e12:.1f} TFLOP/s; "
        f"roofline {results['peak_flops_per_s'] / results['unet_flops_per_cover']:.2f} covers/s; best {best} vs {best_stock}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"covers_per_s={icg[best]:.3f} roofline_share={share:.3f} speedup_vs_stock={speedup:.2f}")
    return results


if __name__ == "__main__":
    main()
