#!/usr/bin/env bash
# The CUDA checks of issue 5 as one command, for a machine with an NVIDIA GPU:
#
#   bash bench/gpu_check.sh            # from the repository root; logs go to $OUT or ./gpu-check
#
# Runs the tests that skip without CUDA, then bench/speed.py's step and 30-run sections on
# the GPU, and records the card's name. Runs from an installed checkout or, where torch,
# pluggy, typer, safetensors, matplotlib and rich are installed but this project is not
# (a bare GPU image), straight from the sources via PYTHONPATH (PYTHON=... picks the
# interpreter). Not yet run on a GPU: no session so far was lent one.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check}"
mkdir -p "$out"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && python="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"; } 2>&1 | tee "$out/gpu.txt"

"$python" -m pytest -q -p no:cacheprovider -rs tests/test_device.py tests/test_model_file.py \
  tests/test_ensemble.py tests/test_equivalence.py 2>&1 | tee "$out/tests.txt"
tests=$?

"$python" bench/speed.py --device cuda --only step,ensemble 2>&1 | grep -v '^USDT' | tee "$out/speed.txt"
bench=$?

echo "tests rc=$tests, bench rc=$bench; logs in $out"
exit $(( tests || bench ))
