"""The k-NN graph of a sharded chain: each process searches the neighbours of its own residues
against the whole chain's Cα trace, and the processes exchange the (integer) results.

Notation: b batch, n residues of the padded chain, m own residues (``rows``), k neighbours.

The search is that of :func:`genie.geometry.knn.knn_graph` restricted to the query rows ``rows``:
the same candidates, the same tie rule (the int64 key ``(fp32 bits of the distance) · 2³² + j``,
lower j first at equal distance), the same placeholders in invalid slots, so the rows equal the
unsharded graph's rows exactly (``tests/distributed/test_knn.py`` holds them equal for every
strategy). Memory per process: the gathered trace ``[b, n, 3]`` and one ``[b, chunk, n]``
distance block; never n×n. Unknown strategies (e.g. ones added to the geometry module later) are
refused rather than approximated.
"""

from __future__ import annotations

import torch

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import gather_neighbors
from genie.model.layout import SequenceLayout
from genie.utils.chunking import chunked

STRATEGIES = ("coordinate", "sequence", "hybrid")
_INF_BITS = 0x7F800000  # fp32 +inf as int32 (the key encoding of genie.geometry.knn)
_LOW32 = 0xFFFFFFFF


def _queries(rows: slice, b: int, k: int, device: torch.device) -> torch.Tensor:
    """``[b, m, k]`` the query residue of every slot (the placeholder of invalid slots)."""
    return torch.arange(rows.start, rows.stop, device=device)[None, :, None].expand(b, -1, k)


