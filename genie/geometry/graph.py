"""The sparse pair graph: each residue's k neighbours as directed edges, and the edge lists that
the sparse pair operations iterate over (DESIGN §3, stages 3 V2 and 4).

Notation: b batch, n residues, k neighbours (edge slots per residue), L list length, c channels.

Edges are numbered per chain: edge ``e = i·k + s`` goes from residue i to ``index[i, s]``
(``src(e) = i``, ``dst(e) = index[i, s]``). Two kinds of edge lists, both ``[b, n, L]`` with −1 in
unused places:

- ``row`` lists: the out-edges of residue i, (i → j) for j ∈ N(i); L = k.
- ``column`` lists: the in-edges of residue j, (i → j) for all i with j ∈ N(i); L = the largest
  in-degree of the batch (data-dependent: a hub residue has more in-edges than k).

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
from functools import cached_property

import torch

from genie.geometry.knn import gather_neighbors, knn_graph
from genie.geometry.random_edges import random_neighbors


@dataclass(frozen=True, eq=False)
class KnnGraph:
    """A k-neighbour graph ``(index, valid, offsets)``, each ``[b, n, k]``, and its edge lookups.

    Immutable and complete when built (:func:`build_knn_graph`); the derived edge tables and
    lists are computed on first use and cached.

    Attributes:
        index: long, neighbour j of residue i in slot ``[:, i, s]``.
        valid: bool, real edges (invalid slots are ignored wherever they point).
        offsets: long residue-index separations ``r_j − r_i`` (sequence-separation features).
    """

    index: torch.Tensor
    valid: torch.Tensor
    offsets: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.index, self.valid, self.offsets)}
        if len(shapes) != 1 or self.index.dim() != 3:
            raise ValueError(
                f"index {tuple(self.index.shape)}, valid {tuple(self.valid.shape)} and offsets "
                f"{tuple(self.offsets.shape)}: need three [b, n, k] tensors"
            )
        if self.valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor, got {self.valid.dtype}")

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

    def _key(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        batch = torch.arange(self.b, device=src.device).view(-1, *([1] * (src.dim() - 1)))
        return (batch * self.n + src) * self.n + dst  # int64: b·n² < 2⁶³ for n < 2³⁰

    @cached_property
    def _table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted keys of the valid edges and their edge ids (invalid slots sort last)."""
        src = torch.arange(self.n, device=self.index.device)[None, :, None].expand_as(self.index)
        key = self._key(src, self.index)
        key = torch.where(self.valid, key, torch.iinfo(torch.int64).max).reshape(-1)
        sorted_key, perm = torch.sort(key)
        return sorted_key, perm % self.num_edges  # ids within the chain

    def edge_id(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Edge id of (src → dst) per element of ``src, dst [b, *]``; −1 where there is no such
        edge (or where src or dst is −1)."""
        sorted_key, ids = self._table
        key = self._key(src.clamp(min=0), dst.clamp(min=0))
        pos = torch.searchsorted(sorted_key, key.reshape(-1)).clamp(max=sorted_key.numel() - 1)
        found = (sorted_key[pos] == key.reshape(-1)).view(key.shape) & (src >= 0) & (dst >= 0)
        return torch.where(found, ids[pos].view(key.shape), -1)

    @cached_property
    def row_lists(self) -> torch.Tensor:
        """``[b, n, k]`` out-edge ids of each residue (−1 at invalid slots)."""
        ids = torch.arange(self.num_edges, device=self.index.device).view(1, self.n, self.k)
        return torch.where(self.valid, ids, -1)

    @cached_property
    def column_lists(self) -> torch.Tensor:
        """``[b, n, D]`` in-edge ids of each residue, D = the largest in-degree (−1 padded)."""
        b, n, k = self.index.shape
        device = self.index.device
        dst = torch.where(self.valid, self.index, n).reshape(b, -1)  # invalid: a spare row n
        order = torch.argsort(dst, dim=1, stable=True)  # [b, n·k] edges grouped by target
        dst_sorted = torch.gather(dst, 1, order)
        counts = torch.zeros(b, n + 1, dtype=torch.long, device=device)
        counts.scatter_add_(1, dst, torch.ones_like(dst))
        starts = torch.cumsum(counts, 1) - counts  # [b, n + 1] first sorted position per target
        rank = torch.arange(n * k, device=device)[None] - torch.gather(starts, 1, dst_sorted)
        width = max(int(counts[:, :n].max()) if n else 0, 1)
        lists = torch.full((b, n + 1, width), -1, dtype=torch.long, device=device)
        keep = dst_sorted < n
        batch = torch.arange(b, device=device)[:, None].expand_as(dst_sorted)
        lists[batch[keep], dst_sorted[keep], rank[keep]] = order[keep]
        return lists[:, :n]

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


def gather_edges(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Per-edge values at edge ids: ``values [b, n, k, *]``, ``edges [b, *s]`` (−1 allowed) ->
    ``[b, *s, *]`` (zero where the id is −1). Differentiable in ``values``.

    One ``index_select`` on the flattened edges: its backward is an atomic ``index_add`` (CUDA's
    advanced-indexing backward serialises on repeated indices, and every edge is read ~k times;
    docs/BENCHMARKS.md has the step time it cost before commit bb0b63a)."""
    b, n, k = values.shape[:3]
    rest = values.shape[3:]
    flat = values.reshape(b * n * k, *rest)  # [b·n·k, *]
    offset = torch.arange(b, device=edges.device).view(-1, *([1] * (edges.dim() - 1))) * (n * k)
    idx = (edges.clamp(min=0) + offset).reshape(-1)  # [b·q]
    out = flat.index_select(0, idx).view(*edges.shape, *rest)
    present = (edges >= 0).view(*edges.shape, *([1] * len(rest)))
    return out * present.to(out.dtype)


def scatter_edges(values: torch.Tensor, edges: torch.Tensor, *, n: int, k: int) -> torch.Tensor:
    """Inverse of :func:`gather_edges` for lists in which every edge appears at most once:
    ``values [b, *s, *]`` at ``edges [b, *s]`` -> ``[b, n, k, *]`` (zero at edges not listed)."""
    b = values.shape[0]
    rest = values.shape[edges.dim() :]
    flat_ids = edges.reshape(b, -1)
    flat_vals = values.reshape(b, flat_ids.shape[1], *rest)
    keep = flat_ids >= 0
    batch = torch.arange(b, device=values.device)[:, None].expand_as(flat_ids)
    out = values.new_zeros(b, n * k, *rest)
    out = out.index_put((batch[keep], flat_ids[keep]), flat_vals[keep])
    return out.view(b, n, k, *rest)


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
    return KnnGraph(index, valid, offsets)
