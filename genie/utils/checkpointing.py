"""Activation recomputation: trade recomputation in backward for stored activations.

One mechanism, non-reentrant ``torch.utils.checkpoint``, at two levels:

* :func:`recompute` — inside a layer: pointwise-heavy regions (layer norms, projections, gates)
  store only their inputs for backward. Always on (unless :func:`recompute_disabled`).
* :class:`LayerCheckpointing` — whole layers of a stack (``useGradientCheckpointing``): a
  selected layer stores only its inputs and is recomputed in backward. The two nest (a
  checkpointed layer's inner :func:`recompute` regions are checkpoints inside a checkpoint).

API for stacks. The model builder (:mod:`genie.model.build`) makes one policy from the config and
gives the same object to every stack's constructor (``checkpointing=``; default: off). Per layer
a stack calls

    out = self.checkpointing.run(kind, index, n, layer, *args, **kwargs)

which returns ``layer(*args, **kwargs)``, computed under a checkpoint when the policy selects it:

* ``kind``: ``"pair"`` (every pair stack: dense, factorised, sparse) or ``"structure"``;
* ``index``: the layer application's position in its stack, in execution order, from 0 (unique
  per kind within one model; a stack applied twice numbers its second pass on);
* ``n``: residues of the batch (the padded length), for the adaptive strategy.

``run`` is a plain call whenever gradients are off (sampling, validation), so it costs nothing
at inference. The layer's outputs may be any objects holding tensors (dataclasses included).

Strategies (``checkpointingStrategy``):

* off (``useGradientCheckpointing False``): :class:`LayerCheckpointing` itself, never selects.
* uniform: layer applications with ``index % checkpointEveryNLayers == 0`` (N = 1: all).
* selective: every layer of the kinds in ``checkpointModules``.
* adaptive: per length bucket B (the smallest power of two ≥ n), the layers holding the most
  activation memory. The first gradient-enabled forward at B measures, for each layer not yet
  measured at B, the bytes its autograd graph saves for backward (:func:`saved_bytes`: distinct
  storages, excluding the layer's parameters and inputs, which stay alive either way), and
  checkpoints every such layer (memory-safe while measuring). From the first call of an
  already-measured layer on, the choice at B is fixed: layers sorted by bytes (largest first,
  ties in execution order), the shortest prefix whose bytes reach
  ``adaptiveCheckpointFraction`` of all layers' bytes. Layers first seen later are not
  checkpointed at B.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.checkpoint import checkpoint

KINDS = ("pair", "structure")
LayerKey = tuple[str, int]  # (kind, index)

_DISABLED = False


@contextlib.contextmanager
def recompute_disabled() -> Iterator[None]:
    """Store every activation instead (a reference for tests, and for profiling)."""
    global _DISABLED
    previous, _DISABLED = _DISABLED, True
    try:
        yield
    finally:
        _DISABLED = previous


def recompute(fn: Callable[..., Any], *args: Any, enabled: bool = True) -> Any:
    """Call ``fn(*args)``; under autograd store only its inputs and recompute it in backward.

    ``fn`` may also read tensors from its closure (non-reentrant checkpointing tracks them). RNG
    state is preserved, so dropout inside ``fn`` draws the same mask when recomputed.
    """
    if enabled and not _DISABLED and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


# --- layer-level checkpointing ----------------------------------------------------------------


class LayerCheckpointing:
    """No layer checkpointing (``useGradientCheckpointing False``); the base of the strategies,
    which override :meth:`_selects`."""

    def run(
        self, kind: str, index: int, n: int, layer: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """``layer(*args, **kwargs)``, under a non-reentrant checkpoint when selected.

        Args:
            kind: ``"pair"`` or ``"structure"``.
            index: the layer application's position in its stack (from 0).
            n: residues of the batch (padded length).
        """
        if kind not in KINDS:
            raise ValueError(
                f"layer checkpointing: unknown kind {kind!r} (allowed: pair, structure)"
            )
        if torch.is_grad_enabled() and self._selects(kind, index, n, layer, args, kwargs):
            return checkpoint(layer, *args, use_reentrant=False, **kwargs)
        return layer(*args, **kwargs)

    def _selects(self, kind: str, index: int, n: int, layer, args, kwargs) -> bool:
        return False


class UniformCheckpointing(LayerCheckpointing):
    """Every ``every``-th layer application of each stack: indices 0, every, 2·every, …"""

    def __init__(self, *, every: int):
        if every < 1:
            raise ValueError(f"checkpointEveryNLayers must be at least 1, got {every}")
        self.every = every

    def _selects(self, kind, index, n, layer, args, kwargs) -> bool:
        return index % self.every == 0


class SelectiveCheckpointing(LayerCheckpointing):
    """Every layer of the named kinds (a subset of ``pair``, ``structure``)."""

    def __init__(self, *, kinds: Sequence[str]):
        bad = sorted(set(kinds) - set(KINDS))
        if bad:
            raise ValueError(
                f"checkpointModules: unknown kind(s) {', '.join(bad)} (allowed: pair, structure)"
            )
        self.kinds = frozenset(kinds)

    def _selects(self, kind, index, n, layer, args, kwargs) -> bool:
        return kind in self.kinds


class AdaptiveCheckpointing(LayerCheckpointing):
    """The layers with the most saved activation bytes at the current length bucket, until they
    cover ``fraction`` of all layers' bytes (the rule is in the module docstring)."""

    def __init__(self, *, fraction: float):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"adaptiveCheckpointFraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self._measured: dict[int, dict[LayerKey, int]] = {}  # bucket -> layer -> bytes
        self._chosen: dict[int, frozenset[LayerKey]] = {}  # bucket -> checkpointed layers

    def measured(self, n: int) -> dict[LayerKey, int]:
        """Saved bytes per layer measured at ``n``'s bucket (empty before the first step)."""
        return dict(self._measured.get(length_bucket(n), {}))

    def chosen(self, n: int) -> frozenset[LayerKey] | None:
        """The layers checkpointed at ``n``'s bucket; None while still measuring."""
        return self._chosen.get(length_bucket(n))

    def _selects(self, kind, index, n, layer, args, kwargs) -> bool:
        if self.fraction == 0.0:
            return False
        bucket, key = length_bucket(n), (kind, index)
        chosen = self._chosen.get(bucket)
        if chosen is None:
            sizes = self._measured.setdefault(bucket, {})
            if key not in sizes:
                sizes[key] = saved_bytes(layer, *args, **kwargs)
                return True
            chosen = self._chosen[bucket] = largest_covering(sizes, self.fraction)
        return key in chosen


