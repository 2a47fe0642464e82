"""SimWorld taste families: what each reads from pixels, worlds built on them, a user's own callable."""

from dataclasses import replace

import pytest
import torch

from icg_rec.data.sim import CoverStyle, SimConfig, SimWorld, render_covers, visual_attributes
from icg_rec.data.sim.tastes import (
    COMPOSITION_NAMES,
    TASTES,
    RandomConvAttributes,
    composition_attributes,
    taste_attributes,
)

TINY = SimConfig(n_users=60, n_items=48, n_cohorts=3, image_size=16, impressions_per_user=6, seed=2)
C = {name: i for i, name in enumerate(COMPOSITION_NAMES)}


def _composition(**style) -> torch.Tensor:
    base = dict(brightness=0.3, subject_brightness=0.9, stripes=0.0)
    return composition_attributes(render_covers(CoverStyle.build(**(base | style)), 16))  # (n, 8)


def test_composition_reads_position_size_shape_and_figure_ground():
    moved = _composition(subject_x=[0.0, 0.4, 0.0], subject_y=[0.0, 0.0, -0.4])
    assert moved[0, C["figure_x"]].abs() < 0.01 and moved[1, C["figure_x"]] > 0.3
    assert moved[2, C["figure_y"]] < -0.3 and moved[2, C["figure_x"]].abs() < 0.01  # -1 is the top

    sizes = _composition(subject_size=[0.1, 0.5, 0.9])
    assert (sizes[:, C["figure_area"]].diff() > 0).all() and (sizes[:, C["figure_spread"]].diff() > 0).all()

    disk, square, diamond = _composition(shape=[0, 1, 2])
    assert square[C["cornerness"]] > disk[C["cornerness"]] > diamond[C["cornerness"]]

    lit, dark = _composition(brightness=[0.2, 0.9], subject_brightness=[0.9, 0.2])
    assert lit[C["figure_ground_luma"]] > 0.2 and dark[C["figure_ground_luma"]] < -0.1
    flat = composition_attributes(torch.full((1, 3, 16, 16), 0.4))[0]
    assert flat[C["figure_area"]] < 1e-5 and flat[C["figure_ground_distance"]] < 1e-3


def test_random_conv_features_are_fixed_by_the_seed():
    covers = render_covers(CoverStyle.build(hue=[0.0, 0.3, 0.6]), 16)
    a, again, other = RandomConvAttributes(0), RandomConvAttributes(0), RandomConvAttributes(1)
    torch.testing.assert_close(a(covers), again(covers), rtol=0, atol=0)
    assert not torch.allclose(a(covers), other(covers))
    assert a(covers).shape == (3, 12) and len(a.names) == 12 and a(covers).abs().max() < 1.0
    assert set(dict(a.named_buffers())) == {"w1", "b1", "w2", "b2"}  # in the oracle's state_dict


@pytest.mark.parametrize("taste", TASTES)
def test_every_family_makes_a_world_whose_cohorts_prefer_their_own_best_cover(taste):
    world = SimWorld.generate(replace(TINY, taste=taste, subject_offset=0.3))
    _, best = world.best_cohort_covers(n_candidates=256, seed=0)  # (C, 3, S, S)
    users = torch.arange(TINY.n_users)
    with torch.no_grad():
        p = torch.stack([world.oracle.click_prob(users, c.expand(len(users), -1, -1, -1)) for c in best], 1)
    assert (p[users, world.user_cohort] >= p.mean(dim=1)).float().mean() > 0.85
    covers = world.covers[:4].clone().requires_grad_(True)
    world.oracle.click_prob(torch.arange(4), covers).sum().backward()
    assert torch.isfinite(covers.grad).all() and (covers.grad.flatten(1).norm(dim=1) > 0).all()
    z = world.oracle.standardized_attributes(world.covers)
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=0.15, rtol=0)  # over the references


def test_the_colour_family_is_the_default_world_and_offsets_touch_only_the_covers():
    default = SimWorld.generate(TINY)
    assert default.oracle.attributes is visual_attributes == taste_attributes("colour", 0)
    offset = SimWorld.generate(replace(TINY, subject_offset=0.3))
    assert not torch.equal(default.covers, offset.covers)
    for name in ("user_taste", "user_cohort", "item_genre", "item_quality"):
        assert torch.equal(getattr(default, name), getattr(offset, name)), name
    assert default.dataset.items.equals(offset.dataset.items)


def test_a_users_callable_is_the_taste_and_equals_the_built_in_it_copies():
    def brightness_only(images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))[:, None]  # (B, 1)

    world = SimWorld.generate(replace(TINY, taste="custom"), attributes=brightness_only)
    assert world.user_taste.shape == (TINY.n_users, 1)
    covers = torch.stack([torch.full((3, 16, 16), 0.2), torch.full((3, 16, 16), 0.8)])
    users = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        logits = world.oracle.logits(users, covers)
    z = world.oracle.standardize(brightness_only(covers))
    torch.testing.assert_close(logits, world.oracle.user_bias[0] + 0.8 * world.user_taste[0, 0] * z[:, 0])

    copy = SimWorld.generate(replace(TINY, taste="custom"), attributes=visual_attributes)
    assert torch.equal(copy.impression_prob, SimWorld.generate(TINY).impression_prob)


@pytest.mark.parametrize(
    ("config", "attributes", "message"),
    [
        (replace(TINY, taste="custom"), None, "pass attributes= exactly when taste is 'custom'"),
        (TINY, visual_attributes, "pass attributes= exactly when taste is 'custom'"),
        (replace(TINY, taste="shape"), None, r"taste must be one of \('colour'"),
        (replace(TINY, subject_offset=0.9), None, r"subject_offset must be in \[0, 0.8\]"),
        (replace(TINY, taste="custom"), lambda x: x.mean(dim=(2, 3))[:2], r"\(n_covers, A\) = \(48, A\)"),
        (replace(TINY, taste="custom"), lambda x: x.mean(dim=(2, 3)) / 0.0, "non-finite"),
        (
            replace(TINY, taste="custom"),
            lambda x: torch.cat([x.mean(dim=(1, 2, 3))[:, None], torch.ones(len(x), 1)], 1),
            r"attribute\(s\) \['attribute_1'\] do not vary",
        ),
        (replace(TINY, taste="composition"), None, "'composition' reads where the subject is"),
    ],
)
def test_bad_tastes_are_refused_by_name(config, attributes, message):
    with pytest.raises(ValueError, match=message):
        SimWorld.generate(config, attributes=attributes)
