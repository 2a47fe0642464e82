"""icg_rec.generation."""
