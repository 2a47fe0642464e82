"""icg_rec.encoders."""
