#!/usr/bin/env bash
# On a GPU machine (whatever its torch: 2.11 on the lent H200): build fusedlr against that torch,
# run the CUDA tests (parity, opcheck, in-kernel schedule, CUDA-graph capture) and the bandwidth
# benchmark, then print a summary. Budget: about 8 minutes. Nothing is installed system-wide.
#
#   bash bench/gpu_check.sh            # PYTHON=python3, work in /tmp/fusedlr-gpu
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/fusedlr-gpu}
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
command -v nvcc >/dev/null && nvcc --version | tail -1

echo "== build (native CUDA arch only)"
if ! FUSEDLR_CUDA=ON $PY -m pip install --no-build-isolation --no-deps --no-compile -q --target "$WORK/site" \
    -Cbuild-dir="$WORK/build" -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=native . ; then
  echo "BUILD FAILED"; exit 1
fi
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
t_build=$(( $(date +%s) - t0 ))
$PY -c "import fusedlr; assert fusedlr._C.with_cuda, 'built without CUDA'; print('fusedlr', fusedlr.__version__, 'at', fusedlr.__file__)" || exit 1

echo "== CUDA tests"
timeout 300 $PY -m pytest -q -p no:cacheprovider -o addopts="" -W error::UserWarning:fusedlr \
  tests/test_ops.py tests/test_optim.py tests/test_schedule_in_kernel.py tests/test_multi_tensor_apply.py \
  -k "cuda or graph or chunker" 2>&1 | tee "$WORK/tests.log" | tail -25
test_rc=${PIPESTATUS[0]}
[ "$test_rc" = 0 ] || status=1

echo "== bandwidth"
timeout 180 $PY bench/gpu_bandwidth.py 2>&1 | tee "$WORK/bandwidth.log" || status=1

echo "== summary"
echo "build: ${t_build}s; tests: $(tail -1 "$WORK/tests.log"); total: $(( $(date +%s) - t0 ))s; status: $status"
exit $status
