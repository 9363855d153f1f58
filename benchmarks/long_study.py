"""The long-chain quality study of issue 15: train every arm, sample it at 128-2,048 residues and
score the samples with genie-eval, each step resumable across calls of a GPU machine.

Usage (from the checkout; WORK, default runs/long_study, is git-ignored and stays on the machine
between calls; ``--arms`` picks arms, default all, one process per arm, arm i on GPU i mod
``--gpus``)::

    python benchmarks/long_study.py data                       # here, where ../shared/data is
    python benchmarks/long_study.py --arms A train MINUTES [--deadline SECONDS] [--git-commit C]
    python benchmarks/long_study.py --arms A sample [--deadline SECONDS]
    python benchmarks/long_study.py --arms A pack OUT_DIR      # results and checkpoints back
    python benchmarks/long_study.py unpack DIR                 # here: what pack sent back
    python benchmarks/long_study.py --arms A eval              # CPU: genie-eval of the sets
    python benchmarks/long_study.py --arms A record            # into docs/quality/long_study/
    python benchmarks/long_study_report.py ...                 # tables per length, Rg plot

``data`` builds ``.bench_data/long_study_ca.npz`` (carry it to the GPU machine): every chain of
``../shared/data/pdb/train`` and ``../shared/data/pdb/long`` of at least 40 residues, kept whole
with its breaks marked (the long chains of SpCas9, mTOR, bm5_unbound and the TRiC pairs stay
longer than 1,000 residues), by ``python -m genie.data.preprocess --keep-chain-breaks``. Training
and the evaluation's reference both read it.

``train MINUTES``: each arm trains (``train/train_ultralong.py``, ``configs/train_stage3v2.config``
with :data:`COMMON` and the arm's keys) until it has MINUTES of training time, counted over
resumes (``maxTrainingMinutes``, stored in its checkpoints; compilation counts, it happens in the
first steps), or its ``numEpochs``; a run with a ``last.ckpt`` resumes it, so calls with growing
MINUTES continue one run exactly (the budget's stop writes ``last.ckpt`` where it stopped).
Crops follow the progressive curriculum 256 → 2,048 residues (4 stages over ``numEpochs``):
crops of real chains where a chain is long enough, real segments concatenated with marked joins
up to the crop length otherwise (docs/DATA.md), one segment per sequence cluster per epoch.
``--deadline SECONDS`` fits a call into a machine's time limit: the run's budget for this call is
at most the training minutes it already has plus ``SECONDS`` less :data:`START_SECONDS` (process
start, data, model, the budget's last batch and checkpoint), so the budget, not a kill, ends the
call and ``last.ckpt`` holds where it stopped; a lane still running at ``SECONDS`` gets SIGINT
(training stops after that batch and writes ``last.ckpt``), SIGTERM 40 s later
(:func:`benchmarks.lanes.run_lanes`). Each call writes
``WORK/training/ARM.json`` (steps, epochs and minutes reached, budget, commit, device, date).

The budget is the same for every arm: the same training minutes, with every arm of a study
group training at once on one GPU (``--gpus 1``: one process an arm, sharing it), within one
session's calls, which continue on the machine that stays warm between them: several arms'
checkpoints are more than one call carries or sends back (docs/QUALITY.md "Study protocol").
``record`` commits each arm's evaluations and training record, from which the report reads.

``sample``: every sample set of every arm (:data:`ARMS`: the arm's checkpoint with one sampler
each, 100 model calls, eager) at ``--lengths`` (default 128, 256, 512, 1,024, 2,048) ×
``--per-length`` (default 8) backbones, seeds from (0, L, i) in every set; files already written
are kept, so a call stopped by ``--deadline`` is continued by the next. ``eval``: ``python -m
genie.eval`` of every set against the dataset's real chains with one bucket per length.
``pack OUT_DIR``: WORK's logs, training records, samples and TensorBoard events as
``OUT_DIR/long_study.tar.gz``, and each arm's ``last.ckpt`` and torch.compile cache
(``compileCacheFile``: ``WORK/compile_cache/ARM.bin``) in parts of 15 MiB, listed with their
checksums in ``OUT_DIR/pack.json`` (:mod:`benchmarks.long_study_files`): what one call of a GPU
machine can send back, so that the next call, on a fresh machine, carries them in and continues.
``pack --weights-only`` sends each arm's weights alone (≈ 11 MB, ``WORK/weights/ARM.ckpt`` once
unpacked): what several arms can send back at once, enough to sample and evaluate, not to train on.
``unpack DIR`` (here) puts them back into WORK (the logs under
``logs/PACK_DATE/``), checking every file's size and SHA-256.
``record [DEST]``: the arms' ``training/ARM.json`` and ``eval/SET/metrics.json`` into DEST
(default ``docs/quality/long_study``). Extra keys for every arm: ``--set KEY=VALUE`` (training)
and ``--sample-set KEY=VALUE`` (sampling); later values win.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lanes import run_lanes  # noqa: E402
from benchmarks.long_study_files import (  # noqa: E402
    checkpoint_progress,
    compile_cache,
    describe,
    last_checkpoint,
    pack,
    sampling_checkpoint,
    unpack,
)
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import UserInputError  # noqa: E402

DATA = Path(".bench_data/long_study_ca.npz")
SOURCES = ("../shared/data/pdb/train", "../shared/data/pdb/long")
RESULTS = Path("docs/quality/long_study")
TRAIN_CONFIG = "configs/train_stage3v2.config"
SAMPLE_CONFIG = "configs/sample_stage3v2.config"
LENGTHS = (128, 256, 512, 1024, 2048)
START_SECONDS = 120  # of a --deadline not given to training (start, set-up, last checkpoint)

# Keys of every arm: today's long-chain recipe (train_stage3v2.config) on the study's data, in a
# budget that one session's device time holds (docs/QUALITY.md "Study protocol"): the curriculum
# 256 → 2,048 over 4 epochs (one per stage), so that each arm reaches long crops; eager
# (compilation would recompile at every stage and cannot travel between calls); 2 loader
# workers an arm, as several arms share one machine's 16 cores.
COMMON = (
    "sampleByCluster=True", "concatenateChains=True", "maximumNumResidues=2048",
    "useProgressiveTraining=True", "progressiveStartLength=256", "progressiveEndLength=2048",
    "progressiveNumStages=4", "numEpochs=4", "batchSize=2", "learningRate=3e-4",
    "warmupEpochs=0.5", "validationSize=8", "validateEveryEpochs=2", "numWorkers=2",
    "logSamplesEveryEpochs=0", "compileModel=off",
)  # fmt: skip


def with_keys(base: tuple[str, ...], *keys: str) -> tuple[str, ...]:
    """``base`` with ``keys`` (``"k=v"``) put in place of its entries for the same key."""
    names = {key.split("=", 1)[0] for key in keys}
    return (*(key for key in base if key.split("=", 1)[0] not in names), *keys)


# Samplers: 100 model calls each (stride 10 over the 1,000 timesteps), so that every set of an
# arm fits one call; DDIM with η = 1 is DDPM's ancestral sampler on the coarser grid
# (docs/QUALITY.md: at stride 2 it reproduced DDPM's figures). Every set names each sampler key
# that SAMPLE_CONFIG sets, so that its defaults (since the study: a late start) change no set.
FROM_T = ("startSignalShare=none", "recentre=False")
DDIM_G06 = ("samplingStrategy=ddim", "skipSteps=10", "ddimEta=1.0", "temperature=0.6", *FROM_T)
DDIM = with_keys(DDIM_G06, "temperature=1.0", "recentre=True")
# ε models: the same, started where the real-chain signal is 0.2 of the start's variance
# (startSignalShare, genie/sampling/start.py; unit noise at stride 10: t = 970 at 128 residues,
# 990 at 2,048): group 1's denoising profile had ε's x̂0 good up to t = 950 and hundreds of Å
# off at t = T alone, and a CPU pilot's best fixed starts (950 at 64 residues, 970 at 128) had
# signal shares of 0.23 and 0.15 (docs/QUALITY.md).
DDIM_LATE = with_keys(DDIM, "startSignalShare=0.2")
RENOISE = with_keys(DDIM, "samplingStrategy=renoise", "ddimEta=0")
SAMPLE_COMMON = ("compileModel=off",)  # eager: five lengths would capture five sets of graphs


@dataclass(frozen=True)
class Arm:
    """One arm: its training keys, its sample sets (name -> sampling keys), what it tests."""

    train: tuple[str, ...]
    samplers: dict[str, tuple[str, ...]]
    what: str


ARMS = {
    "today": Arm((), {"ddim_g06": DDIM_G06, "ddim": DDIM, "ddim_late": DDIM_LATE},
                 "train_stage3v2.config as shipped: unit noise, ε, no self-conditioning, no "
                 "random edges"),
    "length": Arm(("noiseScale=length",), {"ddim": DDIM, "ddim_late": DDIM_LATE},
                  "length-aware noise σ (the chain's Cα standard deviation; σ(L) at sampling)"),
    "selfcond": Arm(("selfConditioning=True",), {"ddim": DDIM, "ddim_late": DDIM_LATE},
                    "self-conditioning on the previous x̂0 (unit noise)"),
    "random": Arm(("randomNeighbors=16",), {"ddim": DDIM, "ddim_late": DDIM_LATE},
                  "16 random long-range neighbours, p ∝ d⁻³, beside the 32 of the hybrid graph"),
    "length_x0": Arm(("noiseScale=length", "predictionTarget=x0"),
                     {"renoise": RENOISE, "ddim": DDIM},
                     "length-aware noise, x0 prediction, re-noising sampler"),
    "combined": Arm(("noiseScale=length", "predictionTarget=x0", "selfConditioning=True",
                     "selfConditionGraph=True", "randomNeighbors=16"),
                    {"renoise": RENOISE, "ddim": DDIM},
                    "all of them, the graph searched on the self-conditioned x̂0"),
    # Group 3: the budget question. Today's recipe alone on the GPU, eager, 8 epochs (2 per
    # curriculum stage), the training minutes one session's calls hold on one warm machine; its
    # late-start set also at strides 5 and 20 (200 and 50 model calls), the fewest-steps question.
    "today_long": Arm(("numEpochs=8",),
                      {"ddim_late": DDIM_LATE, "ddim_late_s5": with_keys(DDIM_LATE, "skipSteps=5"),
                       "ddim_late_s20": with_keys(DDIM_LATE, "skipSteps=20")},
                      "today's recipe, alone on the GPU, eager, 8 epochs, one session's minutes"),
}  # fmt: skip


def written(folder: Path) -> int:
    """Backbones in a sample folder: PDB files, and mmCIF where coordinates outgrew PDB's columns
    (a diverged sample is still a sample to score)."""
    return sum(1 for f in folder.glob("*") if f.suffix in (".pdb", ".cif"))


def sets(keys: Sequence[str]) -> list[str]:
    """``["k=v", ...]`` -> ``["--set", "k=v", ...]``."""
    return [item for key in keys for item in ("--set", key)]


def write_training_record(args: argparse.Namespace, arm: str, status: int) -> dict:
    """``WORK/training/ARM.json``: where the arm's training stands and what ran it."""
    record = {
        "arm": arm, "what": ARMS[arm].what, "train_keys": [*COMMON, *ARMS[arm].train, *args.set],
        "budget_minutes": args.minutes, "progress": checkpoint_progress(
            last_checkpoint(args.work, arm)), "exit": status, "git_commit": args.git_commit,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    path = args.work / "training" / f"{arm}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def data_step(args: argparse.Namespace) -> None:
    command = [sys.executable, "-m", "genie.data.preprocess", *SOURCES, "--keep-chain-breaks",
               "--min-length", "40", "--cache-dir", ".bench_data/cache",
               "--output", str(args.data)]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True)


