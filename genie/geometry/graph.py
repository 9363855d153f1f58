"""The sparse pair graph: each residue's k neighbours as directed edges, and the edge lists that
the sparse pair operations iterate over (DESIGN §3, stages 3 V2 and 4).

Notation: b batch, n residues, k neighbours (edge slots per residue), L list length, c channels.

Edges are numbered per chain: edge ``e = i·k + s`` goes from residue i to ``index[i, s]``
(``src(e) = i``, ``dst(e) = index[i, s]``). Two kinds of edge lists, both ``[b, n, L]`` with −1 in
unused places:

- ``row`` lists: the out-edges of residue i, (i → j) for j ∈ N(i); L = k.
- ``column`` lists: the in-edges of residue j, (i → j) for all i with j ∈ N(i); L = the largest
  in-degree of the batch (data-dependent: a hub residue has more in-edges than k), rounded up to
  a multiple of 8.

For two edges of one list, the *third edge* closes the triangle, as in AF2's triangle updates
(Jumper et al. 2021, Alg. 11-14) restricted to the graph:

- row list of i, query (i → j), key (i → k): the third edge is (j → k);
- column list of j, query (i → j), key (k → j): the third edge is (k → i).

A third edge that is not in the graph is reported as missing (−1); the operations then use the
value the dense pair tensor masked to the graph would hold there (zero). Edge lookup goes through
one sorted table of edge keys (one ``searchsorted``), so memory is O(n·k) for the table and
O(queries) per lookup: nothing here is n×n.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genie.geometry.knn import gather_neighbors, knn_graph
from genie.geometry.random_edges import random_neighbors

COLUMN_WIDTH_MULTIPLE = 8  # column-list widths are rounded up to this (compiled shapes)


@dataclass(frozen=True, eq=False)
class KnnGraph:
    """A k-neighbour graph ``(index, valid, offsets)``, each ``[b, n, k]``, and its edge lookups.

    Build one with :meth:`from_neighbors` (or :func:`build_knn_graph`), which computes every
    derived table at once: a graph is a fixed set of tensors, nothing is computed on first use,
    so a compiled model reads it without graph breaks, and the one data-dependent size (the
    column-list width, the largest in-degree) is settled eagerly, outside the compiled region.

    Attributes:
        index: long, neighbour j of residue i in slot ``[:, i, s]``.
        valid: bool, real edges (invalid slots are ignored wherever they point).
        offsets: long residue-index separations ``r_j − r_i`` (sequence-separation features).
        row_lists: ``[b, n, k]`` out-edge ids of each residue (−1 at invalid slots).
        column_lists: ``[b, n, D]`` in-edge ids of each residue, D = the largest in-degree of
            the batch rounded up to a multiple of :data:`COLUMN_WIDTH_MULTIPLE` (−1 padded). The
            rounding bounds the distinct shapes a compiled model sees (D changes with the trace)
            at a cost of at most 7 empty slots per list.
        edge_keys, edge_ids: ``[b·n·k]`` sorted keys ``(batch·n + src)·n + dst`` of the valid
            edges (invalid slots sort last) and their edge ids within the chain.
    """

    index: torch.Tensor
    valid: torch.Tensor
    offsets: torch.Tensor
    row_lists: torch.Tensor
    column_lists: torch.Tensor
    edge_keys: torch.Tensor
    edge_ids: torch.Tensor

    @classmethod
    def from_neighbors(
        cls, index: torch.Tensor, valid: torch.Tensor, offsets: torch.Tensor
    ) -> KnnGraph:
        """The graph of neighbour slots ``index, valid, offsets [b, n, k]`` with its tables."""
        shapes = {tuple(t.shape) for t in (index, valid, offsets)}
        if len(shapes) != 1 or index.dim() != 3:
            raise ValueError(
                f"index {tuple(index.shape)}, valid {tuple(valid.shape)} and offsets "
                f"{tuple(offsets.shape)}: need three [b, n, k] tensors"
            )
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor, got {valid.dtype}")
        b, n, k = index.shape
        ids = torch.arange(n * k, device=index.device).view(1, n, k)
        row_lists = torch.where(valid, ids, -1)  # [b, n, k]
        edge_keys, edge_ids = _edge_table(index, valid)
        return cls(index, valid, offsets, row_lists, _column_lists(index, valid), edge_keys,
                   edge_ids)  # fmt: skip

    @property
    def b(self) -> int:
        return self.index.shape[0]

    @property
    def n(self) -> int:
        return self.index.shape[1]

    @property
    def k(self) -> int:
        return self.index.shape[2]

    @property
    def num_edges(self) -> int:
        """Edge slots per chain, n·k."""
        return self.n * self.k

    def src(self, edges: torch.Tensor) -> torch.Tensor:
        """Source residue of edge ids (any shape; −1 stays −1)."""
        return torch.where(edges >= 0, torch.div(edges, self.k, rounding_mode="floor"), -1)

    def dst(self, edges: torch.Tensor) -> torch.Tensor:
        """Target residue of edge ids ``[b, *]`` (−1 stays −1)."""
        flat = self.index.reshape(self.b, -1)  # [b, n·k]
        out = torch.gather(flat, 1, edges.clamp(min=0).reshape(self.b, -1)).view(edges.shape)
        return torch.where(edges >= 0, out, -1)

    def edge_id(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Edge id of (src → dst) per element of ``src, dst [b, *]``; −1 where there is no such
        edge (or where src or dst is −1)."""
        key = _edge_key(src.clamp(min=0), dst.clamp(min=0), self.n)
        pos = torch.searchsorted(self.edge_keys, key.reshape(-1))
        pos = pos.clamp(max=self.edge_keys.numel() - 1)
        found = (self.edge_keys[pos] == key.reshape(-1)).view(key.shape) & (src >= 0) & (dst >= 0)
        return torch.where(found, self.edge_ids[pos].view(key.shape), -1)

    def lists(self, axis: str) -> torch.Tensor:
        """``row`` or ``column`` edge lists ``[b, n, L]``."""
        if axis == "row":
            return self.row_lists
        if axis == "column":
            return self.column_lists
        raise ValueError(f"axis must be 'row' or 'column', got '{axis}'")

    def third_edges(self, axis: str, lists: torch.Tensor) -> torch.Tensor:
        """The edge closing each (query, key) pair of ``lists [b, c, L]`` (module doc):
        ``[b, c, L_query, L_key]`` edge ids, −1 where missing or where a slot is unused."""
        if axis == "row":  # query (i → j), key (i → k): (j → k)
            ends = self.dst(lists)
            return self.edge_id(ends[..., :, None], ends[..., None, :])
        if axis == "column":  # query (i → j), key (k → j): (k → i)
            starts = self.src(lists)
            return self.edge_id(starts[..., None, :], starts[..., :, None])
        raise ValueError(f"axis must be 'row' or 'column', got '{axis}'")


