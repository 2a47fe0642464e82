"""The oracle click model: what visual_attributes read from pixels, how p responds, gradients, bad inputs."""

import math

import pytest
import torch

from icg_rec.data.sim import (
    ATTRIBUTE_NAMES,
    CoverStyle,
    OracleClickModel,
    SimConfig,
    SimWorld,
    render_covers,
    visual_attributes,
)
from icg_rec.errors import SchemaError, UnknownIdError

A = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
SIZE = 32


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.generate(
        SimConfig(n_users=30, n_items=40, n_cohorts=3, image_size=SIZE, impressions_per_user=4, seed=1)
    )


def _oracle_liking(attribute_weights: dict[str, float]) -> OracleClickModel:
    """One user whose taste reads only the named attributes (raw attributes, no standardization)."""
    taste = torch.zeros(1, len(ATTRIBUTE_NAMES))
    for name, weight in attribute_weights.items():
        taste[0, A[name]] = weight
    return OracleClickModel(
        user_taste=taste,
        user_bias=torch.tensor([-2.0]),
        user_genre_affinity=torch.zeros(1, 2),
        cohort_taste=taste,
        item_quality=torch.tensor([0.5]),
        item_genre=torch.tensor([1]),
        attribute_mean=torch.zeros(len(ATTRIBUTE_NAMES)),
        attribute_std=torch.ones(len(ATTRIBUTE_NAMES)),
        taste_scale=1.0,
        attribute_clip=10.0,
        image_size=SIZE,
    )


def _flat(rgb: list[float]) -> torch.Tensor:
    return torch.tensor(rgb).reshape(1, 3, 1, 1).expand(1, 3, SIZE, SIZE).clone()


def test_hue_histogram_puts_pure_colours_in_their_bin_and_grey_nowhere():
    colours = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]]
    attrs = visual_attributes(torch.cat([_flat(c) for c in colours]))  # (6, A)
    hist = attrs[:, :6]
    assert hist.argmax(dim=1).tolist() == [0, 1, 2, 3, 4, 5]
    assert (hist.diagonal() > 0.85).all()
    grey = visual_attributes(_flat([0.5, 0.5, 0.5]))[0]
    assert grey[:6].sum() < 0.02 and grey[A["saturation"]] < 0.01
    assert grey[A["contrast"]] < 0.01 and grey[A["edge_density"]] == 0.0


def test_scalar_attributes_move_in_the_documented_direction():
    dark, bright = render_covers(CoverStyle.build(brightness=[0.2, 0.8], subject_brightness=[0.2, 0.8]), SIZE)
    attrs = visual_attributes(torch.stack([dark, bright]))
    assert attrs[1, A["brightness"]] > attrs[0, A["brightness"]] + 0.3

    grey, vivid = render_covers(CoverStyle.build(saturation=[0.0, 1.0]), SIZE)
    attrs = visual_attributes(torch.stack([grey, vivid]))
    assert attrs[1, A["saturation"]] > attrs[0, A["saturation"]] + 0.3

    lit_centre, dark_centre = render_covers(
        CoverStyle.build(brightness=[0.1, 0.9], subject_brightness=[0.9, 0.1]), SIZE
    )
    attrs = visual_attributes(torch.stack([lit_centre, dark_centre]))
    assert attrs[0, A["centre_focus"]] > 0.1 and attrs[1, A["centre_focus"]] < -0.1

    plain, striped = render_covers(CoverStyle.build(stripes=[0.0, 1.0], brightness=0.8), SIZE)
    attrs = visual_attributes(torch.stack([plain, striped]))
    assert attrs[1, A["edge_density"]] > 3 * attrs[0, A["edge_density"]]


def test_shifting_hue_toward_the_preferred_hue_raises_p_monotonically():
    oracle = _oracle_liking({"hue_red": 3.0, "hue_blue": -3.0})
    hues = torch.linspace(4 / 6, 1.0, 5)  # blue -> magenta -> red
    covers = render_covers(CoverStyle.build(hue=hues, accent_hue=hues, saturation=1.0, brightness=0.8), SIZE)
    p = oracle.click_prob(torch.zeros(5, dtype=torch.long), covers)
    assert (p.diff() > 0).all(), p
    assert p[-1] > 2 * p[0]


