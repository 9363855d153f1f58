"""Command-line sampling: ``--config FILE [--set key=value ...]``.

Reads a sampling config (checkpoint, lengths, samples per length, batch size, sampler, seed,
output folder), samples in batches of mixed lengths and writes one Cα-only file per backbone
(PDB up to 9,999 residues, mmCIF above; optionally PDB fragments and the trajectory), atomically
(:mod:`genie.sampling.writer`). ``outputDirectory/provenance.json`` records which checkpoint
(weights SHA-256), sampler settings, seed and code version made each sample
(:mod:`genie.sampling.provenance`). A file already present counts as done only when its record
matches the run's checkpoint, settings, seed and length, so an interrupted run continues where it
stopped; a file made otherwise, or without a record, stops the run before any sampling (exit 2)
unless ``--overwrite`` samples it again. Sample i of length L uses the seed derived from
(seed, L, i); re-running with the same config regenerates exactly the missing files (a
temporary file left by a killed run is removed). A sample that diverged (NaN/inf coordinates, or
beyond the PDB columns with ``outputFormat pdb``) is not written as a structure file: a warning
names it, its length and seed, and the summary line counts it (``saveDivergedSamples`` keeps it
as ``NAME.diverged.npz``).
A progress bar shows reverse steps/s and the ETA; one summary line ends the run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from genie.checkpoint import TrainedModel, read_checkpoint
from genie.config import ConfigError, SampleConfig
from genie.config.cli import add_config_arguments, load_with_defaults
from genie.config.distributed import check_shardable_keys
from genie.data.atomic import remove_stale_temporaries
from genie.model.build import model_sizes
from genie.model.compiled import maybe_compile
from genie.model.memory import peak_bytes, require_memory
from genie.sampling.jobs import SampleJob, plan_jobs
from genie.sampling.launch import SamplingLaunch, sampling_launch
from genie.sampling.predictor import sample_chains
from genie.sampling.provenance import (
    MANIFEST,
    jobs_to_sample,
    record_samples,
    run_record,
    sample_record,
)
from genie.sampling.reverse import Samples
from genie.sampling.settings import build_sampler, describe_sampler, sampler_settings
from genie.sampling.sharded import sample_sharded
from genie.sampling.writer import coordinate_problem, write_diverged, write_sample
from genie.utils.cli import exit_status
from genie.utils.paths import ensure_writable_dir
from genie.utils.runtime import apply_runtime_settings, resolve_compile_mode

log = logging.getLogger("genie.sample")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder: then the newest ``checkpoints/last.ckpt`` inside."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no checkpoints/last.ckpt under the run folder {path}")
        return found[-1]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (a .ckpt file or a run folder)")
    return path


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda`` (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def load_model(cfg: SampleConfig, device: torch.device, *, announce: bool = True) -> TrainedModel:
    """The checkpoint's denoiser (eval mode, with the config's model keys for sampling, e.g.
    chunk sizes, in place of the checkpoint's) and its schedule, on ``device``; ``announce``
    prints which checkpoint (and warns of keys without effect)."""
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    if announce:
        print(f"[genie] checkpoint: {checkpoint}")
    trained = read_checkpoint(checkpoint, map_location=device, overrides=cfg.model_overrides())
    apply_runtime_settings(matmul_precision=trained.config.matmulPrecision)
    if announce and cfg.knnUpdateFrequency > 1 and not trained.model.uses_graph:
        log.warning("knnUpdateFrequency = %d has no effect: this model builds no k-NN graph",
                    cfg.knnUpdateFrequency)  # fmt: skip
    return trained


def _keeps_trajectory(cfg: SampleConfig, job: SampleJob) -> bool:
    if not cfg.saveTrajectory:
        return False
    if job.length > cfg.trajectoryMaxLength:
        log.warning(
            "%s: saveTrajectory skipped, %d residues is more than trajectoryMaxLength = %d "
            "(raise it to keep this trajectory)",
            job.stem.name,
            job.length,
            cfg.trajectoryMaxLength,
        )
        return False
    return True


def _set_aside(cfg: SampleConfig, job: SampleJob, xyz: torch.Tensor, frames, steps, why: str):
    """Report a diverged sample and, with ``saveDivergedSamples``, keep it as .diverged.npz."""
    kept = ""
    if cfg.saveDivergedSamples:
        path = write_diverged(job.stem, xyz, reason=why, trajectory=frames, frame_timesteps=steps)
        kept = f"; kept as {path.name}"
    log.warning("%s diverged (length %d, seed %d): %s; not written%s", job.stem.name,
                job.length, job.seed, why, kept)  # fmt: skip


def check_launch(cfg: SampleConfig) -> None:
    """Sampling runs in one process; under torchrun only with ``useSequenceParallelism``, whose
    ``numSequenceShards`` must divide the processes (each chain shared by a group of shards).

    Raises:
        ConfigError: several torchrun processes without sequence parallelism (every process
            would sample, and write, every chain), or shards that do not divide them.
    """
    launched = torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()
    world = int(os.environ.get("WORLD_SIZE", "1")) if launched else 1
    if not cfg.useSequenceParallelism:
        if world > 1:
            raise ConfigError(
                f"sampling under torchrun with {world} processes and useSequenceParallelism "
                "False: every process would sample every chain; start one process "
                "(python sample/...)"
            )
        return
    if world % cfg.numSequenceShards:
        raise ConfigError(
            f"numSequenceShards ({cfg.numSequenceShards}) does not divide the {world} torchrun "
            "process(es)"
        )


def sample(cfg: SampleConfig, *, force: bool = False, overwrite: bool = False) -> list[Path]:
    """Run a sampling config; returns the structure files written by this call (by this
    process, under torchrun: :mod:`genie.sampling.launch`).

    Args:
        force: sample even where the memory estimate of a batch exceeds the free memory.
        overwrite: sample again the planned samples whose files were made by another
            checkpoint or other settings, or have no provenance record (their files are
            replaced), instead of refusing.

    Raises:
        ConfigError: a bad key value, or a torchrun launch that cannot sample
            (:func:`check_launch`; checked before any work), a checkpoint whose model sequence
            shards cannot run (``useSequenceParallelism``), or, without ``overwrite``, files
            of planned samples made otherwise (checked before any sampling).
        NotADirectoryError, PermissionError, UserInputError: ``outputDirectory`` cannot be
            written (checked before the model is loaded).
    """
    if not cfg.checkpoint:
        raise ConfigError("checkpoint is empty: set it to a trained .ckpt file or a run folder")
    check_launch(cfg)
    device = resolve_device(cfg.device)
    jobs = plan_jobs(cfg)
    ensure_writable_dir(cfg.outputDirectory, what="outputDirectory")
    with sampling_launch(sequence_parallel=cfg.useSequenceParallelism,
                         shards=cfg.numSequenceShards, device=device) as launch:  # fmt: skip
        return _sample(cfg, jobs, launch, force=force, overwrite=overwrite)


def _sample(
    cfg: SampleConfig, jobs: list[SampleJob], launch: SamplingLaunch, *, force: bool,
    overwrite: bool,
) -> list[Path]:  # fmt: skip
    """:func:`sample` from the planned ``jobs`` on, in this process of ``launch``."""
    device, say = launch.device, print if launch.leader else (lambda *_: None)
    if launch.leader:
        for prefix in (f"{cfg.name}_L", MANIFEST):
            for path in remove_stale_temporaries(cfg.outputDirectory, prefix=prefix):
                log.info("removed %s, left by a run that was killed while writing it", path.name)
    trained = load_model(cfg, device, announce=launch.leader)
    if launch.sequence is None:
        mode = resolve_compile_mode(cfg.compileModel, device, auto="reduce-overhead")
    else:  # the sharded model (collectives inside) runs eagerly
        check_shardable_keys(trained.config, source=f"the checkpoint's model, {trained.path}")
        mode = "off"
    model = maybe_compile(trained.model, mode=mode)  # the module itself for mode off
    if mode != "off" and launch.leader:
        log.info("model calls run through torch.compile (mode %s)", mode)
    sampler = build_sampler(cfg, trained.schedule)
    steps = len(sampler.timesteps())
    settings = sampler_settings(cfg, trained, sampler)
    run = run_record(checkpoint_sha256=trained.weights_sha256, checkpoint_path=trained.path,
                     sampler=settings, device=device.type)  # fmt: skip
    # rank 0 decides what is left (and removes what --overwrite replaces); all sample that
    todo = launch.from_leader(
        jobs_to_sample(cfg.outputDirectory, jobs, run, overwrite=overwrite)
        if launch.leader else None
    )  # fmt: skip
    say(f"[genie] {len(jobs)} samples planned, {len(jobs) - len(todo)} already written")
    if not todo:
        return []
    todo.sort(key=lambda job: job.length)
    longest, chains = todo[-1].length, min(cfg.batchSize, len(todo))
    shards = 1 if launch.sequence is None else launch.sequence.size()
    needed = peak_bytes(model_sizes(trained.config), length=-(-longest // shards), batch=chains,
                        training=False)  # fmt: skip
    require_memory(needed, device=device, force=force,
                   what=f"sampling {chains} chain(s) of {longest:,} residues together"
                   + (f" on {shards} sequence shards" if shards > 1 else ""),
                   keys="sampleLengths or batchSize")  # fmt: skip
    batches = [todo[i : i + cfg.batchSize] for i in range(0, len(todo), cfg.batchSize)]
    mine = launch.share(batches)
    written: list[Path] = []
    diverged: list[SampleJob] = []
    start = time.perf_counter()
    bar = tqdm(total=len(mine) * steps, desc=f"sampling on {device}", unit="step",
               dynamic_ncols=True, disable=not launch.leader)  # fmt: skip
    taken = [0]  # reverse steps run (a late start takes fewer than planned)

    def step_done(_done: int) -> None:
        taken[0] += 1
        bar.update(1)

    with bar, logging_redirect_tqdm():  # warnings print above the bar, not through it
        for i, batch in enumerate(mine):
            keep = [_keeps_trajectory(cfg, job) for job in batch]
            options = dict(
                schedule=trained.schedule,
                parametrisation=trained.parametrisation,
                sampler=sampler,
                lengths=[j.length for j in batch],
                seeds=[j.seed for j in batch],
                device=device,
                recentre=cfg.recentre,
                start_share=cfg.startSignalShare,
                knn_update_frequency=cfg.knnUpdateFrequency,
                clear_cache_every=cfg.clearCacheEveryNSteps,
                trajectory_every=cfg.trajectoryEvery if any(keep) else 0,
                trajectory_chains=keep,
                on_step=step_done,
            )
            if launch.sequence is None:
                result = sample_chains(model, **options)
            else:
                result = sample_sharded(model, group=launch.sequence, **options)
            bar.update((i + 1) * steps - bar.n)  # the bar ends each batch where planned
            if not launch.writes:
                continue
            _write_batch(cfg, run, batch, result, written, diverged)
    elapsed = time.perf_counter() - start
    total_written, total_diverged = launch.total([len(written), len(diverged)])
    say(
        f"[genie] {describe_sampler(cfg, sampler)}: wrote {total_written} samples, "
        f"{total_diverged} diverged (not written) to {cfg.outputDirectory} in {elapsed:.1f} s "
        f"({60 * len(todo) / elapsed:.2f} samples/min, {taken[0] / elapsed:.1f} "
        "steps/s)"
    )
    return written


def _write_batch(cfg: SampleConfig, run: dict, batch: list[SampleJob], result: Samples,
                 written: list[Path], diverged: list[SampleJob]) -> None:  # fmt: skip
    """Record and write one batch's samples (diverged ones set aside); appends to ``written``
    and ``diverged``."""
    outcomes = list(zip(batch, result.coords, result.trajectories, strict=True))
    problems = [coordinate_problem(xyz, fmt=cfg.outputFormat) for _, xyz, _ in outcomes]
    record_samples(cfg.outputDirectory, {  # before the files: never a file without one
        job.stem.name: sample_record(run, seed=job.seed, length=job.length, index=job.index)
        for (job, _, _), why in zip(outcomes, problems, strict=True) if why is None
    })  # fmt: skip
    for (job, xyz, frames), why in zip(outcomes, problems, strict=True):
        frame_steps = result.frame_timesteps if frames else ()
        if why is not None:
            _set_aside(cfg, job, xyz, frames, frame_steps, why)
            diverged.append(job)
            continue
        files = write_sample(
            job.stem,
            xyz,
            fmt=cfg.outputFormat,
            fragment_length=cfg.fragmentLength if cfg.saveFragments else None,
            trajectory=frames,
            frame_timesteps=frame_steps,
        )
        written.append(files.structure)


def main(
    argv: Sequence[str] | None = None,
    *,
    description: str = "Sample backbones.",
    defaults: Mapping[str, str] | None = None,
) -> int:
    """The sampling command; ``defaults`` are config values used where the config sets none.

    Returns:
        0 on success (diverged samples included), 2 on a user mistake (one line on stderr), 1 on
        a bug (with its traceback), 130 on Ctrl-C: :mod:`genie.utils.cli`.
    """
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser, what="sampling")
    parser.add_argument(
        "--force",
        action="store_true",
        help="sample even where the memory estimate exceeds the free memory",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="sample again (replacing their files) the planned samples of outputDirectory made "
        "by another checkpoint or other settings, or without a provenance record",
    )
    args = parser.parse_args(argv)
    try:
        cfg, applied = load_with_defaults(SampleConfig, args.config, args.overrides, defaults)
        if applied:
            print("[genie] defaults applied: " + ", ".join(a.replace("=", " ", 1) for a in applied))
        sample(cfg, force=args.force, overwrite=args.overwrite)
    except BaseException as error:  # the error path of every entry point
        return exit_status(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
