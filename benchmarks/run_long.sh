#!/usr/bin/env bash
# Long-chain benchmarks of the sparse stages on one GPU (issue 5; docs/BENCHMARKS.md).
#   bash benchmarks/run_long.sh OUT_DIR COMMIT PART
# PART: train3v2 | train4 | rest3v2 | sample | cli   (each fits one 10-minute device call)
# Training steps: batch 1, each stage's own config, progressive training off (the benchmark sets
# the length), chains cropped from .bench_data/long_ca.npz and joined (real local geometry,
# artificial joins) beyond the longest real segment.
set -uo pipefail
out=$1 commit=$2 part=$3
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
data=.bench_data/long_ca.npz
bench() {  # CONFIG NAME LENGTHS MODES [extra args]
  local config=$1 name=$2 lengths=$3 modes=$4
  shift 4
  python3 benchmarks/bench_step.py --config "$config" --lengths "$lengths" --modes "$modes" \
    --device cuda --warmup 2 --repeat 3 --data "$data" --git-commit "$commit" \
    --timeout-per-length 150 --set useProgressiveTraining=False "$@" \
    --out "$out/$name.json" > "$out/$name.log" 2>&1
  grep -E "^\s*[0-9]+ .*(ok|OOM|error)" "$out/$name.log" || tail -n 5 "$out/$name.log"
}
case $part in
  train3v2) bench configs/train_stage3v2.config stage3v2_train 1024,2048,4096,8192,16384,32768,65536 train ;;
  train4) bench configs/train_stage4.config stage4_train 1024,2048,4096,8192,16384,32768,65536,131072 train ;;
  rest3v2)  # the stage 3 V2 rows a first run left out (shorter warm-up and repeat)
    bench configs/train_stage3v2.config stage3v2_train_rest 2048,8192,32768,65536 train \
      --warmup 1 --repeat 2 --timeout-per-length 100
    bench configs/train_stage3v2.config stage3v2_sample_rest 16384 sample ;;
  sample)
    bench configs/train_stage3v2.config stage3v2_sample 1000,4096,16384 sample
    bench configs/train_stage4.config stage4_sample 1000,4096,16384,65536 sample ;;
  cli)  # both entry points end to end at L = 16,384 (an essentially untrained model: timing only)
    run=$out/cli_runs
    for stage in stage3v2 stage4; do
      /usr/bin/time -v python3 train/train_ultralong.py --config configs/train_$stage.config \
        --set dataDirectory=$data --set maximumNumResidues=16384 \
        --set useProgressiveTraining=False --set numEpochs=1 --set datasetSize=3 \
        --set validationSize=1 --set numWorkers=1 --set logDirectory=$run \
        > "$out/cli_train_$stage.log" 2>&1
      echo "train $stage exit $?"; grep -E "Maximum resident|Elapsed" "$out/cli_train_$stage.log"
    done
    for spec in "stage4 1000 0" "stage4 16384 0"; do
      set -- $spec
      python3 sample/sample_ultralong.py --config configs/sample_stage3v2.config \
        --set checkpoint=$run/$1 --set sampleLengths=$2 --set samplesPerLength=1 \
        --set skipSteps=$3 --set outputDirectory=$out/samples_$1 --set name=$1 \
        > "$out/cli_sample_$1_$2.log" 2>&1
      echo "sample $1 L=$2 exit $?"; tail -n 2 "$out/cli_sample_$1_$2.log"
    done ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
