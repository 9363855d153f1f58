#!/usr/bin/env bash
# One call of the GPU machine for the long-chain study (docs/QUALITY.md "Study protocol"):
# install the carried wheels, train (or sample) the arms ARMS (comma-separated, all at once on
# the machine's GPUs) until the call's deadline, and pack the results into OUT for
# `long_study.py unpack` here.
#   bash benchmarks/long_study_call.sh OUT ARMS train COMMIT MINUTES
#   bash benchmarks/long_study_call.sh OUT ARMS sample
# DEADLINE (seconds, default 530) bounds the step. One arm sends back its whole last.ckpt (a
# later call on a fresh machine carries it in and resumes); several arms send their weights alone
# (pack --weights-only: enough to sample, not to resume; the calls of a session continue on the
# warm machine). Carried: .bench_data/long_study_ca.npz, .whl (biopython), and where the machine
# may be fresh the arm's runs/long_study/runs/ARM/version_0/checkpoints/last.ckpt (one arm) or
# runs/long_study/weights (sampling several arms).
set -uo pipefail
out=$1 arms=$2 step=$3
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
study=(python3 benchmarks/long_study.py --arms "$arms")
case $step in
  train) "${study[@]}" train "${5:?MINUTES}" --deadline "${DEADLINE:-530}" --git-commit "$4" ;;
  sample) "${study[@]}" sample --deadline "${DEADLINE:-530}" ;;
  *) echo "step must be train or sample, got $step" >&2; exit 2 ;;
esac
status=$?
for arm in ${arms//,/ }; do  # each log's last lines, progress bars left out
  log=runs/long_study/logs/${step}_$arm.log
  [ -f "$log" ] && echo "== $log" && tr '\r' '\n' < "$log" | grep -Ev "it/s|^\s*$|━" | tail -n 12
done
[[ $arms == *,* ]] && whole=(--weights-only) || whole=()
"${study[@]}" pack "$out" "${whole[@]}"
exit $status
