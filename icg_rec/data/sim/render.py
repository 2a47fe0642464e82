"""Procedural covers: a style (palette, brightness, saturation, subject, texture) rendered to pixels."""

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from icg_rec.errors import SchemaError

SHAPES = ("disk", "square", "diamond")  # index = CoverStyle.shape
_STRIPE_CYCLES = 6.0  # diagonal stripes across the cover, when stripes > 0


@dataclass
class CoverStyle:
    """A batch of cover styles; every field is a (n,) tensor, floats in [0, 1] unless noted."""

    hue: torch.Tensor  # background hue (0 red, 1/6 yellow, 1/3 green, 1/2 cyan, 2/3 blue, 5/6 magenta)
    saturation: torch.Tensor  # colourfulness of background and subject (0 = grey)
    brightness: torch.Tensor  # background value (0 = black)
    accent_hue: torch.Tensor  # subject hue
    subject_brightness: torch.Tensor  # subject value
    subject_size: torch.Tensor  # subject radius, 0 = small (0.15 of the half-width), 1 = large (0.8)
    shape: torch.Tensor  # int64 index into SHAPES
    stripes: torch.Tensor  # amplitude of a diagonal stripe texture on the background (edges)
    subject_x: torch.Tensor | None = None  # subject centre right of the middle, in half-widths (None = 0)
    subject_y: torch.Tensor | None = None  # subject centre below the middle, in half-heights (None = 0)

    @classmethod
    def build(cls, **values: float | Sequence[float] | torch.Tensor) -> "CoverStyle":
        """A style batch from numbers or sequences; fields left out take neutral values.

        Args:
            **values: field name -> number (broadcast) or sequence of length n.

        Returns:
            The batch; its size is the longest sequence given (1 if only numbers).
        """
        defaults = {
            "hue": 0.0,
            "saturation": 0.5,
            "brightness": 0.5,
            "accent_hue": 0.5,
            "subject_brightness": 0.5,
            "subject_size": 0.5,
            "shape": 0,
            "stripes": 0.0,
            "subject_x": 0.0,
            "subject_y": 0.0,
        }
        if unknown := sorted(set(values) - set(defaults)):
            raise SchemaError(f"unknown CoverStyle field(s) {unknown}; known: {list(defaults)}")
        merged = {name: torch.as_tensor(values.get(name, default)) for name, default in defaults.items()}
        n = max(v.numel() for v in merged.values())
        out = {}
        for name, value in merged.items():
            dtype = torch.int64 if name == "shape" else torch.float32
            flat = value.to(dtype).reshape(-1)
            out[name] = flat.expand(n).clone() if flat.numel() == 1 else flat
            if out[name].shape != (n,):
                raise SchemaError(f"CoverStyle field {name!r} has {value.numel()} values; expected 1 or {n}")
        return cls(**out)

    def __len__(self) -> int:
        return self.hue.shape[0]

    def take(self, index: torch.Tensor) -> "CoverStyle":
        """The styles at `index` (int64 (k,))."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return CoverStyle(**{k: None if v is None else v[index] for k, v in values.items()})


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] to RGB in [0, 1], elementwise; the RGB channels are stacked on a new first axis."""
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(n + hue * 6.0, 6.0)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels)  # (3, *hue.shape)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values.float()[:, None, None]  # (n,) -> (n, 1, 1)


def render_covers(style: CoverStyle, size: int = 64) -> torch.Tensor:
    """Renders each style as a square cover, quantized to 8-bit levels (PNG round trips are exact).

    Args:
        style: n styles.
        size: side S in pixels.

    Returns:
        float32 (n, 3, S, S) in [0, 1].
    """
    if size < 8:
        raise SchemaError(f"cover size must be at least 8 pixels, got {size}")
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)
    col = _column
    shading = 1.0 - 0.25 * (y + 1.0) / 2.0  # (S, S) gentle top-to-bottom fall-off
    waves = 0.5 + 0.5 * torch.sin(torch.pi * _STRIPE_CYCLES * (x + y))  # (S, S)
    bg_value = col(style.brightness) * shading * (1.0 - 0.6 * col(style.stripes) * waves)  # (n, S, S)
    background = hsv_to_rgb(col(style.hue), col(style.saturation), bg_value)  # (3, n, S, S)

    zero = torch.zeros(len(style))
    sx = x - col(zero if style.subject_x is None else style.subject_x)  # (n, S, S) from the subject centre
    sy = y - col(zero if style.subject_y is None else style.subject_y)  # (n, S, S)
    distances = torch.stack(
        [torch.sqrt(sx**2 + sy**2), torch.maximum(sx.abs(), sy.abs()), (sx.abs() + sy.abs()) * 0.75]
    )  # (3, n, S, S)
    distance = distances[style.shape, torch.arange(len(style))]  # (n, S, S) per-style shape metric
    radius = 0.15 + 0.65 * col(style.subject_size)  # (n, 1, 1)
    mask = torch.sigmoid((radius - distance) * size / 2.0)  # (n, S, S) soft-edged subject
    subject = hsv_to_rgb(
        col(style.accent_hue), col(style.saturation), col(style.subject_brightness)
    )  # (3, n, 1, 1)

    covers = background * (1.0 - mask) + subject * mask  # (3, n, S, S)
    covers = torch.round(covers.clamp(0.0, 1.0) * 255.0) / 255.0
    return covers.permute(1, 0, 2, 3).contiguous()  # (n, 3, S, S)
