"""icg_rec: personalized item covers (ICG) as ranking features, measured offline, ready for A/B."""

__version__ = "0.1.0"