def length_bucket(n: int) -> int:
    """The smallest power of two ≥ ``n`` (n ≥ 1)."""
    if n < 1:
        raise ValueError(f"length_bucket: n must be at least 1, got {n}")
    return 1 << (n - 1).bit_length()


def largest_covering(sizes: Mapping[LayerKey, int], fraction: float) -> frozenset[LayerKey]:
    """The shortest run of layers, largest ``sizes`` first (ties in the mapping's order), whose
    sizes sum to at least ``fraction`` of the total (nothing for fraction 0 or a zero total)."""
    target = fraction * sum(sizes.values())
    order = sorted(sizes, key=lambda key: -sizes[key])  # stable: ties keep execution order
    chosen: list[LayerKey] = []
    covered = 0
    for key in order:
        if covered >= target:
            break
        chosen.append(key)
        covered += sizes[key]
    return frozenset(chosen) if target > 0 else frozenset()


@torch.compiler.disable
def saved_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Bytes that ``fn(*args, **kwargs)`` saves for backward, by a dry forward.

    Runs eagerly under ``torch.compile`` (storage pointers and saved-tensor hooks are not
    traceable): a compiled step that still measures a length bucket breaks its graph here, once
    per bucket, and the later steps of that bucket compile whole.

    Counts each distinct storage once (its full size), excluding the storages of the inputs
    (tensors anywhere in args/kwargs, dataclasses included) and of ``fn``'s parameters when it is
    an ``nn.Module``: those stay alive with or without checkpointing. Each saved tensor is
    dropped as soon as it is counted, so the dry forward needs no more memory than a no-grad one;
    its outputs are discarded (no backward) and the RNG state is restored afterwards.
    """
    tensors = list(_tensors((args, kwargs)))
    if isinstance(fn, nn.Module):
        tensors += list(fn.parameters())
    excluded = {t.untyped_storage().data_ptr() for t in tensors}
    seen: dict[int, StorageWeakRef] = {}  # data_ptr -> the live storage counted there
    total = 0

    def pack(t: torch.Tensor) -> None:
        nonlocal total
        storage = t.untyped_storage()
        ptr, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or ptr in excluded:
            return None
        known = seen.get(ptr)
        if known is None or known.expired():  # a freed storage's address may be reused
            seen[ptr] = StorageWeakRef(storage)
            total += size
        return None

    def unpack(_: None) -> torch.Tensor:
        raise RuntimeError("saved_bytes: a dry forward has no backward")

    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            fn(*args, **kwargs)
    return total


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested tuples, lists, dicts and dataclass instances."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, field.name))
