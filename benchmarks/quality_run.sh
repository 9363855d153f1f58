#!/usr/bin/env bash
# The training run and samples behind docs/QUALITY.md, in parts that each fit one 10-minute call
# of a GPU machine (runs/ is git-ignored and stays on the machine between calls).
#   [BASE=CKPT LONG=CKPT] bash benchmarks/quality_run.sh OUT_DIR train MINUTES
#       # train both models until MINUTES of training time in this run: resume the run's own
#       # last.ckpt when there is one, else start from the weights of BASE/LONG (--init-weights;
#       # a weights-only checkpoint of an earlier part), else from scratch. Writes the logs and
#       # the weights-only last checkpoints (OUT_DIR/baseline.ckpt, stage3v2.ckpt).
#   [BASE=CKPT LONG=CKPT] [SAMPLES=DIR] bash benchmarks/quality_run.sh OUT_DIR sample SECONDS
#       # every sample set of docs/QUALITY.md, in three lanes at once, stopped SECONDS from the
#       # start after whole batches; files already in SAMPLES (default runs/quality/samples) are
#       # kept, so the next call goes on where this one stopped
# Data: .bench_data/train_ca.npz, made by our own pipeline from ../shared/data/pdb/train:
#   python -m genie.data.preprocess ../shared/data/pdb/train --cache-dir .genie_cache \
#       --min-length 40 --output .bench_data/train_ca.npz
# Both models train at once on the one GPU, on one segment per sequence cluster per epoch.
set -uo pipefail
if (($# != 3)); then
  echo "usage: bash $0 OUT_DIR train MINUTES | sample SECONDS" >&2
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

declare -A init=([baseline]=${BASE:-} [stage3v2]=${LONG:-})

train() {  # NAME: resume the run's last checkpoint, or start from init weights, or from scratch
  local name=$1 last=$runs/$1/version_0/checkpoints/last.ckpt start=()
  if [[ -f $last ]]; then
    start=(--resume "$last")
  elif [[ -n ${init[$name]} ]]; then
    start=(--init-weights "${init[$name]}")
  fi
  # shellcheck disable=SC2086
  python3 train/train_long.py --config "${config[$name]}" "${common[@]}" ${extra[$name]} \
    "${start[@]}" >> "$runs/train_$name.log" 2>&1
  echo "train $name exit $?"
  python3 -c 'import sys, torch
c = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
keep = ("hyper_parameters", "state_dict", "epoch", "global_step")
torch.save({k: c[k] for k in keep}, sys.argv[2])' "$last" "$out/$name.ckpt"  # without optimiser
}

case $part in
  train)
    mkdir -p "$runs"
    train baseline &
    train stage3v2 &
    wait
    grep -h "Epoch .*val/loss" "$runs"/train_*.log | tail -n 2 | tr '\r' '\n' | tail -n 2
    tar czf "$out/runs.tar.gz" --exclude='*.ckpt' "$runs" ;;
  sample)  # three lanes share the GPU; each runs its sets in order until the deadline
    smp=${SAMPLES:-$runs/samples}
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
        >> "$smp/$name.log" 2>&1
      echo "$name exit $?: $(grep -a "wrote" "$smp/$name.log" | tail -n 1)"
    }
    all=(--set sampleLengths=64-256:32)  # 64, 96, …, 256
    five=("${all[@]}" --set samplesPerLength=5 --set batchSize=5)
    ddim=(--set samplingStrategy=ddim)
    # lane 1: the baseline's DDPM set, 15 per length
    s b_ddpm "$base" "${all[@]}" --set samplesPerLength=15 --set batchSize=15 &
    # lane 2: the long-chain model (its sparse steps leave the GPU idle between kernels)
    (s l_ddpm "$long" "${all[@]}" --set samplesPerLength=15 --set batchSize=15
     s l_long_ddpm "$long" --set sampleLengths=512,1024,2048 --set samplesPerLength=1 \
       --set batchSize=1) &
    # lane 3: the untrained control, the temperature sweep (γ 0.6 is b_ddpm), DDIM strides and η
    (s u_ddpm "$untrained" "${five[@]}"
     for temp in 0.8 1.0 0.4; do
       s "b_t$temp" "$base" --set sampleLengths=64,128,192 --set samplesPerLength=5 \
         --set batchSize=5 --set "temperature=$temp"
     done
     for eta_stride in 1:10 0:10 1:5 0:50 0:5; do
       s "b_ddim${eta_stride#*:}_eta${eta_stride%:*}" "$base" "${five[@]}" "${ddim[@]}" \
         --set "ddimEta=${eta_stride%:*}" --set "skipSteps=${eta_stride#*:}"
     done
     s l_ddim10 "$long" "${five[@]}" "${ddim[@]}" --set skipSteps=10
     s l_long_ddim10 "$long" --set sampleLengths=512,1024,2048 --set samplesPerLength=1 \
       --set batchSize=1 "${ddim[@]}" --set skipSteps=10
     for eta in 1 0; do
       s "b_ddim2_eta$eta" "$base" "${five[@]}" "${ddim[@]}" --set "ddimEta=$eta" \
         --set skipSteps=2
     done) &
    wait
    tar czf "$out/samples.tar.gz" -C "$(dirname "$smp")" "$(basename "$smp")" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
