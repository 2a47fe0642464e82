"""The oracle click model: p(click | user, cover pixels, item), pure torch and differentiable in the pixels."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from icg_rec.errors import SchemaError, UnknownIdError

HUE_BINS = ("red", "yellow", "green", "cyan", "blue", "magenta")  # bin centres every 60 degrees
ATTRIBUTE_NAMES = tuple(f"hue_{h}" for h in HUE_BINS) + (
    "brightness",  # mean luma
    "saturation",  # mean chroma
    "contrast",  # standard deviation of luma
    "centre_focus",  # luma of the centre (Gaussian window) minus the mean luma
    "edge_density",  # mean absolute luma difference between neighbouring pixels
)
_HUE_SHARPNESS = 6.0  # von Mises concentration of the soft hue bins (neighbours 60 deg apart overlap ~5%)
_GREY_MASS = 0.05  # chroma-free pixels dilute the hue histogram by this much per pixel
_CENTRE_SIGMA = 0.35  # width of the centre window, in half-widths of the cover


def visual_attributes(images: torch.Tensor) -> torch.Tensor:
    """Smooth, interpretable attributes of covers; the only thing the oracle reads from pixels.

    Args:
        images: float (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, len(ATTRIBUTE_NAMES)): soft hue histogram of the colourful pixels (6 bins, chroma-weighted,
        about 1 in total for a fully colourful cover, near 0 for a grey one), then brightness,
        saturation, contrast, centre_focus, edge_density.
    """
    r, g, b = images.unbind(dim=1)  # each (B, H, W)
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # (B, H, W)
    opp_a = r - 0.5 * (g + b)  # (B, H, W) red-cyan opponent axis
    opp_b = math.sqrt(3.0) / 2.0 * (g - b)  # (B, H, W) green-blue opponent axis
    chroma = torch.sqrt(opp_a**2 + opp_b**2 + 1e-6)  # (B, H, W) in [0, 1]

    angles = torch.arange(len(HUE_BINS), dtype=images.dtype, device=images.device) * (math.pi / 3.0)
    cos_a, sin_a = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]  # (6, 1, 1) bin centres
    unit_a, unit_b = opp_a / chroma, opp_b / chroma  # (B, H, W) unit hue vector
    cosines = unit_a[:, None] * cos_a + unit_b[:, None] * sin_a  # (B, 6, H, W) cos(hue - bin centre)
    weights = torch.exp(_HUE_SHARPNESS * (cosines - 1.0))  # (B, 6, H, W) von Mises bump per bin, 1 at centre
    colourful = torch.einsum("bhw,bkhw->bk", chroma, weights)  # (B, 6) chroma mass per bin
    n_pixels = luma.shape[1] * luma.shape[2]
    hue_hist = colourful / (chroma.sum(dim=(1, 2))[:, None] + _GREY_MASS * n_pixels)  # (B, 6)

    brightness = luma.mean(dim=(1, 2))  # (B,)
    saturation = chroma.mean(dim=(1, 2))  # (B,)
    contrast = torch.sqrt(((luma - brightness[:, None, None]) ** 2).mean(dim=(1, 2)) + 1e-6)  # (B,)
    window = _centre_window(luma.shape[1], luma.shape[2], images)  # (H, W), sums to 1
    centre_focus = (luma * window).sum(dim=(1, 2)) - brightness  # (B,)
    edges_y = (luma[:, 1:, :] - luma[:, :-1, :]).abs().mean(dim=(1, 2))  # (B,)
    edges_x = (luma[:, :, 1:] - luma[:, :, :-1]).abs().mean(dim=(1, 2))  # (B,)
    scalars = torch.stack(
        [brightness, saturation, contrast, centre_focus, edges_y + edges_x], dim=1
    )  # (B, 5)
    return torch.cat([hue_hist, scalars], dim=1)  # (B, A)


visual_attributes.names = ATTRIBUTE_NAMES  # type: ignore[attr-defined]


def _centre_window(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    ys = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) / height * 2.0 - 1.0
    xs = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) / width * 2.0 - 1.0
    window = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2.0 * _CENTRE_SIGMA**2))  # (H, W)
    return window / window.sum()


class OracleClickModel(nn.Module):
    """Ground-truth click model of a SimWorld.

    logit = user_bias[u] + taste_scale * <user_taste[u], clip(standardized attributes(image))>
            + (item_quality[i] + user_genre_affinity[u, item_genre[i]]  if item ids are given)
    p = sigmoid(logit). `attributes` is the world's taste family (`icg_rec.data.sim.tastes`; by default
    the colour statistics `visual_attributes`). Attributes are standardized with the mean/std over the
    world's reference covers and soft-clipped to +-attribute_clip (tanh), so no cover can push the visual
    term without bound. Covers larger than `image_size` are area-downsampled to it before they are read.
    """

    def __init__(
        self,
        user_taste: torch.Tensor,
        user_bias: torch.Tensor,
        user_genre_affinity: torch.Tensor,
        cohort_taste: torch.Tensor,
        item_quality: torch.Tensor,
        item_genre: torch.Tensor,
        attribute_mean: torch.Tensor,
        attribute_std: torch.Tensor,
        taste_scale: float,
        attribute_clip: float,
        image_size: int,
        attributes: Callable[[torch.Tensor], torch.Tensor] = visual_attributes,
    ) -> None:
        """Holds the world's ground truth as buffers (so `.to(device)` moves it).

        Args:
            user_taste: (n_users, A) visual taste per user.
            user_bias: (n_users,) logit offset per user (includes the base rate).
            user_genre_affinity: (n_users, n_genres) logit added for items of each genre.
            cohort_taste: (n_cohorts, A) cohort centroids of user_taste.
            item_quality: (n_items,) logit offset per item.
            item_genre: (n_items,) int64 genre index per item.
            attribute_mean: (A,) mean of visual_attributes over the reference covers.
            attribute_std: (A,) their standard deviation.
            taste_scale: weight of the visual-taste term.
            attribute_clip: soft clip of the standardized attributes.
            image_size: cover side S the attributes are read at.
            attributes: pixels (B, 3, S, S) -> raw attributes (B, A), differentiable; an nn.Module one
                becomes a submodule (its buffers move with `.to(device)`).
        """
        super().__init__()
        if user_taste.shape[1] != attribute_mean.shape[0]:
            raise SchemaError(
                f"user_taste has {user_taste.shape[1]} attributes but attribute_mean has {attribute_mean.shape[0]}"
            )
        self.attributes = attributes
        self.register_buffer("user_taste", user_taste.float())
        self.register_buffer("user_bias", user_bias.float())
        self.register_buffer("user_genre_affinity", user_genre_affinity.float())
        self.register_buffer("cohort_taste", cohort_taste.float())
        self.register_buffer("item_quality", item_quality.float())
        self.register_buffer("item_genre", item_genre.long())
        self.register_buffer("attribute_mean", attribute_mean.float())
        self.register_buffer("attribute_std", attribute_std.float())
        self.taste_scale = taste_scale
        self.attribute_clip = attribute_clip
        self.image_size = image_size

    @property
    def n_users(self) -> int:
        return self.user_taste.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_quality.shape[0]

    def visual_attributes(self, images: torch.Tensor) -> torch.Tensor:
        """Raw attributes (B, A) of covers, after checking and resizing them (the world's taste family)."""
        return self.attributes(self._prepare(images))

    def standardized_attributes(self, images: torch.Tensor) -> torch.Tensor:
        """Attributes (B, A) standardized over the reference covers and soft-clipped to +-attribute_clip."""
        return self.standardize(self.visual_attributes(images))

    def standardize(self, attributes: torch.Tensor) -> torch.Tensor:
        """Raw attributes (B, A) -> standardized over the reference covers, soft-clipped to +-attribute_clip."""
        z = (attributes - self.attribute_mean) / self.attribute_std  # (B, A)
        return self.attribute_clip * torch.tanh(z / self.attribute_clip)

    def logits(
        self, user_ids: torch.Tensor, images: torch.Tensor, item_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Click logits (B,); see click_prob."""
        users = self._check_ids(user_ids, self.n_users, "user")
        images = self._prepare(images)  # (B, 3, S, S)
        if images.shape[0] != users.shape[0]:
            raise SchemaError(
                f"images must be (B, 3, H, W) with B = {users.shape[0]} user ids, got {images.shape[0]} images"
            )
        return self.logits_from_attributes(users, self.standardize(self.attributes(images)), item_ids)

    def click_prob(
        self, user_ids: torch.Tensor, images: torch.Tensor, item_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Oracle p(click) of each user on each cover, differentiable in `images`.

        Args:
            user_ids: int (B,) in 0..n_users-1.
            images: float (B, 3, H, W) in [0, 1], H, W >= S; larger ones are area-downsampled to (S, S).
            item_ids: int (B,) in 0..n_items-1, or None to leave out the item terms (quality and genre).

        Returns:
            (B,) probabilities, on the oracle's device (move the oracle with `.to(device)`).
        """
        return torch.sigmoid(self.logits(user_ids, images, item_ids))

    def logits_from_attributes(
        self, user_ids: torch.Tensor, z: torch.Tensor, item_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Click logits (B,) from standardized attributes z (B, A), as `standardized_attributes` returns them."""
        users = self._check_ids(user_ids, self.n_users, "user")
        logit = self.user_bias[users] + self.taste_scale * (self.user_taste[users] * z).sum(dim=1)  # (B,)
        if item_ids is not None:
            items = self._check_ids(item_ids, self.n_items, "item")
            if items.shape != users.shape:
                raise SchemaError(
                    f"item_ids must have shape {tuple(users.shape)} like user_ids, got {tuple(items.shape)}"
                )
            logit = logit + self.item_quality[items] + self.user_genre_affinity[users, self.item_genre[items]]
        return logit

    def cohort_taste_logit(self, images: torch.Tensor) -> torch.Tensor:
        """Visual-taste term of each cohort centroid on each cover: (B, n_cohorts)."""
        return self.taste_scale * self.standardized_attributes(images) @ self.cohort_taste.T  # (B, C)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[2:]) < size:
            raise SchemaError(
                f"images must be float (B, 3, H, W) RGB in [0, 1] with H, W >= {size} "
                f"(larger covers are area-downsampled to {size}x{size}), got shape {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise SchemaError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")
        low, high = images.detach().aminmax()
        if not (low >= -1e-4 and high <= 1.0 + 1e-4):  # also refuses NaN
            raise SchemaError(
                f"images must hold values in [0, 1], got min {low.item():.4g}, max {high.item():.4g}"
            )
        images = images.to(self.attribute_mean.device)
        if images.shape[2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="area")  # (B, 3, S, S) block averages
        return images

    def _check_ids(self, ids: torch.Tensor, n: int, kind: str) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        if ids.ndim != 1 or ids.is_floating_point():
            raise SchemaError(
                f"{kind}_ids must be an integer tensor of shape (B,), got {ids.dtype} {tuple(ids.shape)}"
            )
        ids = ids.to(device=self.user_bias.device, dtype=torch.int64)
        bad = ids[(ids < 0) | (ids >= n)]
        if bad.numel():
            raise UnknownIdError(
                f"unknown {kind} id(s) {bad[:5].tolist()}: this world has {kind} ids 0..{n - 1}"
            )
        return ids
