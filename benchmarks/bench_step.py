"""Peak memory and speed of one training step and one denoising step, per chain length.

Usage::

    python benchmarks/bench_step.py --config configs/train_baseline.config \
        --lengths 128,256,512 [--set key=value ...] [--modes train,sample] [--batch-size 1] \
        [--warmup 3] [--repeat 10] [--device cuda] [--data FILE.npz] [--out results.json] \
        [--timeout-per-length S]

Every (length, mode) pair runs in a fresh child process of this script, so an out-of-memory error
or a fragmented allocator at one length cannot change the figures of the next. The child prints
one ``BENCH_RESULT {json}`` line; the parent collects it, or, when the child dies or runs past its
time limit, records the reason as an ``error: ...`` row. The parent rewrites the output JSON after
every row, so a run that is cut off keeps what it measured.

Measured, per mode:

- ``train``: one full optimisation step: ``zero_grad(set_to_none=True)``, ``compute_loss`` under
  the config's autocast (bf16, or fp16 with a ``GradScaler``), backward, gradient-norm clipping
  when ``gradientClipVal > 0``, optimiser step.
- ``sample``: one denoiser forward pass ``module.model(coords, t, mask)`` under ``no_grad`` (and the
  same autocast) at a random timestep.

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (reset after warm-up), in
GiB (2**30 bytes); time is the median wall-clock of ``repeat`` steps after ``warmup`` steps with a
device synchronisation around each; samples/s = batch size / median. On CPU memory is ``null``.

Exit status: 0 when every row is ``ok`` or ``OOM``, 1 when any row is an error (the JSON is
written either way), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
CA_CA_DISTANCE = 3.8  # Å, consecutive Cα-Cα distance of a trans peptide
NUM_TIMESTEPS = 1000  # Genie's T, used when the config has no numTimesteps
GIB = 2**30
MODES = ("train", "sample")

# Cα-trace internal coordinates (virtual bond angle at residue i, virtual dihedral), in degrees.
_HELIX = (91.0, 50.0)
_STRAND = (120.0, -170.0)


# ---------------------------------------------------------------------------------------------
# Input chains
# ---------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    """Return ``v`` scaled to unit length."""
    return v / np.linalg.norm(v)


def _place_next(a: np.ndarray, b: np.ndarray, c: np.ndarray, angle: float, dihedral: float):
    """Place the atom after ``a, b, c`` (NeRF).

    Args:
        a, b, c: [3] the three previous positions (Å).
        angle: angle b-c-d in radians.
        dihedral: dihedral a-b-c-d in radians.

    Returns:
        [3] the new position d with |d - c| = 3.8 Å.
    """
    bc = _unit(c - b)
    n = _unit(np.cross(b - a, bc))
    m = np.cross(n, bc)
    r = CA_CA_DISTANCE
    return (
        c
        - r * math.cos(angle) * bc
        + r * math.sin(angle) * math.cos(dihedral) * m
        + r * math.sin(angle) * math.sin(dihedral) * n
    )


def _internal_coordinates(length: int, rng: np.random.Generator) -> np.ndarray:
    """Draw protein-like (bond angle, dihedral) pairs, in radians, for a Cα trace.

    The trace alternates helices (6-18 residues), strands (4-10) and coils (3-8) with a few degrees
    of noise; coil angles are drawn from 85-135°, so residues i and i+2 stay ≥ 5.1 Å apart.

    Returns:
        [length, 2] angles; row i places residue i (rows 0-2 are unused).
    """
    angles = np.empty((length, 2))
    i = 0
    while i < length:
        kind = rng.choice(3, p=[0.4, 0.25, 0.35])
        if kind == 0:
            span, ideal = int(rng.integers(6, 19)), _HELIX
        elif kind == 1:
            span, ideal = int(rng.integers(4, 11)), _STRAND
        else:
            span, ideal = int(rng.integers(3, 9)), None
        span = min(span, length - i)
        if ideal is None:
            angles[i : i + span, 0] = rng.uniform(85.0, 135.0, span)
            angles[i : i + span, 1] = rng.uniform(-180.0, 180.0, span)
        else:
            angles[i : i + span] = np.asarray(ideal) + rng.normal(0.0, 4.0, (span, 2))
        i += span
    angles[:, 0] = np.clip(angles[:, 0], 85.0, 135.0)
    return np.deg2rad(angles)


def synthetic_trace(length: int, seed: int = 0) -> np.ndarray:
    """Build a seeded, centred, protein-like Cα trace with 3.8 Å steps.

    Helix, strand and coil segments are grown residue by residue from internal coordinates (an
    O(L) loop, run once per benchmark process).

    Args:
        length: number of residues L (≥ 1).
        seed: seed of the generator; the same seed gives the same trace.

    Returns:
        [L, 3] float32 coordinates in Å with zero mean.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    ic = _internal_coordinates(length, rng)  # [L, 2]
    x = np.zeros((length, 3))
    if length > 1:
        x[1] = (CA_CA_DISTANCE, 0.0, 0.0)
    if length > 2:
        theta = ic[2, 0]
        x[2] = x[1] + CA_CA_DISTANCE * np.array([-math.cos(theta), math.sin(theta), 0.0])
    for i in range(3, length):
        x[i] = _place_next(x[i - 3], x[i - 2], x[i - 1], ic[i, 0], ic[i, 1])
    x -= x.mean(axis=0)
    return x.astype(np.float32)


