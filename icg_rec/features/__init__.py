"""icg_rec.features."""
