"""SimWorld: a synthetic platform whose click model is a known function of the cover's pixels."""

from icg_rec.data.sim.oracle import ATTRIBUTE_NAMES, HUE_BINS, OracleClickModel, visual_attributes
from icg_rec.data.sim.render import SHAPES, CoverStyle, hsv_to_rgb, render_covers
from icg_rec.data.sim.tastes import (
    COMPOSITION_NAMES,
    TASTES,
    RandomConvAttributes,
    composition_attributes,
    taste_attributes,
)
from icg_rec.data.sim.world import GENRES, SimConfig, SimWorld

__all__ = [
    "ATTRIBUTE_NAMES",
    "COMPOSITION_NAMES",
    "GENRES",
    "HUE_BINS",
    "SHAPES",
    "TASTES",
    "CoverStyle",
    "OracleClickModel",
    "RandomConvAttributes",
    "SimConfig",
    "SimWorld",
    "composition_attributes",
    "hsv_to_rgb",
    "render_covers",
    "taste_attributes",
    "visual_attributes",
]
