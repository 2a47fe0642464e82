# The two commands of the README: `make quickstart` and `make test`. Both set up .venv first.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup quickstart test

setup:
	bash scripts/setup.sh

quickstart: setup
	.venv/bin/icg-rec quickstart --out runs/quickstart

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest
