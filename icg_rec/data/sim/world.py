"""SimWorld: items with rendered covers, users with cohort tastes, and a click log drawn from the oracle."""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from icg_rec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA, Dataset
from icg_rec.data.sim.oracle import OracleClickModel
from icg_rec.data.sim.render import SHAPES, CoverStyle, render_covers
from icg_rec.data.sim.tastes import TASTES, Attributes, attribute_names, taste_attributes
from icg_rec.io import atomic_write


@dataclass
class SimConfig:
    n_users: int = 2000  # users, ids 0..n_users-1
    n_items: int = 400  # items, ids 0..n_items-1
    n_cohorts: int = 8  # taste clusters the users are drawn around
    image_size: int = 64  # cover side S in pixels
    impressions_per_user: int = 40  # distinct items shown to each user
    seed: int = 0  # every number in the world is a function of this seed
    base_logit: float = -2.6  # click logit of an average user on an average cover of an average item
    user_bias_sd: float = 0.5  # spread of per-user click propensity (logit)
    quality_sd: float = 0.5  # spread of per-item quality (logit)
    genre_scale: float = 0.5  # spread of a user's affinity to each genre (logit)
    taste_scale: float = 0.8  # weight of <user taste, standardized cover attributes> (logit)
    cohort_spread: float = 0.35  # norm of a user's taste deviation from the unit-norm cohort centroid
    attribute_clip: float = 2.5  # standardized cover attributes are soft-clipped to +-this (tanh)
    popularity_alpha: float = 0.8  # Zipf exponent of item exposure (0 = uniform)
    start_time: int = 1_600_000_000  # unix seconds of the log's start
    days: int = 90  # impressions are spread uniformly over this many days
    taste: str = "colour"  # what users' visual taste reads (icg_rec.data.sim.tastes.TASTES, or "custom")
    subject_offset: float = 0.0  # subjects up to this far off-centre, in half-widths (> 0 for composition)


# genre: (name, typical background hue, typical brightness, title words)
GENRES = (
    ("Horror", 0.00, 0.20, ("Curse", "Crypt", "Haunting")),
    ("Comedy", 0.15, 0.80, ("Party", "Holiday", "Wedding")),
    ("Adventure", 0.32, 0.60, ("Quest", "Voyage", "Trail")),
    ("SciFi", 0.52, 0.35, ("Signal", "Orbit", "Protocol")),
    ("Drama", 0.64, 0.45, ("Letters", "Promise", "Silence")),
    ("Thriller", 0.76, 0.30, ("Alibi", "Witness", "Chase")),
    ("Romance", 0.90, 0.70, ("Kiss", "Summer", "Heart")),
    ("Animation", 0.08, 0.85, ("Friends", "Kingdom", "Toys")),
)
# title colour word by hue bin (red, yellow, green, cyan, blue, magenta), and for greyish covers
_COLOUR_WORDS = (
    ("Crimson", "Scarlet", "Red"),
    ("Golden", "Amber", "Yellow"),
    ("Emerald", "Jade", "Green"),
    ("Teal", "Cyan", "Turquoise"),
    ("Azure", "Cobalt", "Blue"),
    ("Violet", "Magenta", "Rose"),
)
_GREY_WORDS = ("Grey", "Silver", "Pale")
_NOUNS = (
    ("Night", "Shadow", "Midnight"),
    ("Dusk", "Haze", "Tide"),
    ("Dawn", "Sun", "Daylight"),
)  # dark/mid/bright


