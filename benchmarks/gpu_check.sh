#!/usr/bin/env bash
# GPU check in one command (NVIDIA GPU + CuPy; torch with CUDA optional), < 10 minutes:
#   1. tests/test_cupy_fused.py: the fused CuPy kernels equal the reference on CuPy arrays,
#      bit for bit (and their text equals it on NumPy);
#   2. benchmarks/gpu_bench.py: reference (CuPy), fused CuPy, torch CUDA Adam against the
#      device-to-device copy bandwidth measured in the same run.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=/path/to/python to choose the interpreter)
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
"$PY" -c "import cupy, sys; n = cupy.cuda.runtime.getDeviceCount(); print('CuPy', cupy.__version__, 'devices:', n); sys.exit(n < 1)" \
  || { echo "gpu_check: needs CuPy and an NVIDIA GPU"; exit 2; }
timeout 330 "$PY" -m pytest -q -p no:cacheprovider tests/test_cupy_fused.py
rc_tests=$?
timeout 240 "$PY" -m benchmarks.gpu_bench "$@"
rc_bench=$?
echo "gpu_check: tests rc=$rc_tests, benchmark rc=$rc_bench"
exit $(( rc_tests != 0 || rc_bench != 0 ))
