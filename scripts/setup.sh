#!/usr/bin/env bash
# Creates .venv with the pinned CPU stack and installs icg_rec in editable mode. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.icg_rec_installed ] || [ requirements-cpu.lock -nt .venv/.icg_rec_installed ]; then
  .venv/bin/pip install -q --upgrade pip
  # torch first, by exact version, so that pip takes the CPU wheel and no other package pulls a CUDA one.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -r requirements-cpu.lock
  # torchrec's metadata asks for the CUDA fbgemm-gpu, which would break fbgemm-gpu-cpu.
  .venv/bin/pip install -q --no-deps torchrec==1.8.0
  touch .venv/.icg_rec_installed
fi
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
