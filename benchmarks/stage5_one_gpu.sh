#!/bin/bash
# Stage 5 on one GPU, in one command (docs/DISTRIBUTED.md): train_stage5.config trained under
# torchrun with sequence parallelism (one shard), its checkpoint sampled by one process and by
# torchrun with useSequenceParallelism (the files compared byte for byte, both eager), then the
# cost of the one-shard code path against the plain model (benchmarks/sequence_parallel_one_shard).
# Everything runs eager (compileModel off): this checks the sharded code paths, not the compiler.
#
#   OUT=results bash benchmarks/stage5_one_gpu.sh        (LEN: crop and sample length, 512)
#   DEV=cpu LEN=64 OUT=/tmp/s5 bash benchmarks/stage5_one_gpu.sh   (a dry run on CPU, gloo)
#
# Wheels in .whl/ (biopython, for a GPU image without it) are installed to /tmp/site first.
# Results: OUT/rc.txt (exit codes, file comparison, summary lines), OUT/*.log, OUT/one_shard.json.
set -u
shopt -s nullglob
OUT=${OUT:-/tmp/out16}; mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import Bio" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
DEV=${DEV:-gpu}; LEN=${LEN:-512}
EXTRA=(); [ "$DEV" = cpu ] && EXTRA=(--set accelerator=cpu --set distributedBackend=gloo)
W=$OUT/work; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt 2>&1
timeout 150 torchrun --standalone --nproc_per_node 1 train/train_ultralong.py --config configs/train_stage5.config \
  --set devices=1 --set useSequenceParallelism=True --set numEpochs=1 --set datasetSize=4 --set validationSize=1 \
  --set maximumNumResidues=$LEN --set progressiveEndLength=$LEN --set progressiveStartLength=$LEN --set effectiveBatchSize=2 \
  --set numWorkers=0 --set compileModel=off --set logDirectory=$W/runs --set cacheDirectory=$W/cache --set logSamplesEveryEpochs=0 "${EXTRA[@]}" \
  > $OUT/train.log 2>&1; echo "train rc $?" >> $OUT/rc.txt
SAMPLE=(--config configs/sample_stage5.config --set checkpoint=$W/runs/stage5 --set sampleLengths=$LEN,1000 --set samplesPerLength=1
  --set samplingStrategy=ddim --set skipSteps=50 --set compileModel=off)
[ "$DEV" = cpu ] && SAMPLE+=(--set device=cpu)
timeout 120 python sample/sample_ultralong.py "${SAMPLE[@]}" --set outputDirectory=$W/plain > $OUT/sample_plain.log 2>&1; echo "sample_plain rc $?" >> $OUT/rc.txt
timeout 120 torchrun --standalone --nproc_per_node 1 sample/sample_ultralong.py "${SAMPLE[@]}" --set outputDirectory=$W/sp \
  --set useSequenceParallelism=True > $OUT/sample_sp.log 2>&1; echo "sample_sp rc $?" >> $OUT/rc.txt
for f in $W/plain/*.pdb $W/plain/*.cif; do cmp -s $f $W/sp/$(basename $f) && echo "same $(basename $f)" || echo "DIFF $(basename $f)"; done >> $OUT/rc.txt
if [ "$DEV" = gpu ]; then
  timeout 100 python -m benchmarks.sequence_parallel_one_shard --length ${SPLEN:-2048} --repeat ${REP:-3} > $OUT/one_shard.json 2> $OUT/one_shard.err; echo "one_shard rc $?" >> $OUT/rc.txt
fi
grep -h "wrote\|samples planned\|saved\|torchrun" $OUT/*.log | tr '\r' '\n' | grep -v "it/s" >> $OUT/rc.txt
cat $OUT/rc.txt $OUT/one_shard.json 2>/dev/null