def call_minutes(budget: float, done: float, deadline: float | None) -> float:
    """This call's ``maxTrainingMinutes``: the arm's ``budget``, or less where ``deadline``
    seconds (less :data:`START_SECONDS`) after the ``done`` minutes come first."""
    if deadline is None:
        return budget
    return min(budget, done + max(deadline - START_SECONDS, 0) / 60)


def train_step(args: argparse.Namespace) -> dict[str, int]:
    lanes = {}
    for arm in args.arms:
        last = last_checkpoint(args.work, arm)
        done = (checkpoint_progress(last) or {}).get("minutes", 0.0)
        minutes = call_minutes(args.minutes, done, args.deadline)
        if minutes <= done:
            why = "budget spent" if done >= args.minutes else "--deadline leaves no time"
            print(f"train {arm}: nothing to do ({why}; {done:.1f} of {args.minutes:g} minutes)")
            continue
        keys = [*COMMON, f"dataDirectory={args.data}", *ARMS[arm].train, *args.set,
                f"name={arm}", f"logDirectory={args.work / 'runs'}",
                f"cacheDirectory={args.work / 'cache'}",
                f"compileCacheFile={compile_cache(args.work, arm)}",
                f"maxTrainingMinutes={minutes:.4f}"]  # fmt: skip
        command = [sys.executable, "train/train_ultralong.py", "--config", TRAIN_CONFIG,
                   *sets(keys)]  # fmt: skip
        if last.is_file():
            command += ["--resume", str(last)]
        print(f"train {arm}: from {done:.1f} to {minutes:.1f} training minutes "
              f"(budget {args.minutes:g})")  # fmt: skip
        lanes[arm] = [command]
    status = run_lanes(lanes, log_dir=args.work / "logs", step="train", gpus=args.gpus,
                       deadline=args.deadline)  # fmt: skip
    for arm in lanes:
        record = write_training_record(args, arm, status[arm])
        print(f"train {arm}: exit {status[arm]}, {describe(record['progress'])}")
    return status


