#!/usr/bin/env bash
# Every GPU check of this repo in one command on the lent GPU host (results: eval/RESULTS.md).
# Two device calls: the wheels do not fit the 64 MiB that one call may carry, so a first call installs
# polars + diffusers into /tmp/site_a and this one (carrying .whl_b = faiss-cpu + efficientnet_pytorch, and
# .gpu/ from `python -m eval.gpu.warmup_gpu prepare`) runs on the same warm machine:
#   call 1 (carry .whl_a): python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site_a .whl_a/*.whl
#   call 2 (carry .whl_b .gpu): CHECKS="bench posters simworld" MINUTES=4 bash eval/gpu/run_device.sh
set -uo pipefail
test -d /tmp/site_a || { echo "no /tmp/site_a: run the install call first"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_b .whl_b/*.whl || exit 4
export PYTHONPATH=/tmp/site_b:/tmp/site_a:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L
OUT=${OUT:-eval/out/gpu}
for check in ${CHECKS:-bench posters simworld}; do
  case $check in
    bench) timeout 240 python3 -m eval.gpu.bench_refresh_gpu --covers 64 --batch-size 16 --steps 20 2>&1 | tee "$OUT/bench_refresh.log" ;;
    posters|simworld) timeout 330 python3 -m eval.gpu.warmup_gpu train --data ".gpu/$check" --out "$OUT/$check" \
      --minutes "${MINUTES:-4}" 2>&1 | tee "$OUT/warmup_$check.log" ;;
    *) echo "unknown check $check" ;;
  esac
done
