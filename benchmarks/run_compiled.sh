#!/usr/bin/env bash
# Compiled and graph-captured model on one GPU (docs/BENCHMARKS.md, "Compiled and graph-captured
# model"): each part fits one 10-minute device call; every row is a fresh bench_step.py child on
# synthetic traces, batch 1 unless the part says otherwise, progressive training off.
#   bash benchmarks/run_compiled.sh OUT_DIR COMMIT PART
# PART: tests    the GPU-only tests of the compiled, graph-captured and fused paths
#       train    stage 3 V2 and stage 4 training steps at L = 1,024: off, default, reduce-overhead
#       sample   whole reverse processes: 1,000 residues (DDPM, batch 1 and 8; DDIM stride 10)
#                and 16,384 residues (DDIM stride 10 = 100 model calls), eager and graph-captured
#       long     stage 3 V2 training step at L = 16,384: off and default
set -uo pipefail
out=$1 commit=$2 part=$3
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
bench() {  # NAME CONFIG LENGTHS MODES [extra bench_step arguments]
  local name=$1 config=$2 lengths=$3 modes=$4
  shift 4
  python3 benchmarks/bench_step.py --config "$config" --lengths "$lengths" --modes "$modes" \
    --device cuda --git-commit "$commit" --set useProgressiveTraining=False "$@" \
    --out "$out/$name.json" > "$out/$name.log" 2>&1
  echo "== $name"; grep -E "^\s*[0-9]+ .*(ok|OOM|error)" "$out/$name.log" || tail -n 5 "$out/$name.log"
}
s3=configs/train_stage3v2.config s4=configs/train_stage4.config
case $part in
  tests)
    # the CUDA-only tests (pytest-timeout, when installed, bounds each one at 150 s)
    timeout_flag=(); python3 -c "import pytest_timeout" 2>/dev/null && timeout_flag=(--timeout 150)
    python3 -m pytest -v -rsf -p no:cacheprovider "${timeout_flag[@]}" --durations 10 \
      -k "gpu or cuda or graph_captured" tests/model/test_compiled.py \
      tests/model/structure/test_mhc_compile.py tests/model/structure/test_flash_ipa.py \
      tests/sampling/test_reverse.py tests/model/test_build_kernels.py 2>&1 \
      | tee "$out/tests.log" | grep -E "PASS|FAIL|ERROR|SKIP|passed|failed|Timeout" | tail -n 40 ;;
  train)
    for mode in off default reduce-overhead; do
      bench "s3v2_train_$mode" $s3 1024 train --set compileModel=$mode --warmup 3 --repeat 5
      bench "s4_train_$mode" $s4 1024 train --set compileModel=$mode --warmup 3 --repeat 5
    done ;;
  sample)
    for mode in off reduce-overhead; do
      bench "s3v2_rev1000_ddim10_$mode" $s3 1000 reverse --sampler ddim:10 --set compileModel=$mode \
        --warmup 0 --repeat 2
      bench "s3v2_rev16384_ddim10_$mode" $s3 16384 reverse --sampler ddim:10 \
        --set compileModel=$mode --warmup 0 --repeat 1
    done
    bench s3v2_rev1000_ddpm_b1_ro $s3 1000 reverse --sampler ddpm --set compileModel=reduce-overhead \
      --warmup 0 --repeat 1
    bench s3v2_rev1000_ddpm_b8_ro $s3 1000 reverse --sampler ddpm --set compileModel=reduce-overhead \
      --warmup 0 --repeat 1 --batch-size 8 ;;
  long)
    for mode in off default; do
      bench "s3v2_train16384_$mode" $s3 16384 train --set compileModel=$mode --warmup 2 --repeat 3
    done ;;
  *) echo "run_compiled.sh: error: unknown part $part (tests, train, sample, long)" >&2; exit 2 ;;
esac
