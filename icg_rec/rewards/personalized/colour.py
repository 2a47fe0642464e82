"""A fixed, differentiable colour and light descriptor of covers: what the pixel tower reads besides convs."""

import torch


def colour_statistics(pixels: torch.Tensor, bins: int = 12) -> torch.Tensor:
    """Fixed, differentiable colour and light statistics of covers (a classic image descriptor).

    A chroma-weighted soft hue histogram (`bins` von Mises bumps on the hexcone hue angle; about 0 for a
    grey cover), then mean and standard deviation of luma, mean chroma (max - min of RGB), centre minus
    overall luma (centre = the inner half of each side) and edge density (mean |luma difference| between
    neighbouring pixels).

    Args:
        pixels: (batch, 3, H, W) RGB in [0, 1].
        bins: hue bins, evenly spaced from red.

    Returns:
        (batch, bins + 5).
    """
    r, g, b = pixels.unbind(dim=1)  # each (batch, H, W)
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # (batch, H, W)
    chroma = pixels.amax(dim=1) - pixels.amin(dim=1)  # (batch, H, W)
    opp_a, opp_b = 2.0 * r - g - b, 3.0**0.5 * (g - b)  # (batch, H, W) hexcone hue plane, red on +a
    norm = torch.sqrt(opp_a**2 + opp_b**2 + 1e-8)  # (batch, H, W); eps: finite gradients on grey pixels
    angles = torch.arange(bins, dtype=pixels.dtype, device=pixels.device) * (2.0 * torch.pi / bins)
    cos_c, sin_c = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]  # (bins, 1, 1)
    cosines = (opp_a[:, None] * cos_c + opp_b[:, None] * sin_c) / norm[:, None]  # (batch, bins, H, W)
    bumps = torch.exp(4.0 * (cosines - 1.0))  # von Mises, concentration 4: broad, neighbouring bins overlap
    hist = (bumps * chroma[:, None]).mean(dim=(2, 3))  # (batch, bins)
    h, w = luma.shape[1:]
    centre = luma[:, h // 4 : h - h // 4, w // 4 : w - w // 4].mean(dim=(1, 2))  # (batch,)
    mean = luma.mean(dim=(1, 2))  # (batch,)
    edges = (luma[:, 1:] - luma[:, :-1]).abs().mean(dim=(1, 2)) + (
        luma[:, :, 1:] - luma[:, :, :-1]
    ).abs().mean(dim=(1, 2))  # (batch,)
    scalars = [mean, luma.flatten(1).std(dim=1), chroma.mean(dim=(1, 2)), centre - mean, edges]
    return torch.cat([hist, torch.stack(scalars, dim=1)], dim=1)  # (batch, bins + 5)
