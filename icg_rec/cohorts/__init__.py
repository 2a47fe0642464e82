"""icg_rec.cohorts."""