def test_world_users_prefer_their_cohort_best_cover_to_other_cohorts(world):
    _, best = world.best_cohort_covers(n_candidates=128, seed=0)  # (C, 3, S, S)
    users = torch.arange(world.config.n_users)
    with torch.no_grad():
        p = torch.stack(
            [
                world.oracle.click_prob(users, best[c].expand(len(users), -1, -1, -1))
                for c in range(len(best))
            ],
            1,
        )
    own = p[users, world.user_cohort]  # (n_users,)
    assert (own >= p.mean(dim=1)).float().mean() > 0.9


def test_item_terms_add_quality_and_genre_affinity_exactly():
    oracle = _oracle_liking({"brightness": 1.0})
    image = _flat([0.2, 0.4, 0.6])
    user, item = torch.tensor([0]), torch.tensor([0])
    without = oracle.logits(user, image)
    with_item = oracle.logits(user, image, item)
    torch.testing.assert_close(with_item - without, torch.tensor([0.5]))
    luma = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6
    torch.testing.assert_close(
        without, torch.tensor([-2.0 + 10.0 * math.tanh(luma / 10.0)])
    )  # soft clip at 10


def test_gradient_in_pixels_is_finite_nonzero_and_a_step_along_it_raises_p(world):
    users = torch.tensor([0, 1, 2, 3])
    images = world.covers[:4].clone().requires_grad_(True)
    p = world.oracle.click_prob(users, images, torch.tensor([0, 1, 2, 3]))
    p.sum().backward()
    grad = images.grad
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).norm(dim=1) > 0).all()
    with torch.no_grad():
        stepped = (images + 1e-3 * grad / grad.flatten(1).norm(dim=1)[:, None, None, None]).clamp(0, 1)
        assert (world.oracle.click_prob(users, stepped, torch.tensor([0, 1, 2, 3])) > p).all()


def test_grey_cover_has_a_finite_gradient(world):
    grey = torch.full((1, 3, SIZE, SIZE), 0.5, requires_grad=True)
    world.oracle.click_prob(torch.tensor([0]), grey).sum().backward()
    assert torch.isfinite(grey.grad).all()


def test_larger_covers_are_resized_to_the_world_size(world):
    users = torch.tensor([0, 1])
    covers = world.covers[:2]
    doubled = covers.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (2, 3, 2S, 2S), 2x2 blocks
    torch.testing.assert_close(
        world.oracle.click_prob(users, doubled), world.oracle.click_prob(users, covers)
    )


def test_unknown_ids_are_refused_by_name(world):
    covers = world.covers[:2]
    with pytest.raises(UnknownIdError, match=r"unknown user id\(s\) \[30\].*0..29"):
        world.oracle.click_prob(torch.tensor([0, 30]), covers)
    with pytest.raises(UnknownIdError, match=r"unknown user id\(s\) \[-1\]"):
        world.oracle.click_prob(torch.tensor([-1, 0]), covers)
    with pytest.raises(UnknownIdError, match=r"unknown item id\(s\) \[40\].*0..39"):
        world.oracle.click_prob(torch.tensor([0, 1]), covers, torch.tensor([0, 40]))
    with pytest.raises(SchemaError, match="user_ids must be an integer tensor"):
        world.oracle.click_prob(torch.tensor([0.0, 1.0]), covers)
    with pytest.raises(SchemaError, match=r"item_ids must have shape \(2,\)"):
        world.oracle.click_prob(torch.tensor([0, 1]), covers, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 4, SIZE, SIZE), r"\(B, 3, H, W\).*got shape \(2, 4, 32, 32\)"),
        (torch.rand(3, SIZE, SIZE), r"\(B, 3, H, W\).*got shape \(3, 32, 32\)"),
        (torch.rand(2, 3, 16, 16), r"H, W >= 32.*got shape \(2, 3, 16, 16\)"),
        (torch.rand(3, 3, SIZE, SIZE), r"B = 2 user ids, got 3 images"),
        (torch.rand(2, 3, SIZE, SIZE) * 2.0, r"values in \[0, 1\]"),
        (torch.full((2, 3, SIZE, SIZE), float("nan")), r"values in \[0, 1\]"),
        ((torch.rand(2, 3, SIZE, SIZE) * 255).to(torch.uint8), "float tensor"),
    ],
)
def test_bad_images_are_refused_with_the_expected_shape(world, images, message):
    with pytest.raises(SchemaError, match=message):
        world.oracle.click_prob(torch.tensor([0, 1]), images)
