"""Random long-range neighbours of a Cα trace (``randomNeighbors``): p ∝ d⁻³ over the residues
that are not yet neighbours, as in salad's graphs (``mjendrusch/salad``,
``salad/modules/utils/geometry.py``: 32 random neighbours beside 16 sequence and 16 nearest)
and Chroma's random graph (``chroma/layers/structure/protein_graph.py``), so that distant parts
of a long chain see each other.

Notation: b batch, n residues, k existing neighbours, r random ones, c query chunk.

Sampling without replacement by the Gumbel-top-k trick (Kool, van Hoof & Welling 2019,
"Stochastic beams and where to find them"): with u_ij ~ U(0, 1) independent, the r largest keys

    key_ij = −3 log d_ij − log(−log u_ij)

over the candidates j of query i are a draw of r distinct j, each next one with probability
∝ d_ij⁻³ among those left. Candidates: real residues other than i and its k existing
neighbours; d is floored at :data:`MIN_DISTANCE`.

Determinism: u_ij is not drawn from a generator but hashed from (seed of the chain, i, j) by an
integer mixer (:func:`uniform_hash`), so the graph of a chain depends only on its seed and its
distances: not on the batch it is in, the query chunking, the device or any random stream. The
keys depend on the coordinates only through distances, so the graph is invariant to rotations
and translations (up to the rounding of distances, which moves a choice only at a near tie).

Memory: per chunk of c queries a ``[b, c, n]`` block of distances, hashes and keys (about
40 bytes per element in all), never an n×n tensor unless c ≥ n.
"""

from __future__ import annotations

import torch

from genie.utils.chunking import chunked

MIN_DISTANCE = 1e-3  # Å: floor of d in d⁻³ (coincident points, e.g. an all-zero x̂0)
EXPONENT = 3.0  # p ∝ d^−EXPONENT
_M32 = 0xFFFFFFFF
_MUL_A, _MUL_B = 0x7FEB352D, 0x5BD1E995  # odd, < 2³¹: x · mul < 2⁶³ for x < 2³², no overflow
_GOLDEN = 0x9E3779B9


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """An avalanche mixer of 32-bit values held in int64 ``x`` (any shape) -> 32-bit values."""
    x = x ^ (x >> 16)
    x = (x * _MUL_A) & _M32
    x = x ^ (x >> 15)
    x = (x * _MUL_B) & _M32
    return x ^ (x >> 16)


def _combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hash of the pair (a, b) of 32-bit values (broadcast)."""
    return _mix32(a ^ _mix32((b + _GOLDEN) & _M32))


def uniform_hash(seeds: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """u in (0, 1) for every (chain, row, column): ``seeds [b]``, ``rows [c]``, ``columns [n]``
    (int64, seeds any value) -> ``[b, c, n]`` float32 (k + ½) / 2²³ for k of 23 random bits
    (exact in fp32, so never 0 or 1), a function of the three integers only (the same on every
    device)."""
    s = _combine(_mix32(seeds & _M32), (seeds >> 32) & _M32)  # [b]
    row = _combine(s[:, None], rows[None, :] & _M32)  # [b, c]
    column = _mix32((columns + _GOLDEN) & _M32)  # [n]
    bits = _mix32(row[:, :, None] ^ column[None, None, :]) >> 9  # [b, c, n], 23 bits
    return (bits.to(torch.float32) + 0.5) * 2.0**-23


@torch.no_grad()
def random_neighbors(
    coords: torch.Tensor,
    mask: torch.Tensor,
    taken: torch.Tensor,
    *,
    count: int,
    seeds: torch.Tensor,
    chunk_size: int | None = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random neighbours per residue, p ∝ d⁻³ among the residues not in ``taken``.

    Args:
        coords: ``[b, n, 3]`` Cα coordinates, Å (searched in fp32; padded entries may hold
            anything).
        mask: ``[b, n]`` real residues; padding is never chosen and padded queries get no
            valid slot.
        taken: ``[b, n, k]`` long, each residue's existing neighbours (invalid slots of a
            :func:`~genie.geometry.knn.knn_graph` hold the query itself, excluded anyway).
        count: r, random neighbours per residue (≥ 1).
        seeds: ``[b]`` int64, one seed per chain (e.g. of (sample seed, reverse step)).
        chunk_size: queries per block (None: all at once).

    Returns:
        ``(index [b, n, r] long, valid [b, n, r] bool)``; a residue with fewer than r candidates
        leaves invalid slots, which hold the query itself.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    b, n, _ = coords.shape
    if seeds.shape != (b,):
        raise ValueError(f"seeds must be [b] = [{b}], got {tuple(seeds.shape)}")
    device = coords.device
    real = mask.bool()
    seeds = seeds.to(device=device, dtype=torch.int64)
    r = min(count, n)
    column = torch.arange(n, device=device)
    with torch.autocast(device.type, enabled=False):
        x = torch.where(real[..., None], coords.float(), 0.0)  # [b, n, 3]

        def block(rows: slice) -> torch.Tensor:
            dist = torch.cdist(x[:, rows], x, compute_mode="donot_use_mm_for_euclid_dist")
            u = uniform_hash(seeds, column[rows], column)  # [b, c, n]
            key = -EXPONENT * dist.clamp_min_(MIN_DISTANCE).log_() - (-u.log_()).log_()
            del dist, u
            key.masked_fill_(~real[:, None, :], float("-inf"))  # padding
            key.diagonal(offset=rows.start, dim1=1, dim2=2).fill_(float("-inf"))  # self
            key.scatter_(2, taken[:, rows], float("-inf"))  # existing neighbours
            top, index = torch.topk(key, r, dim=-1)  # [b, c, r]
            return torch.where(torch.isfinite(top), index, -1)  # −1: no candidate left

        index = chunked(block, n, chunk_size, dim=1)  # [b, n, r]
    valid = (index >= 0) & real[:, :, None]
    if r < count:
        pad = count - r
        index = torch.cat([index, index.new_zeros(b, n, pad)], dim=-1)
        valid = torch.cat([valid, valid.new_zeros(b, n, pad)], dim=-1)
    own = column[None, :, None].expand(b, n, count)
    return torch.where(valid, index, own), valid