@dataclass
class SimWorld:
    """A synthetic platform with known ground truth; build it with `SimWorld.generate(config)`."""

    config: SimConfig
    dataset: Dataset  # interactions labelled by the oracle; items with title/text, image_path null
    covers: torch.Tensor  # (n_items, 3, S, S) float32 in [0, 1], each item's reference cover
    item_style: CoverStyle  # the style each reference cover was rendered from
    item_genre: torch.Tensor  # (n_items,) int64 index into GENRES
    item_quality: torch.Tensor  # (n_items,) logit offset per item
    user_taste: torch.Tensor  # (n_users, A) visual taste per user (A = the taste family's attributes)
    user_cohort: torch.Tensor  # (n_users,) int64 cohort of each user
    oracle: OracleClickModel  # ground-truth click model; reads pixels
    impression_prob: torch.Tensor  # (n_interactions,) oracle p of each logged row, in row order

    @classmethod
    def generate(cls, config: SimConfig, attributes: Attributes | None = None) -> "SimWorld":
        """Draws a whole world from `config.seed`; same config (and attributes), same tensors and frames.

        Args:
            config: sizes, scales, taste family and seed.
            attributes: the taste's attribute function (pixels (B, 3, S, S) -> (B, A), differentiable) when
                `config.taste` is "custom"; None for a built-in family.

        Returns:
            The world.
        """
        _check_config(config)
        if (attributes is None) != (config.taste != "custom"):
            raise ValueError(
                f"SimConfig.taste is {config.taste!r}: pass attributes= exactly when taste is 'custom' "
                f"(built in: {TASTES})"
            )
        read = attributes if attributes is not None else taste_attributes(config.taste, config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        genre, secondary, style = _draw_items(config.n_items, gen)
        if config.subject_offset > 0:  # its own stream: the rest of the world does not change with it
            style = _offset_subjects(style, config.subject_offset, config.seed)
        covers = render_covers(style, config.image_size)  # (n_items, 3, S, S)
        with torch.no_grad():
            values = read(covers)  # (n_items, A)
        _check_attributes(values, covers, read)
        n_attr = values.shape[1]

        centroids = torch.randn(config.n_cohorts, n_attr, generator=gen)
        centroids = centroids / centroids.norm(dim=1, keepdim=True)  # (C, A) unit-norm cohort tastes
        cohort = torch.randint(config.n_cohorts, (config.n_users,), generator=gen)  # (n_users,)
        deviation = torch.randn(config.n_users, n_attr, generator=gen) / n_attr**0.5  # (n_users, A), norm ~1
        taste = centroids[cohort] + config.cohort_spread * deviation  # (n_users, A)
        cohort_genre = torch.randn(config.n_cohorts, len(GENRES), generator=gen)  # (C, G)
        genre_noise = torch.randn(config.n_users, len(GENRES), generator=gen)  # (n_users, G)
        genre_affinity = (
            config.genre_scale * (cohort_genre[cohort] + 0.5 * genre_noise) / 1.25**0.5
        )  # (n_users, G)
        user_bias = config.base_logit + config.user_bias_sd * torch.randn(config.n_users, generator=gen)
        quality = config.quality_sd * torch.randn(config.n_items, generator=gen)

        oracle = OracleClickModel(
            user_taste=taste,
            user_bias=user_bias,
            user_genre_affinity=genre_affinity,
            cohort_taste=centroids,
            item_quality=quality,
            item_genre=genre,
            attribute_mean=values.mean(dim=0),
            attribute_std=values.std(dim=0),
            taste_scale=config.taste_scale,
            attribute_clip=config.attribute_clip,
            image_size=config.image_size,
            attributes=read,
        )
        users, items, timestamps = _draw_impressions(config, gen)  # each (n_users * k,)
        with torch.no_grad():
            z = oracle.standardize(values)  # (n_items, A)
            prob = torch.sigmoid(oracle.logits_from_attributes(users, z[items], items))  # (N,)
        label = (torch.rand(prob.shape, generator=gen) < prob).double()  # (N,)

        order = np.lexsort((items.numpy(), users.numpy(), timestamps.numpy()))  # by time, then user, item
        interactions = pl.DataFrame(
            {
                "user_id": users.numpy()[order],
                "item_id": items.numpy()[order],
                "label": label.numpy()[order],
                "timestamp": timestamps.numpy()[order],
            },
            schema=INTERACTIONS_SCHEMA,
        )
        titles, texts = _titles_and_texts(genre, secondary, style, gen)
        items_frame = pl.DataFrame(
            {
                "item_id": np.arange(config.n_items),
                "title": titles,
                "text": texts,
                "image_path": [None] * config.n_items,
            },
            schema=ITEMS_SCHEMA,
        )
        users_frame = pl.DataFrame({"user_id": np.arange(config.n_users)}, schema=USERS_SCHEMA)
        return cls(
            config=config,
            dataset=Dataset(name="simworld", interactions=interactions, items=items_frame, users=users_frame),
            covers=covers,
            item_style=style,
            item_genre=genre,
            item_quality=quality,
            user_taste=taste,
            user_cohort=cohort,
            oracle=oracle,
            impression_prob=prob[torch.from_numpy(order)],
        )

    def save_covers(self, folder: str | Path) -> Dataset:
        """Writes each reference cover to `{folder}/{item_id}.png` (atomically; exact 8-bit round trip).

        Args:
            folder: destination, created if missing.

        Returns:
            A copy of `dataset` whose items have `image_path` set to the written files.
        """
        folder = Path(folder).resolve()
        pixels = (self.covers * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n, S, S, 3)
        paths = []
        for item_id, image in enumerate(pixels):
            path = folder / f"{item_id}.png"
            atomic_write(path, lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
            paths.append(str(path))
        items = self.dataset.items.with_columns(pl.Series("image_path", paths, dtype=pl.String))
        return Dataset(
            name=self.dataset.name,
            interactions=self.dataset.interactions,
            items=items,
            users=self.dataset.users,
        )

    def best_cohort_covers(self, n_candidates: int = 2048, seed: int = 0) -> tuple[CoverStyle, torch.Tensor]:
        """Oracle reference: for each cohort, the random style whose cover its centroid taste likes most.

        Args:
            n_candidates: random styles rendered and scored.
            seed: seed of the candidate styles.

        Returns:
            The winning style per cohort (n_cohorts,) and its cover (n_cohorts, 3, S, S).
        """
        gen = torch.Generator().manual_seed(seed)
        candidates = _uniform_styles(n_candidates, gen)
        if self.config.subject_offset > 0:
            candidates = _offset_subjects(candidates, self.config.subject_offset, seed)
        covers = render_covers(candidates, self.config.image_size)  # (n_candidates, 3, S, S)
        with torch.no_grad():
            best = self.oracle.cohort_taste_logit(covers).argmax(dim=0)  # (C,)
        return candidates.take(best), covers[best]


def _check_config(config: SimConfig) -> None:
    for name in ("n_users", "n_items", "n_cohorts", "impressions_per_user", "days"):
        if getattr(config, name) < 1:
            raise ValueError(f"SimConfig.{name} must be >= 1, got {getattr(config, name)}")
    if config.impressions_per_user > config.n_items:
        raise ValueError(
            f"SimConfig.impressions_per_user ({config.impressions_per_user}) must be <= n_items ({config.n_items}): "
            "each user sees distinct items"
        )
    if config.image_size < 8:
        raise ValueError(f"SimConfig.image_size must be >= 8, got {config.image_size}")
    if config.taste not in (*TASTES, "custom"):
        raise ValueError(f"SimConfig.taste must be one of {(*TASTES, 'custom')}, got {config.taste!r}")
    if not 0.0 <= config.subject_offset <= 0.8:
        raise ValueError(
            f"SimConfig.subject_offset must be in [0, 0.8] half-widths, got {config.subject_offset}"
        )
    if config.taste == "composition" and config.subject_offset == 0:
        raise ValueError(
            "SimConfig.taste 'composition' reads where the subject is: give SimConfig.subject_offset > 0 "
            "(e.g. 0.35), else every reference subject is centred and position cannot be standardized"
        )


def _check_attributes(values: torch.Tensor, covers: torch.Tensor, read: Attributes) -> None:
    """The taste's attributes of the reference covers must be finite (n, A) with spread to standardize."""
    if values.ndim != 2 or values.shape[0] != covers.shape[0]:
        raise ValueError(
            f"the taste's attribute function must return (n_covers, A) = ({covers.shape[0]}, A), "
            f"got shape {tuple(values.shape)}"
        )
    if not torch.isfinite(values).all():
        raise ValueError("the taste's attribute function returned non-finite values on the reference covers")
    names = attribute_names(read, values.shape[1])
    if flat := [names[k] for k in torch.nonzero(values.std(dim=0) < 1e-6)[:, 0].tolist()]:
        raise ValueError(
            f"taste attribute(s) {flat} do not vary over the reference covers (std < 1e-6): they cannot be "
            "standardized; drop them or give the covers that variation (e.g. SimConfig.subject_offset)"
        )


def _offset_subjects(style: CoverStyle, offset: float, seed: int) -> CoverStyle:
    """The styles with subject centres drawn uniformly in [-offset, offset]^2, from a stream of `seed`."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    xy = (torch.rand(2, len(style), generator=gen) * 2.0 - 1.0) * offset  # (2, n)
    values = {f.name: getattr(style, f.name) for f in fields(style)}
    return CoverStyle(**(values | {"subject_x": xy[0], "subject_y": xy[1]}))


def _uniform_styles(n: int, gen: torch.Generator) -> CoverStyle:
    u = torch.rand(7, n, generator=gen)
    return CoverStyle(
        hue=u[0],
        saturation=u[1],
        brightness=u[2],
        accent_hue=u[3],
        subject_brightness=u[4],
        subject_size=u[5],
        shape=torch.randint(len(SHAPES), (n,), generator=gen),
        stripes=u[6],
    )


def _draw_items(n_items: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, CoverStyle]:
    """Genre, secondary genre (-1 = none) and a cover style drawn around the genre's look."""
    genre = torch.randint(len(GENRES), (n_items,), generator=gen)  # (n,)
    other = (genre + torch.randint(1, len(GENRES), (n_items,), generator=gen)) % len(GENRES)
    secondary = torch.where(torch.rand(n_items, generator=gen) < 0.5, other, torch.full_like(genre, -1))
    genre_hue = torch.tensor([g[1] for g in GENRES])[genre]  # (n,)
    genre_brightness = torch.tensor([g[2] for g in GENRES])[genre]  # (n,)

    base = _uniform_styles(n_items, gen)
    on_genre = torch.rand(n_items, generator=gen) < 0.75  # the rest take a free hue
    hue = torch.where(on_genre, genre_hue + 0.06 * torch.randn(n_items, generator=gen), base.hue) % 1.0
    brightness = (genre_brightness + 0.15 * torch.randn(n_items, generator=gen)).clamp(0.05, 0.95)
    offsets = torch.tensor([0.5, 1.0 / 12.0, -1.0 / 12.0, 1.0 / 3.0])  # complementary, analogous, triadic
    accent = (hue + offsets[torch.randint(len(offsets), (n_items,), generator=gen)]) % 1.0
    style = CoverStyle(
        hue=hue,
        saturation=0.1 + 0.9 * base.saturation,
        brightness=brightness,
        accent_hue=accent,
        subject_brightness=base.subject_brightness,
        subject_size=base.subject_size,
        shape=base.shape,
        stripes=base.stripes**2,
    )
    return genre, secondary, style


def _draw_impressions(
    config: SimConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user sees k distinct items drawn with Zipf popularity (Gumbel top-k) at sorted random times."""
    k = config.impressions_per_user
    rank = torch.randperm(config.n_items, generator=gen)  # (n_items,) popularity rank of each item
    log_weight = -config.popularity_alpha * torch.log1p(rank.double())  # (n_items,)
    items = []
    for start in range(0, config.n_users, 4096):  # chunks bound the (users, items) noise matrix
        n = min(4096, config.n_users - start)
        uniform = torch.rand(n, config.n_items, generator=gen, dtype=torch.float64).clamp_min(1e-300)
        gumbel = -torch.log(-torch.log(uniform))  # (n, n_items)
        items.append(torch.topk(log_weight + gumbel, k, dim=1).indices)  # (n, k)
    items = torch.cat(items).reshape(-1)  # (n_users * k,)
    users = torch.arange(config.n_users).repeat_interleave(k)  # (n_users * k,)
    span = config.days * 86_400
    offsets = torch.sort(
        torch.randint(span, (config.n_users, k), generator=gen), dim=1
    ).values  # (n_users, k)
    timestamps = config.start_time + offsets.reshape(-1)
    return users, items, timestamps


def _titles_and_texts(
    genre: torch.Tensor, secondary: torch.Tensor, style: CoverStyle, gen: torch.Generator
) -> tuple[list[str], list[str]]:
    """Titles name the cover's colour and light ("Crimson Night Curse"); text is the genre tag string."""
    pick = torch.randint(3, (len(genre), 3), generator=gen).tolist()  # word variants
    hue_bin = (torch.round(style.hue * 6.0).long() % 6).tolist()
    light = torch.bucketize(style.brightness, torch.tensor([0.35, 0.65])).tolist()  # 0 dark, 1 mid, 2 bright
    greyish = (style.saturation < 0.25).tolist()
    titles, texts = [], []
    for i, (g, s) in enumerate(zip(genre.tolist(), secondary.tolist(), strict=True)):
        colour = (_GREY_WORDS if greyish[i] else _COLOUR_WORDS[hue_bin[i]])[pick[i][0]]
        titles.append(f"{colour} {_NOUNS[light[i]][pick[i][1]]} {GENRES[g][3][pick[i][2]]}")
        texts.append(GENRES[g][0] if s < 0 else f"{GENRES[g][0]}|{GENRES[s][0]}")
    return titles, texts
