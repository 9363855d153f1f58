"""An estimate of the peak memory of one step, from the model's sizes and the chain length, made
before anything is allocated, and the refusal when the device cannot hold it.

Notation: b chains, n residues, k neighbours, c_p pair channels, c_s single channels, r factor
rank, c_f factor channels, L_p pair layers, L_s structure layers, h IPA heads.

The estimate counts, in fp32 bytes (4 per element; mixed precision only lowers the truth):

| part | training step | no-grad forward (sampling) |
|---|---|---|
| weights | 16 · parameters (weights, gradients, two AdamW moments) | 4 · parameters |
| dense pairs, per (i, j) | 4 · c_p · (14 · L_p + 4) | 4 · 11 · max(c_p, c_hidden_mul) |
| dense IPA logits, per (query, key) | 12 · h · L_s (stored unless chunked) | 12 · h |
| factor pairs, per residue | 4 · r · c_f · (8 · L_p + 4 + 42 · L_t) | 4 · 12 · r · c_f |
| sparse edges, per residue | 4 · k · c_p · (8 · L_p + 4) | 4 · 8 · k · c_p |
| sparse edge-list chunk (m = min(n, sparseChunkSize)) | 16 · m · k² · c | 8 · m · k² · c |
| structure stack, per residue | 4 · (20 · s + 10) · c_s · L_s | 4 · 10 · s · c_s |

with L_t the pair layers that carry triangle operations, s the mHC streams (1 without mHC) and
c = max(c_p, c_hidden_mul).

The per-element counts are the stored tensors per layer that the H100 tables of
``docs/BENCHMARKS.md`` imply (the baseline at 128-1,280 residues; stages 1, 2, 3, 3 V2, 4 and
mHC + FlashIPA at 256-65,536). ``tests/model/test_memory.py`` checks the estimate against every
peak measured there: 0.75-1.4× of it from 1,024 residues on, at least 0.5× below (where a
fixed workspace the estimate leaves out dominates). With ``ipaChunkSize`` the IPA term counts one
chunk of queries.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from genie.config import ConfigError

FP32 = 4
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class ModelSizes:
    """What the estimate needs of a model (:func:`genie.model.build.model_sizes` reads it from a
    config); ``representation`` is ``dense``, ``factor`` or ``sparse``."""

    representation: str
    parameters: int
    c_s: int
    c_p: int
    c_hidden_mul: int
    pair_layers: int
    structure_layers: int
    triangle_layers: int  # pair layers with triangle operations
    structure_layers: int  # layer applications (depth × blocks)
    streams: int  # mHC residual streams (1 without mHC)
    ipa_heads: int
    ipa_chunk: int | None  # dense IPA query chunk (None: all queries at once)
    dense_ipa: bool  # dense IPA (logits n × n per head) rather than FlashIPA
    rank: int
    c_f: int
    k: int
    sparse_chunk: int  # residues per chunk of the sparse edge-list operations


def peak_bytes(sizes: ModelSizes, *, length: int, batch: int, training: bool) -> int:
    """The estimated peak memory of one step on ``batch`` chains of ``length`` residues."""
    n, b, s = length, batch, sizes
    total = (16 if training else 4) * s.parameters
    if training:
        per_residue = FP32 * (20 * s.streams + 10) * s.c_s * s.structure_layers
    else:
        per_residue = FP32 * 10 * s.streams * s.c_s
    c = max(s.c_p, s.c_hidden_mul)
    if s.representation == "dense":
        per_pair = FP32 * s.c_p * (14 * s.pair_layers + 4) if training else FP32 * 11 * c
        total += b * n * n * per_pair
    elif s.representation == "factor":
        factors = s.rank * s.c_f
        per_residue += (
            FP32 * factors * ((8 * s.pair_layers + 4 + 42 * s.triangle_layers) if training else 12)
        )
    else:
        per_residue += FP32 * s.k * s.c_p * ((8 * s.pair_layers + 4) if training else 8)
        total += b * (16 if training else 8) * min(n, s.sparse_chunk) * s.k**2 * c
    total += b * n * per_residue
    if s.dense_ipa:
        queries = n if s.ipa_chunk is None else min(n, s.ipa_chunk)
        stored = s.structure_layers if training and s.ipa_chunk is None else 1
        total += b * 3 * FP32 * s.ipa_heads * queries * n * stored
    return int(total)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the CUDA device's free memory, or the host's available RAM
    (``MemAvailable`` of /proc/meminfo; total physical memory elsewhere)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def require_memory(
    needed: int, *, device: torch.device, what: str, keys: str, force: bool = False
) -> None:
    """Refuse (ConfigError) a step whose estimate exceeds the device's free memory.

    Args:
        needed: estimated bytes (:func:`peak_bytes`).
        what: the step, e.g. ``a training step of 4 chains of 1,024 residues``.
        keys: the config keys that would lower it, named in the message.
        force: never refuse (``--force``).
    """
    if force:
        return
    free = available_bytes(device)
    if needed > free:
        where = "GPU" if device.type == "cuda" else "RAM"
        raise ConfigError(
            f"{what} needs about {needed / GIB:,.1f} GiB, but {free / GIB:,.1f} GiB of {where} "
            f"is free: lower {keys}, or give --force to try anyway"
        )
