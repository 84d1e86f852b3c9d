#!/usr/bin/env bash
# Build fusedlr's C++ with AddressSanitizer + UndefinedBehaviorSanitizer and run the CPU tests
# of the op and the optimizer under it. Usage (from anywhere):
#
#     tools/sanitize.sh [extra pytest args]
#
# The instrumented build goes to its own virtual environment (build/asan-venv, sharing the
# interpreter's torch through --system-site-packages) and build tree (build/asan), so a normal
# install elsewhere is never replaced. Exit status: 0 when the tests pass with nothing reported;
# any ASan or UBSan report aborts the process, so it fails the run. See docs/sanitizers.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${FUSEDLR_SANITIZE_VENV:-$ROOT/build/asan-venv}
CXX=${CXX:-g++}
export CXX

# The runtime is preloaded (python itself is not instrumented) so it must be the one the
# compiler links against.
LIBASAN=$("$CXX" -print-file-name=libasan.so)
[[ -f "$LIBASAN" ]] || { echo "sanitize.sh: $CXX has no libasan.so" >&2; exit 2; }

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi

echo "== building with $SAN_FLAGS into $VENV"
FUSEDLR_CUDA=OFF "$VENV/bin/pip" install --quiet --no-build-isolation --no-deps \
  -Cbuild-dir="$ROOT/build/asan" \
  -Ccmake.build-type=RelWithDebInfo \
  -Ccmake.define.CMAKE_CXX_FLAGS="$SAN_FLAGS" \
  -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  "$ROOT"

# detect_leaks=0: CPython and torch keep allocations until exit by design (noise, not our bugs).
# abort_on_error / halt_on_error: a report kills the process, so it cannot go unnoticed.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# libstdc++ is preloaded with the runtime: python itself does not link it, and when it is only
# loaded later (by torch), ASan's __cxa_throw interceptor finds no real __cxa_throw and the first
# C++ exception aborts ("CHECK failed: asan_interceptors.cpp ... real___cxa_throw").
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so)
SAN_ENV=(env LD_PRELOAD="$LIBASAN $LIBSTDCXX" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS")

cd "$ROOT"
SO=$(ls "$VENV"/lib/python*/site-packages/fusedlr/_C*.so)
[[ $(ldd "$SO") == *libasan* ]] || { echo "sanitize.sh: $SO is not linked against libasan" >&2; exit 2; }
"${SAN_ENV[@]}" "$VENV/bin/python" -c "import fusedlr; print('== sanitized fusedlr from', fusedlr.__file__)"
echo "== the CUDA chunker's host code (tests/cpp), compiled with the sanitizers"
"$CXX" -std=c++17 -O1 -g $SAN_FLAGS -I"$ROOT/cpp/src" "$ROOT/tests/cpp/test_multi_tensor_apply.cpp" \
  -o "$ROOT/build/asan/test_multi_tensor_apply"
ASAN_OPTIONS="$ASAN_OPTIONS" "$ROOT/build/asan/test_multi_tensor_apply"

# AddressSanitizer cannot see the AVX2/AVX-512 kernels' partial loads and stores at a tensor's
# tail: ATen does them with masked intrinsics (_mm256_maskload_ps, _mm512_maskz_loadu_ps), which
# ASan does not instrument, so an off-by-one there goes unreported. At ATEN_CPU_CAPABILITY=default
# the same kernel template runs on ATen's portable Vectorized (plain loops and memcpy), where
# every access is checked. So the suite runs twice: at `default` for ASan, then at the level
# torch picks on this machine, for UBSan on the SIMD code. (The per-level subprocess test in
# test_optim.py also runs every level, inheriting the preload.)
TESTS=(tests/test_ops.py tests/test_optim.py tests/test_edge_cases.py tests/test_properties.py tests/test_resume.py)
for level in default native; do
  echo "== op and optimizer tests under ASan/UBSan, CPU kernel level: $level"
  if [[ $level == native ]]; then
    "${SAN_ENV[@]}" "$VENV/bin/python" -m pytest -p no:cacheprovider -q -m "not slow" "${TESTS[@]}" "$@"
  else
    "${SAN_ENV[@]}" ATEN_CPU_CAPABILITY=$level "$VENV/bin/python" -m pytest -p no:cacheprovider -q -m "not slow" \
      "${TESTS[@]}" "$@"
  fi
done
echo "== sanitize.sh: no ASan/UBSan report"
