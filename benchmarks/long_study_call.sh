#!/usr/bin/env bash
# One call of the GPU machine for the long-chain study (docs/QUALITY.md "Study protocol"):
# install the carried wheels, train (or sample) arm ARM until the call's deadline, and pack the
# results, checkpoint and compile cache into OUT for `long_study.py unpack` here.
#   bash benchmarks/long_study_call.sh OUT ARM train COMMIT [MINUTES]   (MINUTES: 25)
#   bash benchmarks/long_study_call.sh OUT ARM sample
# Carried: .bench_data/long_study_ca.npz, .whl (biopython), and from the second call on the
# arm's runs/long_study/runs/ARM/version_0/checkpoints/last.ckpt and
# runs/long_study/compile_cache/ARM.bin (plus runs/long_study/samples while sampling).
set -uo pipefail
out=$1 arm=$2 step=$3
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
study=(python3 benchmarks/long_study.py --arms "$arm")
case $step in
  train) "${study[@]}" train "${5:-25}" --deadline "${DEADLINE:-530}" --git-commit "$4" ;;
  sample) "${study[@]}" sample --deadline "${DEADLINE:-530}" ;;
  *) echo "step must be train or sample, got $step" >&2; exit 2 ;;
esac
status=$?
log=runs/long_study/logs/${step}_$arm.log
# the log's last lines, progress bars left out
[ -f "$log" ] && tr '\r' '\n' < "$log" | grep -Ev "it/s|^\s*$|━" | tail -n 25
"${study[@]}" pack "$out"
exit $status
