"""icg_rec.experiment."""
