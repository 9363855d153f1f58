#!/usr/bin/env bash
# cuEquivariance's fused triangle kernels on one GPU: their tests, the layer benchmark and the
# baseline's eager training/sampling step with each triangleKernel (see benchmarks/README.md).
# Installs nothing: the packages are read from --target (a folder made with pip install --target).
#   bash benchmarks/run_cueq.sh --target DIR --out OUT_DIR [--commit C] [--lengths 256,512,1024]
#                               [--parts tests,layers,step]
# Writes OUT_DIR/tests.log, triangle.json (+ .log), step_reference.json, step_cuequivariance.json
# (+ .log); exit 1 if a part failed.
set -uo pipefail
target="" out="" commit="unknown" lengths="256,512,1024" parts="tests,layers,step"
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --commit) commit=$2; shift 2 ;;
    --lengths) lengths=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    *) echo "run_cueq.sh: error: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$target" ] || [ -z "$out" ] || [ ! -d "$target" ]; then
  echo "run_cueq.sh: error: give --target DIR (an existing folder of packages) and --out DIR" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 2
mkdir -p "$out" || exit 2
export PYTHONPATH="$repo:$(cd "$target" && pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "
import importlib.metadata as m, sys, torch
from genie.model.dense.fused_kernels import cuequivariance_unavailable
why = cuequivariance_unavailable()
if why:
    sys.exit(f'run_cueq.sh: error: {why}')
print('device', torch.cuda.get_device_name(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
print('cuequivariance-torch', m.version('cuequivariance-torch'))" || exit 2
status=0
has() { [[ ",$parts," == *",$1,"* ]]; }
if has tests; then
  python3 -m pytest -q -p no:cacheprovider tests/model/dense/test_fused_kernels_gpu.py \
    tests/model/dense/test_fused_kernels.py tests/model/test_build_kernels.py \
    2>&1 | tee "$out/tests.log" | tail -n 30 || status=1
fi
if has layers; then
  python3 benchmarks/bench_triangle.py --lengths "$lengths" --git-commit "$commit" \
    --out "$out/triangle.json" > "$out/triangle.log" 2>&1 || status=1
  tail -n 30 "$out/triangle.log"
fi
if has step; then
  for kernel in reference cuequivariance; do
    python3 benchmarks/bench_step.py --config configs/train_baseline.config \
      --lengths "$lengths" --modes train,sample --set "triangleKernel=$kernel" \
      --set compileModel=off \
      --git-commit "$commit" --out "$out/step_$kernel.json" > "$out/step_$kernel.log" 2>&1 \
      || status=1
    tail -n "$(( 2 * $(tr ',' '\n' <<<"$lengths" | wc -l) + 1 ))" "$out/step_$kernel.log"
  done
fi
exit $status
