"""Sequence clusters of dataset segments, for cluster-balanced sampling and leak-free splits.

Training sets of real structures are redundant: many mutants of one protein (T4 lysozyme in the
ddg benchmark), the same chain in several complexes. Sampling segments uniformly lets those
dominate; the usual remedy (Genie, RFdiffusion, FrameDiff) is to cluster sequences and draw one
member of each cluster per epoch.

Method (deliberately simple; not MMseqs2 or CD-HIT): each sequence is the set of its distinct
3-mers, and the similarity of two sequences is the fraction c of the shorter one's 3-mers that
the other contains, corrected for chance: ``(c - q) / (1 - q)`` where q = |longer set| / 9,261 is
the fraction a random sequence of the longer one's size would contain (a 2,000-residue chain
holds about a fifth of all 3-mers). Clustering is greedy in the CD-HIT manner: sequences are
visited longest first, each joins the first representative it matches at ``>= similarity``,
else founds a cluster. For a gapless alignment at identity p a 3-mer survives with probability
about p³, so a similarity of 0.3 corresponds to roughly 67 % identity and 0.5 to roughly 80 %.
A segment cut from a longer chain (chain breaks split chains into segments) joins the chain's
cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KMER = 3
_ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
_CODE = np.full(256, len(_ALPHABET), dtype=np.int64)  # anything else -> the 21st letter
_CODE[np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(_ALPHABET))
_BASE = len(_ALPHABET) + 1
NUM_KMERS = _BASE**KMER


def kmer_sets(sequences: Sequence[str]) -> list[np.ndarray]:
    """Distinct 3-mer ids of each sequence (sorted int64 arrays; empty below 3 residues)."""
    sets = []
    for seq in sequences:
        codes = _CODE[np.frombuffer(seq.upper().encode("ascii", "replace"), dtype=np.uint8)]
        if len(codes) < KMER:
            sets.append(np.zeros(0, dtype=np.int64))
            continue
        ids = codes[:-2] * _BASE * _BASE + codes[1:-1] * _BASE + codes[2:]
        sets.append(np.unique(ids))
    return sets


def kmer_similarity(a: str, b: str) -> float:
    """Chance-corrected containment of the shorter 3-mer set in the other (module docstring):
    ``(c - q) / (1 - q)`` with c the contained fraction and q = |longer set| / 9,261 the
    fraction expected by chance; 0 when either set is empty, may be negative."""
    sa, sb = kmer_sets([a, b])
    if len(sa) == 0 or len(sb) == 0:
        return 0.0
    shorter, longer = sorted((len(sa), len(sb)))
    contained = len(np.intersect1d(sa, sb, assume_unique=True)) / shorter
    chance = longer / NUM_KMERS
    return (contained - chance) / (1.0 - chance)


def cluster_sequences(
    sequences: Sequence[str], *, similarity: float, block: int = 256
) -> np.ndarray:
    """Greedy clustering by shared 3-mers (module docstring).

    Args:
        sequences: S one-letter sequences.
        similarity: threshold in (0, 1]; 1 joins only sequences whose 3-mer sets nest.
        block: representatives compared per matrix product (memory ``block × 9,261`` floats).

    Returns:
        ``[S]`` int64 cluster labels ``0..C-1``, numbered in order of first appearance in
        ``sequences``; identical sequences always share a label.
    """
    if not 0.0 < similarity <= 1.0:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    sets = kmer_sets(sequences)
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    order = np.argsort(-np.array([len(s) for s in sequences]), kind="stable")
    labels = np.full(len(sequences), -1, dtype=np.int64)
    rep_rows: list[np.ndarray] = []  # dense 0/1 rows of the representatives, in blocks
    rep_sizes: list[int] = []
    rep_label: list[int] = []
    exact: dict[str, int] = {}
    for i in order:
        if sequences[i] in exact:
            labels[i] = exact[sequences[i]]
            continue
        match = -1
        if sizes[i] > 0 and rep_rows:
            hits = np.concatenate([rows[:, sets[i]].sum(axis=1) for rows in rep_rows])
            reps = np.array(rep_sizes)
            shorter, longer = np.minimum(reps, sizes[i]), np.maximum(reps, sizes[i])
            chance = longer / NUM_KMERS  # containment expected between unrelated sequences
            need = (chance + similarity * (1.0 - chance)) * shorter
            ok = np.flatnonzero((hits >= need - 1e-9) & (shorter > 0))
            if len(ok):
                match = rep_label[int(ok[0])]
        if match < 0:
            match = len(rep_label)
            if not rep_rows or rep_rows[-1].shape[0] == block:
                rep_rows.append(np.zeros((0, NUM_KMERS), dtype=np.float32))
            row = np.zeros((1, NUM_KMERS), dtype=np.float32)
            row[0, sets[i]] = 1.0
            rep_rows[-1] = np.concatenate([rep_rows[-1], row])
            rep_sizes.append(int(sizes[i]))
            rep_label.append(match)
        labels[i] = match
        exact[sequences[i]] = match
    # renumber in order of first appearance in the input
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(labels.max() + 1, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(len(first))
    return renumber[labels]


def one_per_cluster(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn member of every cluster: sorted positions into ``labels``."""
    perm = rng.permutation(len(labels))
    _, first = np.unique(labels[perm], return_index=True)
    return np.sort(perm[first])
