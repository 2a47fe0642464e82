"""Fast cover sampling for the refresh: every speed switch of `FastConfig`, applied in place to an ICGPipeline.

The switches, each measured on and off by `eval/gpu/bench_refresh_gpu.py`:

- precision (`dtype` of the sampler): the UNet and VAE in float16 / bfloat16; the conditioning path (prompter,
  refiner, adapter) stays float32 and its tokens are cast to the UNet's dtype.
- `sdpa`: attention through torch's `scaled_dot_product_attention` (flash / memory-efficient kernels on CUDA);
  off = diffusers' classic `AttnProcessor` (explicit softmax(QK^T)V).
- `channels_last`: NHWC memory format for the UNet and the decoder (what cuDNN's tensor-core convolutions read).
- `fuse_qkv`: one projection for q, k, v of self-attention and for k, v of cross-attention (fewer, larger GEMMs).
- `compile`: `torch.compile` of the UNet in place (`nn.Module.compile`, so the state dict and the generator
  version do not change); "reduce-overhead" also captures CUDA graphs (CUDA only: shapes are static per batch
  size, and a step marker before each UNet call tells the graph trees that the previous outputs are consumed).
- `tiny_decoder`: decode latents with a TAEF2-layout tiny autoencoder instead of the pipeline's VAE. It reads
  FLUX.2 latents (32 channels), so it applies to a pipeline whose VAE makes 32-channel latents.

Covers stay equal to the plain pipeline's within each switch's rounding (tests/generation/test_fast.py).
"""

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from icg_rec.device import DeviceError, resolve_device, resolve_dtype
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.sampling import denoise, to_images
from icg_rec.generation.tiny_vae import TinyAutoencoder

COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs", "reduce-overhead")


@dataclass
class FastConfig:
    sdpa: bool = (
        True  # attention through torch's scaled_dot_product_attention (False: diffusers' classic kernel)
    )
    channels_last: bool = False  # NHWC memory format for the UNet and the decoder
    fuse_qkv: bool = False  # fused q/k/v (self-attention) and k/v (cross-attention) projections; needs sdpa
    compile: str = (
        "off"  # torch.compile mode of the UNet, one of COMPILE_MODES ("reduce-overhead": CUDA graphs)
    )
    tiny_decoder: str = ""  # local TAEF2 folder: decode 32-channel latents with it ("" = the pipeline's VAE)


class _StepMarked:
    """Calls the CUDA-graphed UNet after marking a new step, so each call may reuse the graph's memory."""

    def __init__(self, unet: Any) -> None:
        self.unet = unet

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return self.unet(*args, **kwargs)


class FastSampler:
    """Samples covers from an ICGPipeline with the `FastConfig` switches.

    Args:
        pipeline: the pipeline; `prepare` moves it to `device`, casts its UNet and VAE to `dtype` and
            applies the switches, in place.
        config: the switches (defaults: SDPA on, everything else off).
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`).
        dtype: "float32", "bfloat16" or "float16" (CUDA only) for the UNet and the decoder.
    """

    def __init__(
        self,
        pipeline: ICGPipeline,
        config: FastConfig | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.pipeline = pipeline
        self.config = config or FastConfig()
        self.device = device
        self.dtype = dtype

    def prepare(self) -> "FastSampler":
        """Checks the switches against the device and the pipeline, then applies them (once).

        Returns:
            self, with `device_`, `dtype_` and `decoder_` (the tiny autoencoder or None).
        """
        if hasattr(self, "device_"):
            return self
        config, pipe = self.config, self.pipeline
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        if config.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {config.compile!r}")
        if config.compile == "reduce-overhead" and device.type != "cuda":
            raise DeviceError("compile='reduce-overhead' captures CUDA graphs: it needs device='cuda'")
        if config.fuse_qkv and not config.sdpa:
            raise ValueError("fuse_qkv uses diffusers' fused SDPA processor: it needs sdpa=True")
        decoder = None
        if config.tiny_decoder:
            if pipe.vae is None:
                raise ValueError(
                    "tiny_decoder decodes latents, but this pipeline's UNet works in pixel space"
                )
            if pipe.unet.config.out_channels != TinyAutoencoder.latent_channels:
                raise ValueError(
                    f"tiny_decoder reads {TinyAutoencoder.latent_channels}-channel FLUX.2 latents, but this "
                    f"UNet makes {pipe.unet.config.out_channels}-channel latents"
                )
            decoder = TinyAutoencoder.from_folder(config.tiny_decoder).to(device, dtype)
        pipe.to(device)
        heavy = [pipe.unet] + ([pipe.vae] if pipe.vae is not None else [])
        for module in heavy:
            torch.nn.Module.to(
                module, dtype=dtype
            )  # diffusers' own `to` warns about fp32-kept modules it has none of
            module.set_attn_processor(AttnProcessor2_0() if config.sdpa else AttnProcessor())
            if config.fuse_qkv:
                module.fuse_qkv_projections()
        if config.channels_last:
            for module in heavy + ([decoder] if decoder is not None else []):
                module.to(memory_format=torch.channels_last)
        if config.compile != "off":
            pipe.unet.compile(mode=None if config.compile == "default" else config.compile)
        self.device_, self.dtype_, self.decoder_ = device, dtype, decoder
        return self

    @torch.no_grad()
    def __call__(
        self,
        batch: dict[str, torch.Tensor],
        users: torch.Tensor | None,
        noise: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
    ) -> torch.Tensor:
        """Covers for prepared items and their users.

        Args:
            batch: `prompter.prepare(titles, images)` rows, on the device.
            users: (B, user_dim) user embeddings on the device, or None for the generic user.
            noise: (B, C, h, w) initial noise.
            num_inference_steps: DDIM steps.
            guidance_scale: classifier-free guidance weight.

        Returns:
            (B, 3, H, W) float32 in [0, 1], on the device.
        """
        self.prepare()
        pipe = self.pipeline
        cond, uncond = pipe.conditioning(batch, users)  # (B, K, D) each, in the UNet's dtype
        unet = _StepMarked(pipe.unet) if self.config.compile == "reduce-overhead" else pipe.unet
        noise = noise.to(self.device_, self.dtype_)  # (B, C, h, w)
        if self.config.channels_last:
            noise = noise.contiguous(memory_format=torch.channels_last)
        sample = denoise(unet, pipe.scheduler, cond, uncond, noise, num_inference_steps, guidance_scale)
        if self.decoder_ is not None:
            return self.decoder_.decode(sample / pipe.vae.config.scaling_factor).float()  # (B, 3, H, W)
        return to_images(sample, pipe.vae)  # (B, 3, H, W)
