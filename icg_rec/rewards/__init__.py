"""icg_rec.rewards."""
