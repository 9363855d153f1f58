#!/usr/bin/env bash
# The training run and samples behind docs/QUALITY.md, in parts that each fit one 10-minute call
# of a GPU machine (runs/ is git-ignored and stays on the machine between calls).
#   bash benchmarks/quality_run.sh OUT_DIR train MINUTES   # train (or resume) both models until
#                                                         # MINUTES of training time in all
#   [SETS=ddim|ddpm] [BASE=CKPT LONG=CKPT] bash benchmarks/quality_run.sh OUT_DIR sample SECONDS
#       # the DDIM sets (default) or the DDPM/temperature sets, all stopped SECONDS from the start
#       # (a set's files are written batch by batch); BASE/LONG: checkpoints other than the runs'
# Data: .bench_data/train_ca.npz, made by our own pipeline from ../shared/data/pdb/train:
#   python -m genie.data.preprocess ../shared/data/pdb/train --cache-dir .genie_cache \
#       --min-length 40 --output .bench_data/train_ca.npz
# Both models train at once on the one GPU, on one segment per sequence cluster per epoch.
set -uo pipefail
if (($# != 3)); then
  echo "usage: [SETS=ddim|ddpm] bash $0 OUT_DIR train MINUTES | sample SECONDS" >&2
  exit 2
fi
out=$1 part=$2 budget=$3
export PYTHONUNBUFFERED=1
runs=runs/quality
data=.bench_data/train_ca.npz
common=(--set "dataDirectory=$data" --set sampleByCluster=True --set numWorkers=4
        --set "logDirectory=$runs" --set numEpochs=100000 --set learningRate=3e-4
        --set warmupEpochs=1 --set logSamplesEveryEpochs=10 --set "maxTrainingMinutes=$budget")
declare -A config=([baseline]=configs/train_baseline.config [stage3v2]=configs/train_stage3v2.config)
declare -A extra=(
  [baseline]="--set batchSize=8 --set maximumNumResidues=256"
  [stage3v2]="--set batchSize=4 --set maximumNumResidues=512 --set useProgressiveTraining=False"
)

train() {  # NAME: train, or resume the run's last checkpoint
  local name=$1 last=$runs/$1/version_0/checkpoints/last.ckpt resume=()
  [[ -f $last ]] && resume=(--resume "$last")
  # shellcheck disable=SC2086
  python3 train/train_long.py --config "${config[$name]}" "${common[@]}" ${extra[$name]} \
    "${resume[@]}" >> "$runs/train_$name.log" 2>&1
  echo "train $name exit $?"
}

case $part in
  train)
    mkdir -p "$runs"
    train baseline &
    train stage3v2 &
    wait
    grep -h "Epoch .*val/loss" "$runs"/train_*.log | tail -n 2 | tr '\r' '\n' | tail -n 2
    tar czf "$out/runs.tar.gz" --exclude='*.ckpt' "$runs" ;;
  sample)  # every set that fits one call: DDIM first (fast), DDPM and the temperatures after
    smp=$runs/samples
    mkdir -p "$smp"
    deadline=$(($(date +%s) + budget))
    base=${BASE:-$runs/baseline/version_0/checkpoints/last.ckpt}
    long=${LONG:-$runs/stage3v2/version_0/checkpoints/last.ckpt}
    untrained=$runs/untrained.ckpt
    [[ -f $untrained ]] || python3 benchmarks/untrained_checkpoint.py \
      --config configs/train_baseline.config "$untrained"
    s() {  # NAME CHECKPOINT [--set ...]: one sample set (skipped once the deadline is near)
      local name=$1 ckpt=$2 left=$((deadline - $(date +%s)))
      shift 2
      ((left > 5)) || return 0
      timeout "$left" python3 sample/sample_long.py --config configs/sample_baseline.config \
        --set "checkpoint=$ckpt" --set "name=$name" --set "outputDirectory=$smp/$name" "$@" \
        > "$smp/$name.log" 2>&1
      echo "$name exit $?: $(grep -a "wrote" "$smp/$name.log" | tail -n 1)"
    }
    all=(--set sampleLengths=64-256:32)   # 64, 96, …, 256
    ddim=(--set samplingStrategy=ddim)
    case ${SETS:-ddim} in
      ddim)
        (s b_ddim10 "$base" "${all[@]}" --set samplesPerLength=15 --set batchSize=15 \
           "${ddim[@]}" --set skipSteps=10
         s b_ddim50 "$base" "${all[@]}" --set samplesPerLength=5 --set batchSize=35 \
           "${ddim[@]}" --set skipSteps=50) &
        (s u_ddim10 "$untrained" "${all[@]}" --set samplesPerLength=5 --set batchSize=35 \
           "${ddim[@]}" --set skipSteps=10) &
        (s l_ddim10 "$long" "${all[@]}" --set samplesPerLength=15 --set batchSize=15 \
           "${ddim[@]}" --set skipSteps=10
         s l_long "$long" --set sampleLengths=512,1024,2048 --set samplesPerLength=1 \
           --set batchSize=1 "${ddim[@]}" --set skipSteps=10) & ;;
      ddpm)  # docs/QUALITY.md holds the subsets that three shorter calls reached
        s b_ddpm "$base" "${all[@]}" --set samplesPerLength=5 --set batchSize=5 &
        s u_ddpm "$untrained" "${all[@]}" --set samplesPerLength=5 --set batchSize=5 &
        (s l_ddpm "$long" "${all[@]}" --set samplesPerLength=5 --set batchSize=5
         s l_long_ddpm "$long" --set sampleLengths=512,1024,2048 --set samplesPerLength=1 \
           --set batchSize=1) &
        for temp in 0.4 0.8 1.0; do
          s "b_t$temp" "$base" --set sampleLengths=64,128 --set samplesPerLength=3 \
            --set batchSize=3 --set "temperature=$temp" &
        done ;;
      *) echo "unknown SETS=$SETS (ddim or ddpm)" >&2; exit 2 ;;
    esac
    wait
    tar czf "$out/samples_${SETS:-ddim}.tar.gz" "$smp" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
