"""The sampling plan: lengths from ``sampleLengths``, one job per backbone, seeds and stems."""

from __future__ import annotations

import pytest

from genie.config import ConfigError, SampleConfig
from genie.sampling.chains import sample_seed
from genie.sampling.jobs import parse_lengths, plan_jobs


def test_lengths_and_ranges_include_both_ends():
    assert parse_lengths(["64"]) == [64]
    assert parse_lengths(["64", "100-200:50"]) == [64, 100, 150, 200]
    assert parse_lengths(["3-5"]) == [3, 4, 5]


@pytest.mark.parametrize("items", [["abc"], ["10-x"], ["2"], []])
def test_unreadable_or_too_short_lengths_are_config_errors(items):
    with pytest.raises(ConfigError, match="sampleLengths"):
        parse_lengths(items)


def test_one_job_per_backbone_with_its_own_seed_and_stem(tmp_path):
    cfg = SampleConfig(sampleLengths=["8", "12"], samplesPerLength=3, seed=5, name="s",
                       outputDirectory=str(tmp_path))  # fmt: skip
    jobs = plan_jobs(cfg)
    assert [(j.length, j.index) for j in jobs] == [(n, i) for n in (8, 12) for i in range(3)]
    assert [j.seed for j in jobs] == [sample_seed(5, j.length, j.index) for j in jobs]
    assert len({j.seed for j in jobs}) == len(jobs)
    assert jobs[4].stem == tmp_path / "s_L12_0001"
    assert not jobs[0].done()
    jobs[0].stem.with_suffix(".cif").write_text("")
    assert jobs[0].done()
    jobs[0].remove_files()
    assert not jobs[0].done()


def test_pdb_output_cannot_hold_more_than_9999_residues(tmp_path):
    cfg = SampleConfig(sampleLengths=["10000"], outputFormat="pdb", outputDirectory=str(tmp_path))
    with pytest.raises(ConfigError, match="outputFormat pdb holds at most 9999"):
        plan_jobs(cfg)
