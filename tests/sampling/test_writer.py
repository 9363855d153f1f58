"""Sample files: structure last, PDB fragments that reassemble the chain, trajectory archive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from genie.data.structure_io import read_ca_segments
from genie.sampling.writer import coordinate_problem, fragment_bounds, write_sample


def read(path):
    (segment,) = read_ca_segments(path, split_chain_breaks=False)
    return torch.from_numpy(segment.coords)


def test_fragment_bounds_cover_the_chain_without_overlap():
    assert fragment_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert fragment_bounds(8, 4) == [(0, 4), (4, 8)]
    with pytest.raises(ValueError, match="fragmentLength must be in 1..9999"):
        fragment_bounds(20000, 10000)


def test_fragments_reassemble_the_chain(tmp_path):
    coords = 20 * torch.rand(11, 3, generator=torch.Generator().manual_seed(0))
    out = write_sample(tmp_path / "run.v2_L11_0000", coords, fragment_length=4)
    assert out.structure.name == "run.v2_L11_0000.pdb"  # a dot in the name is kept
    assert [p.name for p in out.fragments] == [f"run.v2_L11_0000_frag00{k}.pdb" for k in range(3)]
    pieces = [read(p) for p in out.fragments]
    assert [len(p) for p in pieces] == [4, 4, 3]
    assert_close(torch.cat(pieces), coords, atol=6e-4, rtol=0)  # PDB keeps 3 decimals
    assert_close(read(out.structure), coords, atol=6e-4, rtol=0)


def test_short_chains_get_no_fragments_and_no_trajectory_file(tmp_path):
    out = write_sample(tmp_path / "s", torch.zeros(5, 3), fragment_length=5)
    assert out.fragments == [] and out.trajectory is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pdb"]


def test_above_pdb_limit_structure_is_mmcif_and_fragments_are_pdb(tmp_path):
    n = 10_001
    coords = 200 * torch.rand(n, 3, generator=torch.Generator().manual_seed(1)) - 100
    out = write_sample(tmp_path / "long", coords, fragment_length=5000)
    assert out.structure.name == "long.cif"
    assert [p.name for p in out.fragments] == ["long_frag000.pdb", "long_frag001.pdb",
                                               "long_frag002.pdb"]  # fmt: skip
    assert_close(torch.cat([read(p) for p in out.fragments]), coords, atol=6e-4, rtol=0)
    assert len(read(out.structure)) == n


def test_trajectory_archive_holds_frames_and_timesteps(tmp_path):
    frames = [torch.full((4, 3), float(k)) for k in range(3)]
    out = write_sample(tmp_path / "t", frames[-1], trajectory=frames, frame_timesteps=[20, 10, 0])
    data = np.load(out.trajectory)
    assert data["coords"].shape == (3, 4, 3) and data["coords"][1, 0, 0] == 1.0
    assert data["timesteps"].tolist() == [20, 10, 0]
    with pytest.raises(ValueError, match="3 frames but 2 timesteps"):
        write_sample(tmp_path / "u", frames[-1], trajectory=frames, frame_timesteps=[1, 0])
    assert not (tmp_path / "u.pdb").exists()  # the structure file comes last


def test_what_no_structure_file_can_hold():
    ok = torch.zeros(4, 3)
    far = torch.tensor([[0.0, 0.0, 0.0], [12000.0, 0.0, 0.0]])  # beyond PDB's %8.3f columns
    assert coordinate_problem(ok, fmt="pdb") is None
    assert (
        coordinate_problem(far, fmt="auto") is None and coordinate_problem(far, fmt="cif") is None
    )
    assert "beyond the PDB columns" in coordinate_problem(far, fmt="pdb")
    assert "beyond the PDB columns" in coordinate_problem(-far, fmt="pdb")  # below -999.999
    for bad in (float("nan"), float("inf"), -float("inf")):
        coords = ok.clone()
        coords[1, 2] = bad
        for fmt in ("auto", "pdb", "cif"):
            assert coordinate_problem(coords, fmt=fmt) == (
                "1 of 4 residues have NaN or infinite coordinates"
            )


def test_a_diverged_sample_writes_nothing(tmp_path):
    frames = [torch.zeros(4, 3), torch.full((4, 3), float("nan"))]
    with pytest.raises(ValueError, match="s: not written: 4 of 4 residues have NaN"):
        write_sample(tmp_path / "s", frames[-1], fragment_length=2, trajectory=frames,
                     frame_timesteps=[1, 0])  # fmt: skip
    with pytest.raises(ValueError, match="beyond the PDB columns"):
        write_sample(tmp_path / "p", torch.full((4, 3), 1e4), fmt="pdb")
    assert not any(tmp_path.iterdir())  # no trajectory, fragment or structure file
    assert write_sample(tmp_path / "a", torch.full((4, 3), 1e4)).structure.name == "a.cif"
