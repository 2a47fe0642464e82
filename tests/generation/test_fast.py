"""The fast sampler's switches give the plain pipeline's covers within their rounding, and refuse clearly."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from icg_rec.data.paths import taef2_dir
from icg_rec.device import DeviceError
from icg_rec.errors import CheckpointError
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.fast import FastConfig, FastSampler
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.sampling import denoise
from icg_rec.generation.tiny_vae import TinyAutoencoder

TITLES = ["crimson night", "blue day", "a b"]
PROMPTER = PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=2, image_prefix_tokens=1)


def _pipeline(folder, encoders):
    torch.manual_seed(0)
    config = GeneratorConfig(diffusion=str(folder), num_tokens=2, user_dim=4, prompter=PROMPTER)
    pipe = build_pipeline(config, *encoders)
    for module in (pipe.unet, pipe.vae):  # random weights: give every layer a visible effect
        for p in module.parameters():
            torch.nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    return pipe


def _inputs(pipe, covers):
    batch = pipe.prompter.prepare(TITLES, list(covers[:3]))
    users = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    return batch, users, pipe.noise_for([5, 6, 7])


def _plain(pipe, covers):
    batch, users, noise = _inputs(pipe, covers)
    with torch.no_grad():
        return pipe.generate_with_grad(batch, users, noise, 3, 0, 2.0)


def _fast(pipe, covers, config=None, **kwargs):
    sampler = FastSampler(pipe, config, **kwargs).prepare()
    return sampler(*_inputs(pipe, covers), 3, 2.0)


def test_default_switches_give_exactly_the_pipelines_covers(sd_dir, encoders, covers):
    expected = _plain(_pipeline(sd_dir, encoders), covers)
    torch.testing.assert_close(_fast(_pipeline(sd_dir, encoders), covers), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "switches,dtype,atol",
    [
        (dict(sdpa=False), "float32", 1e-4),
        (dict(channels_last=True), "float32", 1e-4),
        (dict(fuse_qkv=True), "float32", 1e-4),
    ],
)
def test_each_switch_keeps_the_covers_within_its_rounding(sd_dir, encoders, covers, switches, dtype, atol):
    expected = _plain(_pipeline(sd_dir, encoders), covers)
    fast = _fast(_pipeline(sd_dir, encoders), covers, FastConfig(**switches), dtype=dtype)
    assert fast.dtype == torch.float32 and fast.shape == expected.shape
    torch.testing.assert_close(fast, expected, rtol=0, atol=atol)


def test_bfloat16_covers_are_within_bfloat16_rounding(sd_dir, encoders, covers):
    expected = _plain(_pipeline(sd_dir, encoders), covers)
    pipe = _pipeline(sd_dir, encoders)
    fast = _fast(pipe, covers, FastConfig(fuse_qkv=True, channels_last=True), dtype="bfloat16")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.adapter.resampler.latents.dtype == torch.float32
    relative = float((fast - expected).norm() / expected.norm())
    # bfloat16 really ran, and stayed within its rounding: one bfloat16 pass of this random UNet alone is
    # off by 1.7% (relative L2 against float64); 3 guided steps and the VAE compound it
    assert 1e-3 < relative < 6e-2


def _folder(folder, latent_channels: int, levels: int):
    """An SD-layout folder with a `levels`-level UNet over `latent_channels` latents and a one-level VAE."""
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=2, in_channels=latent_channels, out_channels=latent_channels, block_out_channels=(32, 64)[:levels],
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D")[:levels],
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")[2 - levels :], cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8,
    ).save_pretrained(folder / "unet")  # fmt: skip
    AutoencoderKL(
        latent_channels=latent_channels, block_out_channels=(8,), norm_num_groups=8
    ).save_pretrained(folder / "vae")
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


def test_compiled_unet_gives_the_same_covers_on_cpu(encoders, covers, tmp_path):
    folder = _folder(tmp_path, 4, levels=1)  # one level: inductor compiles it in ~40 s on a loaded 2-core box
    expected = _plain(_pipeline(folder, encoders), covers)
    pipe = _pipeline(folder, encoders)
    keys = set(pipe.unet.state_dict())
    fast = _fast(pipe, covers, FastConfig(compile="default"))
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-4)
    assert set(pipe.unet.state_dict()) == keys  # compiled in place: the weights' names (and version) hold


def test_switches_that_cannot_work_are_refused(sd_dir, encoders, covers, tmp_path):
    pipe = _pipeline(sd_dir, encoders)
    with pytest.raises(DeviceError, match="'float16' needs a CUDA device"):
        FastSampler(pipe, dtype="float16").prepare()
    with pytest.raises(DeviceError, match="'reduce-overhead' captures CUDA graphs: it needs device='cuda'"):
        FastSampler(pipe, FastConfig(compile="reduce-overhead")).prepare()
    with pytest.raises(ValueError, match="compile must be one of"):
        FastSampler(pipe, FastConfig(compile="fast")).prepare()
    with pytest.raises(ValueError, match="fuse_qkv .* needs sdpa=True"):
        FastSampler(pipe, FastConfig(fuse_qkv=True, sdpa=False)).prepare()
    with pytest.raises(ValueError, match="UNet makes 4-channel latents"):
        FastSampler(pipe, FastConfig(tiny_decoder=str(tmp_path))).prepare()
    pixel = build_pipeline(
        GeneratorConfig(resolution=8, cross_attention_dim=32, user_dim=4, prompter=PROMPTER), *encoders
    )
    with pytest.raises(ValueError, match="works in pixel space"):
        FastSampler(pixel, FastConfig(tiny_decoder=str(tmp_path))).prepare()
    assert not hasattr(FastSampler(pipe), "device_")  # nothing happens before prepare


def test_tiny_decoder_decodes_the_same_latents(encoders, covers, tmp_path):
    folder = taef2_dir()
    if not (folder / "taef2_decoder.pth").is_file():
        pytest.skip(f"TAEF2 weights not found at {folder} (set ICG_REC_DATA_DIR beside shared/models)")
    pipe = _pipeline(_folder(tmp_path, 32, levels=2), encoders)
    fast = _fast(pipe, covers, FastConfig(tiny_decoder=str(folder)))
    assert fast.shape == (3, 3, 16, 16) and 0 <= float(fast.min()) and float(fast.max()) <= 1
    batch, users, noise = _inputs(pipe, covers)
    with torch.no_grad():
        cond, uncond = pipe.conditioning(batch, users)
        latents = denoise(pipe.unet, pipe.scheduler, cond, uncond, noise, 3, 2.0)
        expected = TinyAutoencoder.from_folder(folder).decode(latents / pipe.vae.config.scaling_factor)
    torch.testing.assert_close(fast, expected)


def test_tiny_autoencoder_needs_both_files(tmp_path):
    with pytest.raises(CheckpointError, match="has no taef2_encoder.pth"):
        TinyAutoencoder.from_folder(tmp_path)
    (tmp_path / "taef2_encoder.pth").write_bytes(b"not a state dict")
    (tmp_path / "taef2_decoder.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="does not hold a TAEF2-layout state dict"):
        TinyAutoencoder.from_folder(tmp_path)


def test_taef2_round_trips_posters(movielens_root):
    """The layout rebuilt from the keys is TAEF2's: posters come back at > 25 dB (27.4 dB over 40 posters)."""
    import numpy as np
    from PIL import Image

    folder = taef2_dir()
    if not (folder / "taef2_encoder.pth").is_file():
        pytest.skip(f"TAEF2 weights not found at {folder}")
    model = TinyAutoencoder.from_folder(folder)
    posters = sorted((movielens_root / "posters").glob("*.jpg"))[:8]
    images = torch.stack(
        [
            torch.from_numpy(
                np.asarray(Image.open(p).convert("RGB").resize((176, 272)), dtype=np.float32) / 255
            )
            for p in posters
        ]
    ).permute(0, 3, 1, 2)  # (8, 3, 272, 176)
    with torch.no_grad():
        latents = model.encode(images)  # (8, 32, 34, 22)
        back = model.decode(latents)
    psnr = 10 * torch.log10(1 / ((back - images) ** 2).mean())
    assert latents.shape == (8, 32, 34, 22) and float(psnr) > 25
