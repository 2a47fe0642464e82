#!/usr/bin/env bash
# Builds .gpu_carry/, the one folder a device call carries for eval/gpu/run_device.sh (run this on the dev box):
#   site.tar.xz            the Python packages the GPU image lacks, for its Python 3.12 / torch 2.11 / x86-64,
#                          unpacked as `pip install --target` would lay them out, then xz-compressed: the polars
#                          runtime alone is a 54 MB wheel but 31 MB as xz, which is what lets everything travel
#                          in ONE call under the 64 MiB limit (no second call racing the 30 s warm window)
#   shared/models/taef2/   the TAEF2 tiny-autoencoder weights (research use: carried, never committed)
# Packages (pins): diffusers 0.42.1 (+ importlib_metadata), polars 2.1.0 (+ runtime), torchrec 1.6.1 with
# fbgemm-gpu-cpu 1.6.0 (the torch-2.11 pair; tensordict, orjson, pyvers, iopath), faiss-cpu 1.15.1 (the
# cohorts' k-means), efficientnet_pytorch 0.7.1 (built here: it ships no wheel). The CUDA build of fbgemm-gpu
# (465 MB) cannot travel, so DMP with nccl and sharded tables is checked only where the image has it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
CARRY=.gpu_carry
TAEF2=${TAEF2_DIR:-../shared/models/taef2}
WHEELS="diffusers==0.42.1 importlib_metadata==10.2.0 polars==2.1.0 polars-runtime-32==2.1.0 torchrec==1.6.1
  fbgemm-gpu-cpu==1.6.0 tensordict==0.11.0 orjson==3.13.0 pyvers==0.2.3 iopath==0.1.9 faiss-cpu==1.15.1"
PLATFORM="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx "/$CARRY/" "$exclude" 2>/dev/null || echo "/$CARRY/" >>"$exclude"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: $PLATFORM -d "$work/wheels" $WHEELS
"$PY" -m pip wheel -q --no-deps -w "$work/wheels" efficientnet_pytorch==0.7.1
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
rm -rf "$CARRY"
mkdir -p "$CARRY/shared/models/taef2"
tar -C "$work/site" -cf - . | xz -T2 -9 >"$CARRY/site.tar.xz"
cp "$TAEF2"/taef2_encoder.pth "$TAEF2"/taef2_decoder.pth "$CARRY/shared/models/taef2/"
size=$(du -sb "$CARRY" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
echo "$CARRY: $((size / 1048576)) MiB; tracked tree $((tree / 1048576)) MiB; limit 64 MiB together"
test $((size + tree)) -lt $((62 * 1048576)) || { echo "too large for one device call"; exit 1; }
