#!/usr/bin/env bash
# Warm up the embedded ICG generator on all MovieLens posters on one GPU, then measure it.
# Ready to run on a GPU host (not run on the dev box, which has none):
#   bash eval/gpu/warmup_posters.sh [run_folder]
# Resumable: rerunning continues from RUN/checkpoint. Needs the shared data (ICG_REC_DATA_DIR).
set -euo pipefail
RUN="${1:-runs/posters_gpu}"
export HF_HUB_OFFLINE=1
.venv/bin/python -m icg_rec.cli generator train --dataset movielens --config eval/gpu/posters.toml \
  --device cuda --resume --out "$RUN"
.venv/bin/python -m icg_rec.cli generator export-ip-adapter --pipeline "$RUN/pipeline" --out "$RUN/ip_adapter.safetensors"
echo "pipeline: $RUN/pipeline  contact sheet: $RUN/contact_sheet.png"
