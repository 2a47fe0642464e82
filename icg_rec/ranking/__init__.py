"""icg_rec.ranking."""
