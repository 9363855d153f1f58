"""Session fixtures shared by several test folders."""

from __future__ import annotations

import pytest

SHARDS = 2  # processes of the sequence-parallel group (chains of 13 residues: 7 + 6 and padding)


@pytest.fixture(scope="session")
def sequence_parallel_results(tmp_path_factory) -> dict:
    """The checks of ``sequence_parallel_cases.suite`` from rank 0 of a group of SHARDS CPU
    processes (gloo), run once per session (≈40 s on 2 shared, busy cores)."""
    from sequence_parallel_cases import run_group, suite

    return run_group(suite, SHARDS, tmp_path_factory.mktemp("sequence_parallel"))[0]
