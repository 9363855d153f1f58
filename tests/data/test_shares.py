"""Tests of genie.data.shares: a step's chains split into equal numbers of non-empty
micro-batches per rank, every chain once."""

from __future__ import annotations

import itertools

import pytest

from genie.data.shares import rank_micro_batches, split_step, step_shares

CASES = list(itertools.product([1, 2, 3, 5, 7, 8, 12, 13, 31], [1, 2, 4], [1, 2, 3]))


@pytest.mark.parametrize(("m", "b", "ranks"), CASES)
def test_split_step_gives_every_rank_the_same_number_of_batches(m, b, ranks):
    groups = split_step(list(range(100, 100 + m)), batch_size=b, ranks=ranks)
    per_rank, left_out = step_shares(m, batch_size=b, ranks=ranks)
    assert len(groups) == ranks * per_rank
    assert all(1 <= len(g) <= b for g in groups)
    assert max(map(len, groups), default=0) - min(map(len, groups), default=0) <= 1
    flat = [i for g in groups for i in g]
    assert flat == list(range(100, 100 + m - left_out))  # in order, the last ones left out
    # chains are left out only where R non-empty batches of at most b cannot hold them all
    assert left_out < ranks
    fits = any(ranks * a <= m <= ranks * a * b for a in range(1, m + 1))
    assert (left_out == 0) == fits


def test_a_full_step_is_cut_into_micro_batches_of_b():
    groups = split_step(list(range(12)), batch_size=2, ranks=3)  # R = 3, A = 2, b = 2
    assert groups == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    # micro-batch k goes to rank k mod R, as its accumulation step k div R
    steps = [list(range(12)), list(range(12, 17))]
    assert rank_micro_batches(steps, batch_size=2, ranks=3, rank=0) == [[0, 1], [6, 7], [12, 13]]
    assert rank_micro_batches(steps, batch_size=2, ranks=3, rank=2) == [[4, 5], [10, 11], [16]]


def test_step_shares_counts_by_hand():
    assert step_shares(7, batch_size=1, ranks=2) == (3, 1)  # 3 + 3, one chain left out
    assert step_shares(7, batch_size=2, ranks=2) == (2, 0)  # 2 + 2 + 2 + 1
    assert step_shares(3, batch_size=4, ranks=4) == (0, 3)  # fewer chains than ranks
    with pytest.raises(ValueError):
        step_shares(0, batch_size=1, ranks=1)
