"""icg_rec.metrics."""
