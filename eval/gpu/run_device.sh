#!/usr/bin/env bash
# Every GPU check of this repo in ONE device call, under 8 minutes on the lent H100/H200 (results: eval/RESULTS.md).
#
# On the dev box, once:   bash eval/gpu/pack_carry.sh          # builds .gpu_carry/ (~50 MiB, git-ignored)
# Then one device call:   run(command="bash eval/gpu/run_device.sh", carry=[".gpu_carry"], timeout_s=560)
#
# Checks (CHECKS="smoke bench" by default; "posters simworld" are the older warm-up runs, which need .gpu/
# from `python -m eval.gpu.warmup_gpu prepare` carried too and ~5 minutes each):
#   smoke  python -m eval.gpu.smoke_device --device cuda: warm-up, DRaFT+LoRA, DPO, personalized reward,
#          relevance, refresh (fp16, channels_last, fused QKV, CUDA graphs, writer threads), TorchRec ranker,
#          DMP under torchrun with nccl; each check asserts its parameters sit on the GPU        (~1.5 min)
#   bench  python -m eval.gpu.bench_refresh_gpu: batch sized to the card, stock / stock compiled / every
#          switch on and off, roofline share, DRaFT+LoRA steps/s and peak memory; no arm starts after
#          BUDGET_S (200) seconds: the rest are listed as skipped and the last line is still printed; run them
#          in a second call with CHECKS=bench ARMS="stock icg_channels_last ..."                  (~5 min)
# Writes under $OUT (at most 8 files come back): device.txt, smoke.json, smoke.log, bench.json, bench.log.
# Dry run on a CPU box: DRY_RUN=1 PYTHON=.venv/bin/python bash eval/gpu/run_device.sh (unpacks and lists the
# carry, then runs the same checks on the CPU: smoke --device cpu, bench --cpu-smoke, with this box's packages).
set -uo pipefail
start=$SECONDS
OUT=${OUT:-eval/out/gpu}
mkdir -p "$OUT" /tmp/site
tar -xJf .gpu_carry/site.tar.xz -C /tmp/site || { echo "no .gpu_carry/site.tar.xz: run eval/gpu/pack_carry.sh and carry .gpu_carry"; exit 3; }
PY=${PYTHON:-python3}
if [ -n "${DRY_RUN:-}" ]; then  # the carry is for Python 3.12 + torch 2.11: list it, run on this box's packages
  ls /tmp/site | grep -v dist-info | tr '\n' ' '; echo
  export PYTHONPATH=$PWD DEVICE_ARGS="--device cpu" BENCH_ARGS="--cpu-smoke"
else
  export PYTHONPATH=/tmp/site:$PWD DEVICE_ARGS="--device cuda" BENCH_ARGS="--covers 64 --batch-size auto --steps 20"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
export ICG_REC_DATA_DIR=$PWD/.gpu_carry/shared/data  # its sibling models/taef2 holds the TAEF2 weights
{
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, diffusers, polars, torchrec, fbgemm_gpu, faiss; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'polars', polars.__version__, 'torchrec', torchrec.__version__, 'faiss', faiss.__version__)"
  echo "unpacked in $((SECONDS - start)) s"
} 2>&1 | tee "$OUT/device.txt"
for check in ${CHECKS:-smoke bench}; do
  case $check in
    # shellcheck disable=SC2086
    smoke) timeout 150 "$PY" -m eval.gpu.smoke_device $DEVICE_ARGS --out "$OUT/smoke.json" 2>&1 | tee "$OUT/smoke.log" ;;
    # shellcheck disable=SC2086
    bench) timeout 330 "$PY" -m eval.gpu.bench_refresh_gpu $BENCH_ARGS --align --budget-s "${BUDGET_S:-200}" ${ARMS:+--arms $ARMS} \
      --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" ;;
    posters|simworld) timeout 330 "$PY" -m eval.gpu.warmup_gpu train --data ".gpu/$check" --out "$OUT/$check" \
      --minutes "${MINUTES:-4}" 2>&1 | tee "$OUT/warmup_$check.log" ;;
    *) echo "unknown check $check" ;;
  esac
done
echo "run_device.sh: $((SECONDS - start)) s" | tee -a "$OUT/device.txt"
