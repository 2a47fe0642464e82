"""The denoising loop, written so that only the last K steps keep a graph (truncated backprop, DRaFT-K).

Steps before the last `grad_steps` run under `torch.no_grad()`; the last `grad_steps` run with autograd
enabled (when the caller has it enabled), so a loss on the decoded images reaches the conditioning
tokens, and through them the adapter, refiner and meta tokens, at the memory cost of K UNet passes.
"""

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel


def denoise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    noise: torch.Tensor,
    num_inference_steps: int,
    guidance_scale: float = 1.0,
    grad_steps: int = 0,
    progress: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """Runs the sampler from `noise` to a clean sample (latent or pixel space).

    Args:
        unet: the denoiser.
        scheduler: a diffusers scheduler (DDIM recommended: deterministic with eta 0).
        cond: (B, T, D) conditioning tokens.
        uncond: (B, T, D) tokens of the null condition, or None when guidance_scale is 1.
        noise: (B, C, H, W) initial noise (unit variance); the caller seeds it.
        num_inference_steps: sampler steps.
        guidance_scale: classifier-free guidance weight (1 = conditional only).
        grad_steps: the last this-many steps keep a graph; earlier ones run under no_grad.
        progress: optional callback called with the step index after every step.

    Returns:
        (B, C, H, W) the final sample; it carries a graph iff grad_steps > 0 and grad is enabled.
    """
    if grad_steps < 0 or grad_steps > num_inference_steps:
        raise ValueError(f"grad_steps must be in [0, {num_inference_steps}], got {grad_steps}")
    guided = guidance_scale != 1.0
    if guided and uncond is None:
        raise ValueError("guidance_scale != 1 needs the null-condition tokens `uncond`")
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    sample = noise * scheduler.init_noise_sigma  # (B, C, H, W)
    timesteps = scheduler.timesteps
    first_grad = len(timesteps) - grad_steps
    tokens = torch.cat([uncond, cond]) if guided else cond  # (2B or B, T, D)
    for index, t in enumerate(timesteps):
        with torch.set_grad_enabled(torch.is_grad_enabled() and index >= first_grad):
            if index == first_grad:
                sample = sample.detach()
            model_in = torch.cat([sample, sample]) if guided else sample
            model_in = scheduler.scale_model_input(model_in, t)
            eps = unet(model_in, t, encoder_hidden_states=tokens).sample  # (2B or B, C, H, W)
            if guided:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            sample = scheduler.step(eps, t, sample).prev_sample  # (B, C, H, W)
        if progress is not None:
            progress(index)
    return sample


def to_images(sample: torch.Tensor, vae: AutoencoderKL | None) -> torch.Tensor:
    """Decodes a final sample to RGB in [0, 1] (pixel space when `vae` is None).

    Args:
        sample: (B, C, h, w) latents, or (B, 3, H, W) pixels in [-1, 1].
        vae: the latent decoder, or None for a pixel-space UNet.

    Returns:
        (B, 3, H, W) float images in [0, 1], differentiable in `sample`.
    """
    if vae is not None:
        sample = vae.decode(sample / vae.config.scaling_factor).sample  # (B, 3, H, W) in ~[-1, 1]
    return ((sample.float() + 1) / 2).clamp(0, 1)


def to_model_space(
    images: torch.Tensor, vae: AutoencoderKL | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Encodes RGB images in [0, 1] to what the UNet denoises (latents, or pixels in [-1, 1]).

    Args:
        images: (B, 3, H, W) float in [0, 1].
        vae: the latent encoder, or None for a pixel-space UNet.
        generator: seeds the VAE posterior sample.

    Returns:
        (B, C, h, w) clean samples for the denoising loss.
    """
    pixels = images * 2 - 1  # (B, 3, H, W) in [-1, 1]
    if vae is None:
        return pixels
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator)  # (B, C, h, w)
    return latents * vae.config.scaling_factor


def denoising_target(
    scheduler: SchedulerMixin, clean: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """What the UNet is trained to predict for `scheduler.config.prediction_type`: x0, v or epsilon.

    Args:
        scheduler: the pipeline's scheduler.
        clean: (B, C, h, w) clean samples in model space.
        noise: (B, C, h, w) the noise added to them.
        steps: (B,) timesteps.

    Returns:
        (B, C, h, w) regression target.
    """
    prediction = scheduler.config.prediction_type
    if prediction == "sample":
        return clean
    if prediction == "v_prediction":
        return scheduler.get_velocity(clean, noise, steps)
    return noise