def _edge_key(src: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
    """``(batch·n + src)·n + dst`` of ``src, dst [b, *]`` (int64: b·n² < 2⁶³ for n < 2³⁰)."""
    batch = torch.arange(src.shape[0], device=src.device).view(-1, *([1] * (src.dim() - 1)))
    return (batch * n + src) * n + dst


def _edge_table(index: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys of the valid edges of ``index, valid [b, n, k]`` and their edge ids."""
    b, n, k = index.shape
    src = torch.arange(n, device=index.device)[None, :, None].expand_as(index)
    key = _edge_key(src, index, n)
    key = torch.where(valid, key, torch.iinfo(torch.int64).max).reshape(-1)
    sorted_key, perm = torch.sort(key)
    return sorted_key, perm % (n * k)  # ids within the chain


def _column_lists(index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[b, n, D]`` in-edge ids of each residue (−1 padded), D = the largest in-degree rounded
    up to a multiple of :data:`COLUMN_WIDTH_MULTIPLE` (one host synchronisation)."""
    b, n, k = index.shape
    device = index.device
    dst = torch.where(valid, index, n).reshape(b, -1)  # invalid: a spare row n
    order = torch.argsort(dst, dim=1, stable=True)  # [b, n·k] edges grouped by target
    dst_sorted = torch.gather(dst, 1, order)
    counts = torch.zeros(b, n + 1, dtype=torch.long, device=device)
    counts.scatter_add_(1, dst, torch.ones_like(dst))
    starts = torch.cumsum(counts, 1) - counts  # [b, n + 1] first sorted position per target
    rank = torch.arange(n * k, device=device)[None] - torch.gather(starts, 1, dst_sorted)
    degree = int(counts[:, :n].max()) if n else 0
    width = max(-(-degree // COLUMN_WIDTH_MULTIPLE), 1) * COLUMN_WIDTH_MULTIPLE
    lists = torch.full((b, n + 1, width), -1, dtype=torch.long, device=device)
    keep = dst_sorted < n
    batch = torch.arange(b, device=device)[:, None].expand_as(dst_sorted)
    lists[batch[keep], dst_sorted[keep], rank[keep]] = order[keep]
    return lists[:, :n]


def gather_edges(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Per-edge values at edge ids: ``values [b, n, k, *]``, ``edges [b, *s]`` (−1 allowed) ->
    ``[b, *s, *]`` (zero where the id is −1). Differentiable in ``values``.

    One ``index_select`` on the flattened edges (:class:`_SelectRows`): its backward is an
    atomic ``index_add`` (CUDA's advanced-indexing backward serialises on repeated indices, and
    every edge is read ~k times; docs/BENCHMARKS.md has the step time it cost before commit
    bb0b63a), accumulated in fp32."""
    b, n, k = values.shape[:3]
    rest = values.shape[3:]
    flat = values.reshape(b * n * k, *rest)  # [b·n·k, *]
    offset = torch.arange(b, device=edges.device).view(-1, *([1] * (edges.dim() - 1))) * (n * k)
    idx = (edges.clamp(min=0) + offset).reshape(-1)  # [b·q]
    out = _SelectRows.apply(flat, idx).view(*edges.shape, *rest)
    present = (edges >= 0).view(*edges.shape, *([1] * len(rest)))
    return out * present.to(out.dtype)


class _SelectRows(torch.autograd.Function):
    """``flat.index_select(0, idx)`` whose backward accumulates in fp32 when ``flat`` is bf16 or
    fp16 (else in its own dtype): CUDA's bf16/fp16 atomic adds were 70 % of a stage 3 V2
    training step's GPU time at L = 1,024 (docs/BENCHMARKS.md); fp32 ones are native (and the
    ~k gradients summed per edge lose no precision)."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.rows, ctx.dtype = flat.shape[0], flat.dtype
        return flat.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (idx,) = ctx.saved_tensors
        low = ctx.dtype in (torch.float16, torch.bfloat16)
        acc = grad.new_zeros(ctx.rows, *grad.shape[1:], dtype=torch.float32 if low else ctx.dtype)
        acc.index_add_(0, idx, grad.to(acc.dtype))
        return acc.to(ctx.dtype), None


def scatter_edges(values: torch.Tensor, edges: torch.Tensor, *, n: int, k: int) -> torch.Tensor:
    """Inverse of :func:`gather_edges` for lists in which every edge appears at most once:
    ``values [b, *s, *]`` at ``edges [b, *s]`` -> ``[b, n, k, *]`` (zero at edges not listed).

    Static shapes (no boolean indexing, so it compiles without graph breaks): unused places
    (−1) go to a spare slot n·k that is dropped. The accumulating scatter adds each listed value
    to a zero, so it is exact."""
    b = values.shape[0]
    rest = values.shape[edges.dim() :]
    flat_ids = edges.reshape(b, -1)
    flat_ids = torch.where(flat_ids >= 0, flat_ids, n * k)  # [b, q]
    flat_vals = values.reshape(b, flat_ids.shape[1], *rest)
    batch = torch.arange(b, device=values.device)[:, None].expand_as(flat_ids)
    out = values.new_zeros(b, n * k + 1, *rest)
    out = out.index_put((batch, flat_ids), flat_vals, accumulate=True)
    return out[:, : n * k].reshape(b, n, k, *rest)


def build_knn_graph(
    coords: torch.Tensor,
    mask: torch.Tensor,
    residue_index: torch.Tensor,
    *,
    k: int,
    strategy: str,
    chunk_size: int | None,
    random: int = 0,
    seeds: torch.Tensor | None = None,
) -> KnnGraph:
    """The ``strategy`` k-NN graph of a trace (:func:`~genie.geometry.knn.knn_graph`) with the
    residue-index offsets of its edges, and ``random`` random long-range neighbours per residue
    after the k (:func:`~genie.geometry.random_edges.random_neighbors`): k + random slots.

    Args:
        coords: ``[b, n, 3]`` Cα coordinates, Å.
        mask: ``[b, n]`` real residues (bool or 0/1).
        residue_index: ``[b, n]`` residue numbers.
        k: neighbours per residue; strategy: coordinate, sequence or hybrid; chunk_size: queries
            per block of the distance search.
        random: random neighbours per residue (0 = none).
        seeds: ``[b]`` int64 seeds of the random neighbours (needed when ``random`` > 0).
    """
    index, valid = knn_graph(coords, mask.bool(), k=k, strategy=strategy, chunk_size=chunk_size)
    if random:
        if seeds is None:
            raise ValueError("random neighbours need seeds: one int64 seed per chain")
        extra, extra_valid = random_neighbors(coords, mask, index, count=random, seeds=seeds,
                                              chunk_size=chunk_size)  # fmt: skip
        index, valid = torch.cat([index, extra], -1), torch.cat([valid, extra_valid], -1)
    offsets = gather_neighbors(residue_index, index) - residue_index[..., None]  # [b, n, k]
    return KnnGraph.from_neighbors(index, valid, offsets)
