#!/usr/bin/env bash
# Compiled and graph-captured model on one GPU (docs/BENCHMARKS.md, "Compiled and graph-captured
# model"): each row is a fresh bench_step.py child on synthetic traces, batch 1 unless the row
# says otherwise, progressive training off. Parts run in the order given; a part that a caller's
# `timeout` stops keeps the rows it finished (each JSON is written after every row).
#   bash benchmarks/run_compiled.sh OUT_DIR COMMIT PART [PART ...]
# PART: tests    the GPU-only tests of the compiled, graph-captured and fused paths (4 at once;
#                stopped by SIGINT after TESTS_LIMIT seconds, default 400, so that pytest still
#                prints its failures: keep it below any outer limit)
#       train    stage 3 V2 and stage 4 training steps at L = 1,024: off, default (then
#                reduce-overhead)
#       long     stage 3 V2 training step at L = 16,384: default, then off (its 16 chunks of
#                1,024 residues run through one compiled chunk function: genie/utils/chunking.py)
#       compiletime  the first (compiling) and second compiled forward + backward of stage 3 V2
#                at L = 16,384 in 16 chunks, a cold Inductor cache each: the chunk loop apart,
#                then unrolled (ARMS, default apart,unrolled; benchmarks/compile_time.py)
#       sample   whole reverse processes of 1,000 residues: DDIM stride 10 (100 model calls)
#                eager, graph-captured, graph-captured in a batch of 8; then DDPM
#                graph-captured, batch 1 and 8
#       sample16k  16,384 residues, DDIM stride 10, graph-captured, then eager
#       stages   the other training configs (STAGES, default stage1 stage2 stage3 flash mhc
#                mhc_flash stage5), training step at STAGE_LENGTHS (default 1024): off, then default
#       genie    the dense baseline's training step (off, default) beside the original Genie's
#                (aqlaboratory/genie, exported to .original_genie/), TF32 both, L = 256-1,024
# Every row is a bench_step.py child, killed after CHILD_LIMIT seconds (default 560: a cold
# compile at 16,384 takes minutes; bench_step's own default, 300 s, would cut it off).
set -uo pipefail
out=$1 commit=$2
shift 2
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
bench() {  # NAME CONFIG LENGTHS MODES [extra bench_step arguments]
  local name=$1 config=$2 lengths=$3 modes=$4
  shift 4
  python3 benchmarks/bench_step.py --config "$config" --lengths "$lengths" --modes "$modes" \
    --device cuda --git-commit "$commit" --set useProgressiveTraining=False \
    --timeout-per-length "${CHILD_LIMIT:-560}" "$@" \
    --out "$out/$name.json" > "$out/$name.log" 2>&1
  echo "== $name ($SECONDS s)"
  grep -E "^\s*[0-9]+ .*(ok|OOM|error)" "$out/$name.log" || tail -n 5 "$out/$name.log"
}
s3=configs/train_stage3v2.config s4=configs/train_stage4.config base=configs/train_baseline.config
rev() {  # NAME LENGTH SAMPLER MODE [extra]: one whole reverse process of stage 3 V2
  local name=$1 length=$2 sampler=$3 mode=$4
  shift 4
  bench "$name" $s3 "$length" reverse --sampler "$sampler" --set compileModel="$mode" \
    --warmup 0 --repeat 1 "$@"
}
for part in "$@"; do
  case $part in
    tests)
      python3 -c "from genie.model.dense.fused_kernels import cuequivariance_unavailable as u
print('cuequivariance:', u() or 'imports')" 2>&1 | tee "$out/cueq_import.log"
      # SIGINT at the caller's limit (TESTS_LIMIT seconds): pytest then still prints the failures
      timeout -s INT "${TESTS_LIMIT:-400}" python3 -m pytest -v -rsf -p no:cacheprovider \
        -p no:logging -n 4 --timeout 240 --tb=short \
        --durations 10 -k "gpu or cuda or graph_captured" tests/model/test_compiled.py \
        tests/model/structure/test_mhc_compile.py tests/model/structure/test_flash_ipa.py \
        tests/sampling/test_reverse.py tests/model/test_build_kernels.py \
        tests/model/dense/test_fused_kernels_gpu.py 2>&1 \
        | tee "$out/tests.log" | grep -E "FAIL|ERROR|SKIP|passed|failed|Timeout|Error" | tail -n 60 ;;
    train)
      for mode in off default; do
        bench "s3v2_train_$mode" $s3 1024 train --set compileModel=$mode --warmup 3 --repeat 5
        bench "s4_train_$mode" $s4 1024 train --set compileModel=$mode --warmup 3 --repeat 5
      done
      bench s3v2_train_ro $s3 1024 train --set compileModel=reduce-overhead --warmup 3 --repeat 5
      bench s4_train_ro $s4 1024 train --set compileModel=reduce-overhead --warmup 3 --repeat 5 ;;
    long)
      for mode in default off; do
        bench "s3v2_train16384_$mode" $s3 16384 train --set compileModel=$mode --warmup 2 --repeat 3
      done ;;
    compiletime)
      python3 benchmarks/compile_time.py --config $s3 --length 16384 --chunks 16 \
        --arms "${ARMS:-apart,unrolled}" --device cuda --timeout "${CHILD_LIMIT:-560}" \
        --out "$out/compile_time.json" 2>&1 | tee "$out/compile_time.log" | tail -n 4
      echo "== compiletime ($SECONDS s)" ;;
    sample)
      rev s3v2_rev1000_ddim10_off 1000 ddim:10 off
      rev s3v2_rev1000_ddim10_ro 1000 ddim:10 reduce-overhead
      rev s3v2_rev1000_ddim10_b8_ro 1000 ddim:10 reduce-overhead --batch-size 8
      rev s3v2_rev1000_ddpm_b1_ro 1000 ddpm reduce-overhead
      rev s3v2_rev1000_ddpm_b8_ro 1000 ddpm reduce-overhead --batch-size 8 ;;
    sample16k)
      rev s3v2_rev16384_ddim10_ro 16384 ddim:10 reduce-overhead
      rev s3v2_rev16384_ddim10_off 16384 ddim:10 off ;;
    stages)
      for stage in ${STAGES:-stage1 stage2 stage3 flash mhc mhc_flash stage5}; do
        for mode in off default; do
          bench "${stage}_train_$mode" "configs/train_$stage.config" "${STAGE_LENGTHS:-1024}" train \
            --set compileModel=$mode --warmup 3 --repeat 5
        done
      done ;;
    genie)
      [ -d .original_genie ] || { echo "run_compiled.sh: error: no .original_genie/" >&2; exit 2; }
      python3 benchmarks/bench_original_genie.py --lengths 256,512,1024 --modes train \
        --matmul-precision high --device cuda --warmup 3 --repeat 5 --git-commit "$commit" \
        --out "$out/original_tf32.json" > "$out/original_tf32.log" 2>&1
      echo "== original_tf32 ($SECONDS s)"; grep -E "^\s*[0-9]+ .*(ok|OOM|error)" "$out/original_tf32.log"
      bench baseline_train_off $base 256,512,1024 train --set compileModel=off --warmup 3 --repeat 5
      bench baseline_train_default $base 256,1024 train --set compileModel=default --warmup 3 \
        --repeat 5 ;;
    *) echo "run_compiled.sh: error: unknown part $part" \
         "(tests, train, long, compiletime, sample, sample16k, stages, genie)" >&2
       exit 2 ;;
  esac
done
