"""icg_rec.alignment."""