def sample_sets(arms: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(arm, set name, sampling keys)`` of every sample set of ``arms``."""
    return [
        (arm, f"{arm}_{name}", keys) for arm in arms for name, keys in ARMS[arm].samplers.items()
    ]


def sample_step(args: argparse.Namespace) -> dict[str, int]:
    lengths = ",".join(str(n) for n in args.lengths)
    lanes: dict[str, list[list[str]]] = {}
    for arm, name, keys in sample_sets(args.arms):
        last = sampling_checkpoint(args.work, arm)
        if not last.is_file():
            print(f"sample {name}: skipped, no checkpoint {last} (train first)")
            continue
        every = [f"checkpoint={last}", f"name={name}",
                 f"outputDirectory={args.work / 'samples' / name}", f"sampleLengths={lengths}",
                 f"samplesPerLength={args.per_length}", f"batchSize={args.per_length}",
                 "saveFragments=False", *SAMPLE_COMMON, *keys, *args.sample_set]  # fmt: skip
        command = [sys.executable, "sample/sample_long.py", "--config", SAMPLE_CONFIG,
                   *sets(every)]  # fmt: skip
        lanes.setdefault(arm, []).append(command)
    status = run_lanes(lanes, log_dir=args.work / "logs", step="sample", gpus=args.gpus,
                       deadline=args.deadline)  # fmt: skip
    for arm, name, _ in sample_sets(list(lanes)):
        done = written(args.work / "samples" / name)
        print(f"sample {name}: exit {status[arm]}, {done} of "
              f"{len(args.lengths) * args.per_length} backbones written")  # fmt: skip
    return status


def eval_step(args: argparse.Namespace) -> dict[str, int]:
    lanes = {}
    for _, name, _ in sample_sets(args.arms):
        folder = args.work / "samples" / name
        if not written(folder):
            print(f"eval {name}: skipped, no samples in {folder}")
            continue
        reference = args.reference or (None if args.data == "bundled" else args.data)
        lanes[name] = [[sys.executable, "-m", "genie.eval", str(folder),
                        *(["--reference", str(reference)] if reference else []),
                        "--out", str(args.work / "eval" / name),
                        "--buckets", ",".join(str(n) for n in args.lengths),
                        "--max-tm-length", str(max(args.lengths)),
                        "--max-tm-pairs", str(args.tm_pairs),
                        "--tm-time-budget", "60"]]  # fmt: skip
    status = run_lanes(lanes, log_dir=args.work / "logs", step="eval", gpus=0, deadline=None)
    for name, code in status.items():
        print(f"eval {name}: exit {code}")
    return status


def pack_step(args: argparse.Namespace) -> None:
    pack(args.work, args.out, args.arms, weights_only=args.weights_only)


def unpack_step(args: argparse.Namespace) -> None:
    unpack(args.dir, args.work)


def record_step(args: argparse.Namespace) -> None:
    """The arms' training records and evaluations into DEST, the study's committed results."""
    dest = args.dest if args.dest.is_absolute() else REPO / args.dest
    copied = 0
    for arm in args.arms:
        record = args.work / "training" / f"{arm}.json"
        sets = [name for _, name, _ in sample_sets([arm])
                if (args.work / "eval" / name / "metrics.json").is_file()]  # fmt: skip
        if not record.is_file() or not sets:
            why = "no evaluation" if record.is_file() else "no training record"
            print(f"record {arm}: skipped ({why})")
            continue
        (dest / "training").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, dest / "training" / f"{arm}.json")
        for name in sets:
            (dest / "eval" / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.work / "eval" / name / "metrics.json",
                            dest / "eval" / name / "metrics.json")  # fmt: skip
        copied += 1
        print(f"record {arm}: training record and {', '.join(sets)} into {dest}")
    if not copied:
        raise UserInputError(f"record: nothing to record for {', '.join(args.arms)} in {args.work}")


def default_commit() -> str:
    """This checkout's commit (short hash), or "unknown" where git cannot say."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/long_study"))
    parser.add_argument("--data", default=str(DATA), help="processed .npz, or 'bundled'")
    parser.add_argument("--reference", help="genie-eval reference (default: --data)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    parser.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sample-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--per-length", type=int, default=8)
    parser.add_argument("--tm-pairs", type=int, default=20)
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("data")
    train = steps.add_parser("train")
    train.add_argument("minutes", type=float)
    train.add_argument("--deadline", type=float)
    train.add_argument("--git-commit", help="recorded in training/ARM.json (default: git's)")
    sample = steps.add_parser("sample")
    sample.add_argument("--deadline", type=float)
    steps.add_parser("eval")
    pack = steps.add_parser("pack")
    pack.add_argument("out", type=Path)
    pack.add_argument(
        "--weights-only",
        action="store_true",
        help="send each arm's weights, not its whole last.ckpt (several arms)",
    )
    unpack = steps.add_parser("unpack")
    unpack.add_argument("dir", type=Path)
    record = steps.add_parser("record")
    record.add_argument("dest", type=Path, nargs="?", default=RESULTS)
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown or not args.arms:
        raise UserInputError(f"--arms: unknown {unknown or 'none given'} (arms: {', '.join(ARMS)})")
    try:
        args.lengths = [int(n) for n in args.lengths.split(",")]
    except ValueError:
        raise UserInputError(
            f"--lengths takes comma-separated integers, got {args.lengths}"
        ) from None
    if args.step == "train" and not args.minutes > 0:
        raise UserInputError(f"train MINUTES must be > 0, got {args.minutes}")
    if args.step == "train" and not args.git_commit:
        args.git_commit = default_commit()
    needs_data = args.step == "train" or (args.step == "eval" and args.reference is None)
    if args.data != "bundled" and needs_data and not Path(REPO, args.data).is_file():
        raise UserInputError(f"--data {args.data} not found: run 'python {__file__} data' first")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.work = args.work if args.work.is_absolute() else REPO / args.work
    step = {"data": data_step, "train": train_step, "sample": sample_step, "eval": eval_step,
            "pack": pack_step, "unpack": unpack_step, "record": record_step}[args.step]  # fmt: skip
    status = step(args) or {}
    failed = {k: v for k, v in status.items() if v not in (0, -15)}
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
