"""The stage pipeline: prepare -> encode -> rewards -> warmup -> align -> cohorts -> refresh -> lift -> ope -> ab."""
