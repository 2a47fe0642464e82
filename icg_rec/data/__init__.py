"""icg_rec.data."""
