"""Taste families: what a SimWorld user's visual taste reads from a cover (pixels -> attributes).

The oracle's visual term is `<user taste, standardized attributes(cover)>`. An attribute function maps
covers (B, 3, S, S) RGB in [0, 1] to (B, A) numbers, differentiably in the pixels; the world standardizes
them over its reference covers. Built in (`taste_attributes(name, seed)`):

  colour       hue histogram, brightness, saturation, contrast, centre focus, edges (`visual_attributes`)
  composition  where the subject is, how large, how elongated or cornered, how it stands out from the ground
  random_conv  a fixed random convolutional feature map (seeded): a taste no human would name

Any other callable with the same contract works (`SimWorld.generate(config, attributes=fn)`); an optional
`names` attribute (one name per output column) labels its attributes in reports.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from icg_rec.data.sim.oracle import visual_attributes

TASTES = ("colour", "composition", "random_conv")  # built-in families; "custom" = a callable you pass
Attributes = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) in [0, 1] -> (B, A), differentiable

COMPOSITION_NAMES = (
    "figure_x",  # horizontal centre of the figure, -1 left .. 1 right
    "figure_y",  # vertical centre of the figure, -1 top .. 1 bottom
    "figure_area",  # share of the cover the figure covers (soft)
    "figure_spread",  # root mean squared distance of the figure's mass from its centre
    "elongation",  # 0 round .. 1 a line: (l1 - l2) / (l1 + l2) of the figure's second moments
    "cornerness",  # mass toward the diagonals (squares) above 0.5, toward the axes (diamonds) below
    "figure_ground_luma",  # mean luma of the figure minus that of the ground
    "figure_ground_distance",  # mean RGB distance of the figure's pixels from the ground colour
)
_FIGURE_FLOOR = 0.05  # figure weight = (distance from the ground / (the largest distance + this))^2


def composition_attributes(images: torch.Tensor) -> torch.Tensor:
    """Composition and shape of covers: a soft figure/ground split, then the figure's moments.

    The ground colour is the mean of the cover's outermost ring of pixels; a pixel's figure weight is the
    square of its RGB distance from that colour over the cover's largest distance (plus a floor, so a flat
    cover has no figure; squared, so the ground's shading and texture weigh little). Position, area, spread, elongation and cornerness are weighted moments of those weights.

    Args:
        images: float (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, len(COMPOSITION_NAMES)), in that order.
    """
    b, _, h, w = images.shape
    ring = torch.ones(h, w, dtype=images.dtype, device=images.device)
    ring[1:-1, 1:-1] = 0.0
    ground = (images * ring).sum(dim=(2, 3)) / ring.sum()  # (B, 3) mean colour of the border ring
    distance = torch.sqrt(((images - ground[:, :, None, None]) ** 2).sum(dim=1) + 1e-8)  # (B, H, W)
    largest = distance.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    weight = (distance / (largest + _FIGURE_FLOOR)) ** 2  # (B, H, W) in [0, 1)
    mass = weight.sum(dim=(1, 2)) + 1e-6  # (B,)

    ys = (torch.arange(h, dtype=images.dtype, device=images.device) + 0.5) / h * 2.0 - 1.0
    xs = (torch.arange(w, dtype=images.dtype, device=images.device) + 0.5) / w * 2.0 - 1.0
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) pixel centres in [-1, 1]

    def moment(values: torch.Tensor) -> torch.Tensor:  # figure-weighted mean of (B, H, W) values, (B,)
        return (weight * values).sum(dim=(1, 2)) / mass

    cx, cy = moment(x.expand(b, h, w)), moment(y.expand(b, h, w))  # (B,)
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]  # (B, H, W) offsets from the figure centre
    sxx, syy, sxy = moment(dx * dx), moment(dy * dy), moment(dx * dy)  # (B,) second moments
    trace = sxx + syy + 1e-6
    gap = torch.sqrt((sxx - syy) ** 2 + 4.0 * sxy**2 + 1e-8)  # (B,) l1 - l2
    r2 = dx * dx + dy * dy  # (B, H, W)
    cornerness = 4.0 * moment(dx * dx * dy * dy) / (moment(r2 * r2) + 1e-6)  # (B,) 0.5 for a disk

    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]  # (B, H, W)
    ground_mass = (1.0 - weight).sum(dim=(1, 2)) + 1e-6  # (B,)
    ground_luma = ((1.0 - weight) * luma).sum(dim=(1, 2)) / ground_mass  # (B,)
    return torch.stack(
        [
            cx,
            cy,
            weight.mean(dim=(1, 2)),
            torch.sqrt(trace),
            gap / trace,
            cornerness,
            moment(luma) - ground_luma,
            moment(distance),
        ],
        dim=1,
    )  # (B, 8)


composition_attributes.names = COMPOSITION_NAMES  # type: ignore[attr-defined]


class RandomConvAttributes(nn.Module):
    """A fixed random convolutional feature map: two strided convs with tanh, averaged over the cover.

    The weights are drawn once from `seed` (He-scaled, so tanh stays in its graded range) and never
    train; they are buffers, so `.to(device)` moves them and `state_dict` records them.

    Args:
        seed: draws the weights.
        channels: attributes returned (channels of the second conv).
        hidden: channels of the first conv.
    """

    def __init__(self, seed: int, channels: int = 12, hidden: int = 16) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("w1", torch.randn(hidden, 3, 5, 5, generator=gen) * math.sqrt(2.0 / 75.0))
        self.register_buffer("b1", 0.1 * torch.randn(hidden, generator=gen))
        self.register_buffer(
            "w2", torch.randn(channels, hidden, 3, 3, generator=gen) * math.sqrt(2.0 / (9.0 * hidden))
        )
        self.register_buffer("b2", 0.1 * torch.randn(channels, generator=gen))
        self.names = tuple(f"conv_{k}" for k in range(channels))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] -> (B, channels)."""
        x = (images - 0.5) * 2.0  # (B, 3, S, S) in [-1, 1]
        x = torch.tanh(F.conv2d(x, self.w1, self.b1, stride=2, padding=2))  # (B, hidden, S/2, S/2)
        x = torch.tanh(F.conv2d(x, self.w2, self.b2, stride=2, padding=1))  # (B, channels, S/4, S/4)
        return x.mean(dim=(2, 3))  # (B, channels)


def taste_attributes(name: str, seed: int) -> Attributes:
    """The attribute function of a built-in taste family.

    Args:
        name: one of TASTES.
        seed: draws the random_conv weights (the others are fixed functions).

    Returns:
        A callable (B, 3, S, S) -> (B, A) with a `names` attribute.
    """
    if name == "colour":
        return visual_attributes
    if name == "composition":
        return composition_attributes
    if name == "random_conv":
        return RandomConvAttributes(seed)
    raise ValueError(f"unknown taste family {name!r}; built in: {TASTES} (or pass attributes= for 'custom')")


def attribute_names(attributes: Attributes, count: int) -> tuple[str, ...]:
    """The callable's `names` when it has one name per column, else attribute_0 .. attribute_{count-1}."""
    names = tuple(getattr(attributes, "names", ()))
    return names if len(names) == count else tuple(f"attribute_{k}" for k in range(count))