def sequence_rows(
    mask: torch.Tensor, rows: slice, *, k: int, exclude_self: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~genie.geometry.knn.sequence_neighbors` of the query ``rows`` of ``mask [b, n]``:
    ``(index, valid)``, each ``[b, m, k]``."""
    b, n = mask.shape
    device = mask.device
    real = mask.bool()
    d = torch.arange(1, k + 1, device=device)
    offsets = torch.stack([-d, d], dim=-1).flatten()  # [2k]: -1, +1, -2, +2, ...
    if not exclude_self:
        offsets = torch.cat([offsets.new_zeros(1), offsets])
    cand = torch.arange(rows.start, rows.stop, device=device)[:, None] + offsets  # [m, c]
    inside = (cand >= 0) & (cand < n)
    cand = cand.clamp(0, n - 1)
    ok = inside & real[:, cand] & real[:, rows, None]  # [b, m, c]
    rank = torch.arange(offsets.numel(), device=device)
    order = torch.topk(rank + (~ok) * offsets.numel(), k, dim=-1, largest=False)[1]  # [b, m, k]
    index = torch.gather(cand.expand(b, -1, -1), 2, order)
    valid = torch.gather(ok, 2, order)
    return torch.where(valid, index, _queries(rows, b, k, device)), valid


def coordinate_rows(
    coords: torch.Tensor,
    mask: torch.Tensor,
    rows: slice,
    *,
    k: int,
    chunk_size: int | None,
    exclude_self: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~genie.geometry.knn.coordinate_neighbors` of the query ``rows`` of the whole
    trace ``coords [b, n, 3]`` Å (``mask [b, n]``), in blocks of ``chunk_size`` queries."""
    b, n, _ = coords.shape
    device = coords.device
    real = mask.bool()
    k_search = min(k, n)
    with torch.autocast(device.type, enabled=False):
        x = torch.where(real[..., None], coords.float(), 0.0)  # [b, n, 3]; padding may be NaN
        column = torch.arange(n, device=device)

        def block(chunk: slice) -> torch.Tensor:
            start, stop = rows.start + chunk.start, rows.start + chunk.stop  # whole-chain rows
            dist = torch.cdist(x[:, start:stop], x, compute_mode="donot_use_mm_for_euclid_dist")
            dist.masked_fill_(~real[:, None, :], float("inf"))  # [b, chunk, n]
            if exclude_self:
                dist.diagonal(offset=start, dim1=1, dim2=2).fill_(float("inf"))
            key = dist.view(torch.int32).to(torch.int64)
            del dist
            key.bitwise_left_shift_(32).add_(column)  # (distance bits) · 2³² + j
            return torch.topk(key, k_search, dim=-1, largest=False, sorted=True)[0]

        keys = chunked(block, rows.stop - rows.start, chunk_size, dim=1)  # [b, m, k_search]
    index = keys & _LOW32
    valid = ((keys >> 32) < _INF_BITS) & real[:, rows, None]
    if k_search < k:
        pad = k - k_search
        index = torch.cat([index, index.new_zeros(b, index.shape[1], pad)], dim=-1)
        valid = torch.cat([valid, valid.new_zeros(b, valid.shape[1], pad)], dim=-1)
    return torch.where(valid, index, _queries(rows, b, k, device)), valid


def hybrid_rows(
    coords: torch.Tensor,
    mask: torch.Tensor,
    rows: slice,
    *,
    k: int,
    chunk_size: int | None,
    exclude_self: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``hybrid`` strategy of :mod:`genie.geometry.knn` for the query ``rows``: ⌈k/2⌉
    sequence neighbours, then the nearest coordinate neighbours not already chosen."""
    b = mask.shape[0]
    k_seq = (k + 1) // 2
    k_coord = k - k_seq
    seq_index, seq_valid = sequence_rows(mask, rows, k=k_seq, exclude_self=exclude_self)
    if k_coord == 0:
        return seq_index, seq_valid
    cand, cand_valid = coordinate_rows(
        coords, mask, rows, k=k, chunk_size=chunk_size, exclude_self=exclude_self
    )
    taken = ((cand[..., :, None] == seq_index[..., None, :]) & seq_valid[..., None, :]).any(-1)
    keep = cand_valid & ~taken  # [b, m, k]
    rank = torch.arange(k, device=cand.device)
    order = torch.topk(rank + (~keep) * k, k_coord, dim=-1, largest=False)[1]
    index = torch.cat([seq_index, torch.gather(cand, 2, order)], dim=-1)
    valid = torch.cat([seq_valid, torch.gather(keep, 2, order)], dim=-1)
    return torch.where(valid, index, _queries(rows, b, k, index.device)), valid


@torch.no_grad()
def knn_rows(
    coords: torch.Tensor,
    mask: torch.Tensor,
    rows: slice,
    *,
    k: int,
    strategy: str,
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows`` of :func:`genie.geometry.knn.knn_graph` of the whole chain ``coords
    [b, n, 3]`` Å, ``mask [b, n]``: ``(index, valid)``, each ``[b, m, k]``, whole-chain ids."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if strategy == "coordinate":
        return coordinate_rows(coords, mask, rows, k=k, chunk_size=chunk_size)
    if strategy == "sequence":
        return sequence_rows(mask, rows, k=k)
    if strategy == "hybrid":
        return hybrid_rows(coords, mask, rows, k=k, chunk_size=chunk_size)
    raise ValueError(
        f"sequence parallelism cannot build the k-NN strategy '{strategy}' "
        f"(it supports {', '.join(STRATEGIES)})"
    )


@torch.no_grad()
def sharded_knn_graph(
    coords: torch.Tensor,
    mask: torch.Tensor,
    residue_index: torch.Tensor,
    *,
    layout: SequenceLayout,
    k: int,
    strategy: str,
    chunk_size: int | None,
) -> KnnGraph:
    """The whole chain's k-NN graph (:func:`~genie.geometry.graph.build_knn_graph`) from the
    local ``coords [b, m, 3]`` Å, ``mask`` and ``residue_index [b, m]`` of every process.

    Gathers the trace (3 numbers per residue), searches the own rows, gathers their index and
    validity (k integers and k flags per residue); every process returns the same graph."""
    chain, real = layout.gather(coords), layout.gather(mask.bool())  # [b, n, 3], [b, n]
    positions = layout.gather(residue_index)  # [b, n]
    own = layout.own(chain.shape[1])
    index, valid = knn_rows(chain, real, own, k=k, strategy=strategy, chunk_size=chunk_size)
    index, valid = layout.gather(index), layout.gather(valid)  # [b, n, k] each
    offsets = gather_neighbors(positions, index) - positions[..., None]
    return KnnGraph.from_neighbors(index, valid, offsets)
