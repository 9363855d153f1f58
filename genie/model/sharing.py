"""Cross-layer parameter sharing (``useModelCompression``): fewer distinct weights per stack.

A stack of ``n_layers`` layer positions is built from fewer unique layers:

* ``none``: one layer per position (a plain ``nn.ModuleList``, state_dict keys unchanged);
* ``universal``: every position uses one layer;
* ``adjacent``: consecutive groups of ``ratio`` positions share a layer (the last group may be
  shorter): positions ``0..ratio-1`` use unique layer 0, the next ``ratio`` unique layer 1, …

``segments`` splits a stack into runs of positions whose layers differ in structure (e.g.
factorised pair layers with and without triangle operations); positions of different segments
never share, and grouping restarts at each segment.

Shared layers are stored once: :class:`SharedLayers` holds a ``ModuleList`` of the unique layers
and a tuple mapping positions to them, so each shared weight appears under one state_dict key,
and ``parameters()`` yields it once. Gradients of a shared weight accumulate over its uses.

The model builder (:mod:`genie.model.build`) makes one :class:`LayerSharing` from the config and
builds every stack's layers with it: ``sharing.layers(make_layer, n_layers)``, where
``make_layer(i)`` builds the layer of position ``i`` (the first position of its group), or
``sharing.triangle_layers(make_layer, ...)`` for pair stacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

from torch import nn

STRATEGIES = ("none", "adjacent", "universal")


def sharing_groups(
    n_layers: int, *, strategy: str, ratio: int = 1, segments: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The unique-layer index of every position, ``[n_layers]`` (unique layers numbered in
    order of first use).

    Args:
        n_layers: layer positions in the stack (≥ 0).
        strategy: ``none``, ``adjacent`` or ``universal``.
        ratio: ``adjacent``: positions per group (≥ 1).
        segments: lengths of runs of positions that may share (default: one run); they must sum
            to ``n_layers``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"compressionStrategy: unknown {strategy!r} (allowed: {', '.join(STRATEGIES)})"
        )
    if ratio < 1:
        raise ValueError(f"compressionRatio must be at least 1, got {ratio}")
    segments = [n_layers] if segments is None else [s for s in segments if s > 0]
    if sum(segments) != n_layers or n_layers < 0:
        raise ValueError(f"sharing segments {list(segments)} do not sum to n_layers={n_layers}")
    group_size = {"none": 1, "adjacent": ratio, "universal": max(n_layers, 1)}[strategy]
    groups: list[int] = []
    for length in segments:
        first = len(set(groups))
        groups += [first + i // group_size for i in range(length)]
    return tuple(groups)


class SharedLayers(nn.Module):
    """``len(positions)`` layer positions over the unique layers ``unique[positions[i]]``;
    iterates, indexes and measures like a ``ModuleList`` of all positions."""

    def __init__(self, *, unique: Sequence[nn.Module], positions: Sequence[int]):
        super().__init__()
        if sorted(set(positions)) != list(range(len(unique))):
            raise ValueError(
                f"SharedLayers: positions {tuple(positions)} must use each of the "
                f"{len(unique)} unique layers"
            )
        self.unique = nn.ModuleList(unique)
        self.positions = tuple(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[nn.Module]:
        return (self.unique[p] for p in self.positions)

    def __getitem__(self, index: int) -> nn.Module:
        return self.unique[self.positions[index]]

    def extra_repr(self) -> str:
        return f"positions={self.positions}"


def shared_layers(
    make_layer: Callable[[int], nn.Module],
    n_layers: int,
    *,
    strategy: str,
    ratio: int = 1,
    segments: Sequence[int] | None = None,
) -> nn.ModuleList | SharedLayers:
    """``n_layers`` layer positions, built by ``make_layer(first position of the group)``.

    Returns a plain ``nn.ModuleList`` when no two positions share (strategy ``none``, ratio 1,
    at most one layer per segment), else :class:`SharedLayers`. See :func:`sharing_groups`.
    """
    groups = sharing_groups(n_layers, strategy=strategy, ratio=ratio, segments=segments)
    if len(set(groups)) == n_layers:
        return nn.ModuleList(make_layer(i) for i in range(n_layers))
    unique = [make_layer(groups.index(g)) for g in range(len(set(groups)))]
    return SharedLayers(unique=unique, positions=groups)


@dataclasses.dataclass(frozen=True)
class LayerSharing:
    """How a stack shares layer weights: ``strategy`` (none, adjacent, universal) and, for
    adjacent, ``ratio`` positions per group."""

    strategy: str = "none"
    ratio: int = 1

    def __post_init__(self) -> None:
        sharing_groups(0, strategy=self.strategy, ratio=self.ratio)  # validates both

    def layers(
        self,
        make_layer: Callable[[int], nn.Module],
        n_layers: int,
        *,
        segments: Sequence[int] | None = None,
    ) -> nn.ModuleList | SharedLayers:
        """:func:`shared_layers` with this strategy."""
        return shared_layers(
            make_layer, n_layers, strategy=self.strategy, ratio=self.ratio, segments=segments
        )

    def triangle_layers(
        self,
        make_layer: Callable[[bool], nn.Module],
        *,
        n_layers: int,
        n_triangle_layers: int,
    ) -> nn.ModuleList | SharedLayers:
        """A pair stack's layers: ``make_layer(True)`` builds each of the first
        ``n_triangle_layers`` (≤ ``n_layers``; the layers with triangle operations),
        ``make_layer(False)`` the rest; weights are shared within each of the two segments only,
        since their layers differ."""
        if not 0 <= n_triangle_layers <= n_layers:
            raise ValueError(
                f"n_triangle_layers = {n_triangle_layers} must be in [0, n_layers = {n_layers}]"
            )
        return self.layers(
            lambda i: make_layer(i < n_triangle_layers),
            n_layers,
            segments=(n_triangle_layers, n_layers - n_triangle_layers),
        )


NO_SHARING = LayerSharing()
