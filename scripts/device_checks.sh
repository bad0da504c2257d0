#!/usr/bin/env bash
# There, on a lent GPU machine, in one call (prepare with scripts/device_prep.sh first):
# every CUDA-only check of the suite and the GPU figures of issue #12.
#
#   1. the CUDA tests: batched augmentation equal to the CPU's and free of host syncs
#      (torch.cuda.set_sync_debug_mode("error")), device streams, learned mixers on CUDA;
#   2. scripts/bench_augment.py: images/s on the GPU and the data time share of a WRN-28-2
#      FixMatch step (issue #12's goal: < 5 %);
#   3. end to end: `dm-ssl train` FixMatch WRN-28-2 on a CIFAR-10-layout set (the colour
#      digits), augment_on loader (8 workers) vs device, 100 and 300 iterations each: the
#      difference is the time per iteration without start-up and evaluation.
# Everything printed is also written under $OUT (device_*.txt), which comes back.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}
DEVICE=${DEVICE:-cuda}                  # DEVICE=cpu ITERS="4 8": the script's own dry run
read -r FEW MANY <<<"${ITERS:-100 300}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .device/whl/*.whl || { echo "device_checks: run scripts/device_prep.sh here first"; exit 2; }
# ours first, then the stand-ins, then the carried wheels (ahead of the machine's own
# transformers 5 / huggingface_hub 1)
export PYTHONPATH="$PWD:$PWD/.device/stubs:/tmp/site"
nvidia-smi -L | tee "$OUT/device_gpu.txt"
python3 -c "import torch, semilearn; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    2>&1 | tail -1 | tee -a "$OUT/device_gpu.txt"

echo "== 1. CUDA tests"
timeout 240 python3 -m pytest -q -p no:cacheprovider -rs \
    tests/data/test_batch_augment.py tests/data/test_device_data.py \
    "tests/mixers/test_automix.py::test_cuda_path_matches_the_contract" tests/mixers -k cuda \
    2>&1 | tail -25 | tee "$OUT/device_tests.txt"

echo "== 2. bench_augment"
timeout 240 python3 scripts/bench_augment.py --repeats 5 2>&1 | tee "$OUT/device_bench_augment.txt"

echo "== 3. FixMatch WRN-28-2 end to end, loader vs device"
python3 scripts/make_colour_digits.py --out /tmp/cd >/dev/null
for on in loader device; do
    for it in $FEW $MANY; do
        start=$(date +%s.%N)
        timeout 200 python3 -m dm_ssl.cli train \
            --config configs/ssl/cifar10/fixmatch_cifar10_40.yaml --data-dir /tmp/cd \
            --save-dir "/tmp/runs_${on}_${it}" --device "$DEVICE" --set num_train_iter=$it \
            --set augment_on=$on --set num_workers=8 --set progress=false \
            --set use_tensorboard=false >/dev/null 2>"/tmp/err_${on}_${it}" \
            || { echo "train $on $it failed:"; tail -5 "/tmp/err_${on}_${it}"; }
        end=$(date +%s.%N)
        echo "$on $it $(python3 -c "print(round($end - $start, 2))")"
    done
done | tee "$OUT/device_e2e.txt"
python3 - "$OUT/device_e2e.txt" "$FEW" "$MANY" <<'PY' | tee -a "$OUT/device_e2e.txt"
import sys
few, many = int(sys.argv[2]), int(sys.argv[3])
t = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 3 and parts[1].isdigit():
        t[parts[0], int(parts[1])] = float(parts[2])
for on in ("loader", "device"):
    if (on, few) in t and (on, many) in t:
        print(f"{on}: {(t[on, many] - t[on, few]) / (many - few) * 1e3:.1f} ms per iteration")
PY