def _rotation_between(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Return the proper rotation [3, 3] that turns unit vector ``v`` into unit vector ``u``."""
    w = np.cross(v, u)
    s, c = np.linalg.norm(w), float(np.dot(v, u))
    if s < 1e-8:
        if c > 0:
            return np.eye(3)
        # Half turn about any axis perpendicular to v.
        helper = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        a = _unit(np.cross(v, helper))
        return 2.0 * np.outer(a, a) - np.eye(3)
    k = w / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    """Return a uniformly random unit vector [3]."""
    return _unit(rng.normal(size=3))


def join_chains(pieces: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Concatenate Cα traces into one, with a 3.8 Å artificial join between neighbours.

    Each next piece is moved rigidly so that it starts 3.8 Å beyond the end of the trace so far, in
    the direction pointing away from that trace's centroid, and is turned to grow in that direction
    (its first residue → its centroid), which keeps the pieces from piling onto each other.

    Args:
        pieces: traces [n_i, 3] in Å.
        rng: generator for the directions left undefined by one-residue traces.

    Returns:
        [sum n_i, 3] float64 trace; internal geometry of every piece is unchanged.
    """
    out = [np.asarray(pieces[0], dtype=np.float64)]
    total = out[0].sum(axis=0)
    count = len(out[0])
    for piece in pieces[1:]:
        piece = np.asarray(piece, dtype=np.float64)
        last = out[-1][-1]
        outward = last - total / count
        u = _unit(outward) if np.linalg.norm(outward) > 1e-6 else _random_unit(rng)
        along = piece.mean(axis=0) - piece[0]
        v = _unit(along) if np.linalg.norm(along) > 1e-6 else _random_unit(rng)
        rot = _rotation_between(v, u)
        moved = (piece - piece[0]) @ rot.T + last + CA_CA_DISTANCE * u
        out.append(moved)
        total = total + moved.sum(axis=0)
        count += len(moved)
    return np.concatenate(out, axis=0)


def load_chains(path: str | Path) -> list[np.ndarray]:
    """Read a processed dataset npz (``coords`` [N, 3] float32, ``offsets`` [S + 1] int64).

    Returns:
        The S chains, chain s being ``coords[offsets[s]:offsets[s + 1]]`` ([n_s, 3], Å).
    """
    with np.load(path) as data:
        coords = np.asarray(data["coords"], dtype=np.float32)
        offsets = np.asarray(data["offsets"], dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"{path}: coords must be [N, 3], got {list(coords.shape)}")
    if (
        offsets.ndim != 1
        or len(offsets) < 2
        or offsets[0] != 0
        or offsets[-1] != len(coords)
        or np.any(np.diff(offsets) <= 0)
    ):
        raise ValueError(f"{path}: offsets must rise strictly from 0 to len(coords)")
    return [coords[offsets[s] : offsets[s + 1]] for s in range(len(offsets) - 1)]


def crop_chain(
    chains: Sequence[np.ndarray], length: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Take a random length-L window of a real chain, joining chains when none is long enough.

    Args:
        chains: traces [n_s, 3] in Å.
        length: window length L.
        rng: seeded generator.

    Returns:
        The centred [L, 3] float32 window and the number of artificial joins inside it.
    """
    sizes = np.array([len(c) for c in chains])
    long_enough = np.flatnonzero(sizes >= length)
    if len(long_enough) > 0:
        chain = chains[int(rng.choice(long_enough))]
        start = int(rng.integers(0, len(chain) - length + 1))
        window, joins = np.asarray(chain[start : start + length], dtype=np.float64), 0
    else:
        picked: list[np.ndarray] = []
        while sum(len(p) for p in picked) < length:
            picked.append(chains[int(rng.integers(len(chains)))])
        boundaries = np.cumsum([len(p) for p in picked])[:-1]  # first index of each later piece
        joined = join_chains(picked, rng)
        start = int(rng.integers(0, len(joined) - length + 1))
        window = joined[start : start + length]
        joins = int(np.sum((boundaries > start) & (boundaries < start + length)))
    window = window - window.mean(axis=0)
    return window.astype(np.float32), joins


def make_batch(
    length: int,
    batch_size: int,
    seed: int = 0,
    data: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Build a benchmark batch of ``batch_size`` chains of exactly ``length`` residues.

    Args:
        length: residues per chain L.
        batch_size: chains b.
        seed: seed for the synthetic traces or for the choice of crops.
        data: processed dataset npz to crop real chains from; ``None`` for synthetic traces.

    Returns:
        The batch (``coords`` [b, L, 3] float32 Å, ``mask`` [b, L] float32, ``residue_index``
        [b, L] long, ``lengths`` [b] long) on the CPU, and the number of artificial joins in it.
    """
    if data is None:
        traces = [synthetic_trace(length, seed + i) for i in range(batch_size)]
        joins = 0
    else:
        chains = load_chains(data)
        rng = np.random.default_rng(seed)
        crops = [crop_chain(chains, length, rng) for _ in range(batch_size)]
        traces, joins = [c for c, _ in crops], sum(j for _, j in crops)
    coords = torch.from_numpy(np.stack(traces))  # [b, L, 3]
    batch = {
        "coords": coords,
        "mask": torch.ones(batch_size, length, dtype=torch.float32),
        "residue_index": torch.arange(length).expand(batch_size, length).clone(),
        "lengths": torch.full((batch_size,), length, dtype=torch.long),
    }
    return batch, joins


# ---------------------------------------------------------------------------------------------
# Child: one (length, mode) measurement
# ---------------------------------------------------------------------------------------------


def autocast_dtype(use_mixed_precision: bool, precision: str) -> torch.dtype | None:
    """Map the config's precision keys to an autocast dtype (``None``: full fp32)."""
    if not use_mixed_precision:
        return None
    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


def is_oom(error: BaseException) -> bool:
    """Whether an exception means the device ran out of memory."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text.lower() or "ALLOC_FAILED" in text
    )


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step: Callable[[], Any], device: torch.device, warmup: int, repeat: int
) -> tuple[list[float], float | None]:
    """Run ``step`` ``warmup`` times, then time it ``repeat`` times.

    Returns:
        The wall-clock seconds of each timed step and the peak allocated memory over the timed
        steps in GiB (``None`` off CUDA).
    """
    for _ in range(warmup):
        step()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeat):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return times, peak


def _optimizer_from(configured: Any) -> torch.optim.Optimizer:
    """Pick the optimiser out of what ``configure_optimizers`` returned."""
    if isinstance(configured, dict):
        return configured["optimizer"]
    if isinstance(configured, (list, tuple)):
        return _optimizer_from(configured[0])
    return configured


def _attach_trainer(module: Any, max_steps: int) -> None:
    """Give a LightningModule a bare Trainer, so that ``configure_optimizers`` may read it.

    Lightning modules commonly size their schedules with the Trainer's
    ``estimated_stepping_batches``; with ``max_epochs=-1`` that is ``max_steps``. Nothing else of
    the Trainer is used: the harness runs the steps itself. A module that is not a
    LightningModule (lightning is then not even imported) is left alone.
    """
    pl = sys.modules.get("pytorch_lightning")
    if pl is None or not isinstance(module, pl.LightningModule):
        return
    module.trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _train_step(module: Any, batch: dict, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one full optimisation step, and a holder of its last loss."""
    optimizer = _optimizer_from(module.configure_optimizers())
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    clip = float(module.config.gradientClipVal)
    last_loss: list[torch.Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module.compute_loss(batch)
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
        last_loss[:] = [loss.detach()]

    return step, last_loss


def _sample_step(module: Any, batch: dict, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one denoiser forward pass at a random timestep t in 1..T."""
    b = batch["coords"].shape[0]
    num_timesteps = getattr(module.config, "numTimesteps", NUM_TIMESTEPS)
    timesteps = torch.randint(1, num_timesteps + 1, (b,), device=device)  # [b]

    def step() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            module.model(batch["coords"], timesteps, batch["mask"])

    return step


def _jsonable(value: Any) -> Any:
    """Turn a resolved-config value into something ``json.dumps`` accepts."""
    return json.loads(json.dumps(value, default=str))


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (length, mode) pair; the body of a child process.

    Args:
        spec: ``config``, ``overrides``, ``length``, ``mode``, ``batch_size``, ``warmup``,
            ``repeat``, ``device``, ``data``, ``seed``.

    Returns:
        The result row, plus the device name, resolved config and parameter count.
    """
    from genie.config import load_config
    from genie.training.module import GenieModule
    from genie.utils.runtime import apply_runtime_settings

    length, mode, batch_size = spec["length"], spec["mode"], spec["batch_size"]
    row: dict[str, Any] = {
        "length": length,
        "mode": mode,
        "status": "ok",
        "peak_mem_gib": None,
        "median_s": None,
        "samples_per_s": None,
        "times_s": [],
    }
    device = torch.device(spec["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    row["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.manual_seed(spec["seed"])

    overrides = list(spec["overrides"])
    cfg = load_config(spec["config"], overrides)
    row["resolved_config"] = _jsonable(dataclasses.asdict(cfg))
    max_res = getattr(cfg, "maximumNumResidues", None)
    if isinstance(max_res, int) and max_res < length:
        # The benchmark asks for longer chains than the config crops to; raise the limit for this
        # measurement only and say so in the row.
        row["overrides_added"] = [f"maximumNumResidues={length}"]
        cfg = load_config(spec["config"], [*overrides, *row["overrides_added"]])

    apply_runtime_settings(matmul_precision=cfg.matmulPrecision)
    module = GenieModule(config=cfg).to(device)
    row["parameters"] = sum(p.numel() for p in module.parameters())
    # A config without the precision keys trains in fp32.
    dtype = autocast_dtype(
        getattr(cfg, "useMixedPrecision", False), getattr(cfg, "precision", "32")
    )
    row["autocast"] = None if dtype is None else str(dtype).removeprefix("torch.")

    batch, joins = make_batch(length, batch_size, spec["seed"], spec["data"])
    batch = {k: v.to(device) for k, v in batch.items()}
    row["joins"] = joins

    try:
        if mode == "train":
            module.train()
            _attach_trainer(module, spec["warmup"] + spec["repeat"])
            step, last_loss = _train_step(module, batch, dtype, device)
        else:
            module.eval()
            step, last_loss = _sample_step(module, batch, dtype, device), []
        times, peak = time_steps(step, device, spec["warmup"], spec["repeat"])
    except Exception as error:
        if not is_oom(error):
            raise
        row["status"] = "OOM"
        return row
    median = statistics.median(times)
    row.update(
        peak_mem_gib=peak,
        median_s=median,
        samples_per_s=batch_size / median,
        times_s=times,
    )
    if device.type == "cuda":
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    if last_loss:
        row["loss"] = float(last_loss[0].float())
    return row


def child_main(spec_json: str) -> int:
    """Run one measurement and print its row as one ``BENCH_RESULT`` line."""
    spec = json.loads(spec_json)
    try:
        row = measure(spec)
    except Exception as error:
        traceback.print_exc()
        message = " ".join(f"{type(error).__name__}: {error}".split())
        status = "OOM" if is_oom(error) else f"error: {message[:300]}"
        row = {"length": spec["length"], "mode": spec["mode"], "status": status}
    print(RESULT_PREFIX + json.dumps(row), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent: one child per (length, mode), the JSON document, the table
# ---------------------------------------------------------------------------------------------


def _tail(text: str, lines: int) -> str:
    """Last ``lines`` non-empty lines of ``text``."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_child(
    command: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a child process and return the row it printed, or an error row saying why not.

    Args:
        command: the child's argv.
        timeout: seconds before the child is killed.
        env: environment of the child (default: inherited).

    Returns:
        The child's ``BENCH_RESULT`` row, or ``{"status": "error: ...", "stderr_tail": ...}``.
    """
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return {"status": f"error: timed out after {timeout:g} s", "stderr_tail": _tail(stderr, 20)}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            row = json.loads(line[len(RESULT_PREFIX) :])
            if row.get("status", "").startswith("error"):
                row["stderr_tail"] = _tail(proc.stderr, 20)
            return row
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        why = f"child killed by {name}" + (" (host out of memory?)" if name == "SIGKILL" else "")
    else:
        last = _tail(proc.stderr, 1) or "no output"
        why = f"child exited with code {proc.returncode} without a result: {last}"
    return {"status": f"error: {why[:300]}", "stderr_tail": _tail(proc.stderr, 20)}


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    """Run git in the repository root; ``None`` when git itself is missing."""
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_info() -> tuple[str, bool | None]:
    """The short commit and whether the tree is dirty.

    Returns:
        (commit, dirty): commit is ``"uncommitted"`` in a repository without commits and
        ``"unknown"`` outside one (dirty is then ``None``).
    """
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0:
        return "unknown", None
    head = _git("rev-parse", "--short", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else "uncommitted"
    status = _git("status", "--porcelain")
    dirty = None if status is None or status.returncode != 0 else bool(status.stdout.strip())
    return commit, dirty


def _child_env() -> dict[str, str]:
    """The parent's environment with the repository root on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _fmt(value: float | None, spec: str) -> str:
    """Format a number for the console table ('-' for none)."""
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width console table of result rows."""
    lines = [
        f"{'L':>6}  {'mode':<6}  {'status':<10}  {'peak GiB':>9}  {'median s':>9}  {'samples/s':>9}"
    ]
    for row in rows:
        status = row["status"] if len(row["status"]) <= 10 else "error"
        lines.append(
            f"{row['length']:>6}  {row['mode']:<6}  {status:<10}  "
            f"{_fmt(row.get('peak_mem_gib'), '.2f'):>9}  {_fmt(row.get('median_s'), '.4f'):>9}  "
            f"{_fmt(row.get('samples_per_s'), '.3g'):>9}"
        )
    errors = [r for r in rows if r["status"].startswith("error")]
    lines += [f"L={r['length']} {r['mode']}: {r['status']}" for r in errors]
    return "\n".join(lines)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the results document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


_ROW_KEYS = ("length", "mode", "status", "peak_mem_gib", "median_s", "samples_per_s", "times_s")
_RUN_KEYS = ("device", "resolved_config", "parameters")


def run_benchmark(args: argparse.Namespace, command_line: str) -> dict[str, Any]:
    """Measure every (length, mode) in its own child and write the results document.

    Returns:
        The results document (also written to ``args.out`` after every row).
    """
    commit, dirty = git_info()
    if args.git_commit:
        commit = args.git_commit
    document: dict[str, Any] = {
        "device": "cpu" if args.device == "cpu" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "config": args.config,
        "overrides": list(args.overrides),
        "resolved_config": None,
        "parameters": None,
        "command": command_line,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "data": args.data or "synthetic",
        "seed": args.seed,
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "results": [],
    }
    env = _child_env()
    for length in args.lengths:
        for mode in args.modes:
            spec = {
                "config": args.config,
                "overrides": list(args.overrides),
                "length": length,
                "mode": mode,
                "batch_size": args.batch_size,
                "warmup": args.warmup,
                "repeat": args.repeat,
                "device": args.device,
                "data": args.data,
                "seed": args.seed,
            }
            command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
            start = time.perf_counter()
            got = run_child(command, args.timeout_per_length, env)
            wall = time.perf_counter() - start
            for key in _RUN_KEYS:
                if document[key] is None and got.get(key) is not None:
                    document[key] = got[key]
            row = {key: got.get(key) for key in _ROW_KEYS}
            row.update(length=length, mode=mode, times_s=got.get("times_s") or [])
            row.update({k: v for k, v in got.items() if k not in _ROW_KEYS + _RUN_KEYS})
            row["wall_s"] = wall
            document["results"].append(row)
            _write_json(args.out, document)
            print(
                f"[bench] L={length} {mode}: {row['status']}  "
                f"peak={_fmt(row['peak_mem_gib'], '.2f')} GiB  "
                f"median={_fmt(row['median_s'], '.4f')} s  (child {wall:.1f} s)",
                flush=True,
            )
            if row["status"].startswith("error") and row.get("stderr_tail"):
                print(_tail(row["stderr_tail"], 6), flush=True)
    if document["device"] is None:
        available = torch.cuda.is_available()
        document["device"] = torch.cuda.get_device_name() if available else args.device
        _write_json(args.out, document)
    return document


def _positive_ints(text: str) -> list[int]:
    """Parse '128,256,512' into positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text}"
        ) from error
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"lengths must be positive integers: {text}")
    return values


def _modes(text: str) -> list[str]:
    """Parse 'train,sample' into a list of modes."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in MODES for v in values):
        raise argparse.ArgumentTypeError(f"modes must be a subset of {','.join(MODES)}: {text}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a .config file")
    parser.add_argument("--lengths", required=True, type=_positive_ints, help="e.g. 128,256,512")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as the CLI's --set (repeatable)",
    )
    parser.add_argument("--modes", type=_modes, default=list(MODES), help="train,sample")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeat", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    parser.add_argument("--data", help="processed dataset npz (coords, offsets) to crop from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, help="results JSON (default runs/bench/<config>-<time>.json)"
    )
    parser.add_argument(
        "--timeout-per-length",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds before a (length, mode) child is killed (default 300)",
    )
    parser.add_argument(
        "--git-commit",
        help="commit to record when running on a copy of the tree without .git",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("need --batch-size >= 1, --warmup >= 0 and --repeat >= 1")
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = REPO_ROOT / "runs" / "bench" / f"{Path(args.config).stem}-{stamp}.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the parent by default, a child with ``--child SPEC_JSON``."""
    script = sys.argv[0] if argv is None else os.path.relpath(__file__)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--child":
        return child_main(argv[1])
    args = parse_args(argv)
    command_line = "python " + shlex.join([script, *argv])
    document = run_benchmark(args, command_line)
    print()
    print(
        f"device: {document['device']}  torch {document['torch']}  cuda {document['cuda']}  "
        f"commit {document['git_commit']}{' (dirty)' if document['git_dirty'] else ''}"
    )
    print(f"config: {args.config} {' '.join(args.overrides)}  parameters: {document['parameters']}")
    print(format_table(document["results"]))
    print(f"results: {args.out}")
    failed = any(r["status"].startswith("error") for r in document["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
