#!/usr/bin/env bash
# One run on a GPU machine that brings everything back: preflight, a verbose build of fusedlr
# against that machine's torch, a GPU correctness script, the CUDA tests, the bandwidth benchmark,
# and (time left) compute-sanitizer on a small case. Every log goes under $OUT, which the device
# tool returns; nothing is installed system-wide. Steps have timeouts that sum under 600 s:
# preflight 5, build 300, correctness 60, tests 180, bandwidth 120 (the sanitizer only if time is left).
#
#   OUT=/tmp/out bash bench/gpu_check.sh       # PYTHON=python3; WORK=/tmp/fusedlr-gpu
#
# Without a GPU it still parses, preflights, builds (CUDA when nvcc and a CUDA torch are there)
# and skips the GPU steps, saying so: `bash bench/gpu_check.sh` here checks the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/fusedlr-gpu/out}
WORK=${WORK:-/tmp/fusedlr-gpu}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
status=0
elapsed() { echo $(( $(date +%s) - t0 )); }
log() { echo "$*" | tee -a "$OUT/summary.log"; }

# -- preflight (5 s): what a build on an offline machine needs ------------------------------------
{
  echo "== preflight"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  cmake --version 2>&1 | head -1
  timeout 5 $PY - <<'EOF'
import importlib.metadata as md, sysconfig, os, re, shutil, subprocess
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "MISSING"
cmake = shutil.which("cmake")
out = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout if cmake else ""
m = re.search(r"(\d+)\.(\d+)", out)
ok_cmake = bool(m) and (int(m.group(1)), int(m.group(2))) >= (3, 28)
print("cmake >= 3.28:", ok_cmake, "(else scikit-build-core downloads one: no network here)")
print("pybind11", version("pybind11"), "scikit-build-core", version("scikit-build-core"), "ninja", version("ninja"))
print("Python.h:", os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
import torch
nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
nv = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout if os.path.exists(nvcc) else ""
m = re.search(r"release (\d+\.\d+)", nv)
print("torch", torch.__version__, "built with CUDA", torch.version.cuda, "| nvcc", nvcc, m.group(1) if m else "MISSING")
print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
} > "$OUT/preflight.log" 2>&1
cat "$OUT/preflight.log"
export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# -- build (300 s): verbose, with ptxas register and spill figures ---------------------------------
log "== build ($(elapsed)s)"
CUDA_MODE=AUTO
[ "$GPU" = 1 ] && CUDA_MODE=ON
if timeout 300 $PY -m pip install --no-build-isolation --no-deps --no-compile -v --target "$WORK/site" --upgrade \
    -Cbuild-dir="$WORK/build" -Cbuild.verbose=true -Ccmake.define.FUSEDLR_CUDA=$CUDA_MODE \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-native} \
    "-Ccmake.define.CMAKE_CUDA_FLAGS=-lineinfo -Xptxas=-v" . > "$OUT/build.log" 2>&1; then
  log "build: ok ($(elapsed)s)"
else
  log "BUILD FAILED (see build.log)"; tail -40 "$OUT/build.log"; exit 1
fi
grep -E "ptxas info|spill" "$OUT/build.log" > "$OUT/ptxas.log" || true
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import fusedlr; print('fusedlr', fusedlr.__version__, 'at', fusedlr.__file__, 'cuda kernels:', fusedlr._C.with_cuda)" \
  2>&1 | tee -a "$OUT/summary.log"

if [ "$GPU" != 1 ]; then
  log "no CUDA device: correctness, CUDA tests, bandwidth and sanitizer skipped"
  $PY bench/gpu_correctness.py > "$OUT/correctness.log" 2>&1 || status=1
  log "total $(elapsed)s, status $status"
  exit $status
fi

# -- GPU correctness (60 s) -------------------------------------------------------------------------
log "== correctness ($(elapsed)s)"
timeout 60 $PY bench/gpu_correctness.py > "$OUT/correctness.log" 2>&1 || status=1
tail -1 "$OUT/correctness.log" | tee -a "$OUT/summary.log"

# -- CUDA tests (180 s): whole output kept, failures summarised, junit for tools ---------------------
log "== CUDA tests ($(elapsed)s)"
CUDA_LAUNCH_BLOCKING=1 timeout 180 $PY -m pytest -q -p no:cacheprovider -o addopts="" -rfE --tb=short --maxfail=20 \
  --junitxml="$OUT/junit.xml" \
  tests/test_ops.py tests/test_optim.py tests/test_schedule_in_kernel.py tests/test_multi_tensor_apply.py \
  tests/test_clip.py tests/test_lars.py tests/test_schedule_free.py -k "cuda or graph or chunker" \
  > "$OUT/tests.log" 2>&1 || status=1
tail -1 "$OUT/tests.log" | tee -a "$OUT/summary.log"

# -- bandwidth (120 s) ------------------------------------------------------------------------------
log "== bandwidth ($(elapsed)s)"
timeout 120 $PY bench/gpu_bandwidth.py > "$OUT/bandwidth.log" 2>&1 || status=1
tail -5 "$OUT/bandwidth.log" | tee -a "$OUT/summary.log"

# -- compute-sanitizer on a small case, if time is left -----------------------------------------------
if command -v compute-sanitizer >/dev/null && [ "$(elapsed)" -lt 480 ]; then
  log "== compute-sanitizer memcheck ($(elapsed)s)"
  timeout $(( 570 - $(elapsed) )) compute-sanitizer --tool memcheck $PY -c "
import torch, fusedlr
ps = [torch.randn(n, device='cuda', requires_grad=True) for n in (1, 65537, 3)]
for p in ps: p.grad = torch.randn_like(p)
o = fusedlr.SGD(ps, lr=0.1, momentum=0.9, max_grad_norm=1.0); o.step(); o.step(); torch.cuda.synchronize()
print('memcheck case done')" > "$OUT/sanitizer.log" 2>&1 || status=1
  tail -3 "$OUT/sanitizer.log" | tee -a "$OUT/summary.log"
fi

log "== total $(elapsed)s, status $status"
exit $status
