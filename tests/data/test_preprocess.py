"""Tests of genie.data.preprocess and the dataset file: collection, caching, skipping, CLI."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genie.data.dataset_file import (
    FORMAT_VERSION,
    default_dataset_path,
    load_dataset_file,
    read_dataset_metadata,
    save_dataset_file,
)
from genie.data.preprocess import build_dataset, collect_structure_files, main
from genie.data.structure_io import read_ca_segments, write_ca_structure
from genie.utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _trace(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0)  # [n, 3]


def _make_inputs(folder: Path) -> dict[str, int]:
    """Four readable files (one with a gap), one corrupt file; returns name -> residues."""
    folder.mkdir(parents=True, exist_ok=True)
    lengths = {"a": 60, "b": 45, "c": 12}
    for i, (name, n) in enumerate(lengths.items()):
        write_ca_structure(folder / f"{name}.pdb", _trace(n, i))
    gapped = _trace(50, 7)
    gapped[30:] += 20.0  # one 20 Å jump: segments of 30 and 20
    write_ca_structure(folder / "sub" / "d.cif", gapped, fmt="cif")
    (folder / "broken.pdb.gz").write_bytes(b"not gzip at all")
    (folder / "notes.txt").write_text("ignored: not a structure suffix")
    return {**lengths, "d": 50}


def test_collect_structure_files(tmp_path):
    _make_inputs(tmp_path / "in")
    names = [p.name for p in collect_structure_files(tmp_path / "in")]
    assert names == ["a.pdb", "b.pdb", "broken.pdb.gz", "c.pdb", "d.cif"]
    assert [p.name for p in collect_structure_files(str(tmp_path / "in" / "*.pdb"))] == [
        "a.pdb",
        "b.pdb",
        "c.pdb",
    ]
    recursive = collect_structure_files([str(tmp_path / "in" / "**" / "*.cif")])
    assert [p.name for p in recursive] == ["d.cif"]
    # a file named explicitly is taken whatever its suffix; duplicates collapse
    mixed = collect_structure_files([tmp_path / "in" / "a.pdb", tmp_path / "in", "in/notes.txt"])
    assert len(mixed) == 5
    with pytest.raises(FileNotFoundError, match="nowhere"):
        collect_structure_files([str(tmp_path / "nowhere"), str(tmp_path / "in" / "*.xyz")])


def test_build_counts_skips_and_filters(tmp_path, capsys):
    _make_inputs(tmp_path / "in")
    path = build_dataset(
        tmp_path / "in", cache_dir=tmp_path / "cache", min_length=20, max_length=55, num_workers=1
    )
    out = capsys.readouterr().out
    assert "5 files found, 4 read, 1 skipped (parse error: 1)" in out
    arrays = load_dataset_file(path)
    # a (60) too long, c (12) too short; b (45) and d split into 30 + 20 kept
    assert sorted(arrays.names.tolist()) == ["b_A_0", "d_A_0", "d_A_1"]
    assert sorted(arrays.lengths.tolist()) == [20, 30, 45]
    summary = arrays.metadata["summary"]
    assert summary["files_skipped"] == {"parse error": 1}
    assert any("broken.pdb.gz" in f for f in summary["skipped_examples"])
    assert (summary["segments_too_short"], summary["segments_too_long"]) == (1, 1)
    assert summary["residues"] == arrays.num_residues == 95
    assert arrays.metadata["format_version"] == FORMAT_VERSION
    assert arrays.metadata["params"]["max_length"] == 55
    for i in range(len(arrays)):  # coordinates are those of the files
        name = str(arrays.names[i])
        stem, k = name.split("_")[0], int(name.split("_")[-1])
        source = next((tmp_path / "in").rglob(f"{stem}.*"))
        expected = read_ca_segments(source)[k].coords
        np.testing.assert_array_equal(arrays.segment(i), expected)
        assert arrays.sequences[i] == "G" * len(expected)
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "cache").iterdir())


def test_keep_chain_breaks(tmp_path):
    _make_inputs(tmp_path / "in")
    path = build_dataset(
        tmp_path / "in" / "sub",
        cache_dir=tmp_path / "cache",
        min_length=40,
        split_chain_breaks=False,
        progress=False,
    )
    arrays = load_dataset_file(path)
    assert arrays.names.tolist() == ["d_A_0"]
    assert np.flatnonzero(arrays.breaks).tolist() == [30]


def test_cache_reused_and_invalidated(tmp_path, capsys):
    _make_inputs(tmp_path / "in")
    kwargs = {"cache_dir": tmp_path / "cache", "min_length": 20, "num_workers": 1}
    first = build_dataset(tmp_path / "in", **kwargs)
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    again = build_dataset(tmp_path / "in", **kwargs)
    assert again == first and first.stat().st_mtime_ns == stamp
    assert "using cached" in capsys.readouterr().out
    changed_filter = build_dataset(tmp_path / "in", **{**kwargs, "min_length": 25})
    assert changed_filter != first
    assert load_dataset_file(changed_filter).metadata["params"]["min_length"] == 25
    assert build_dataset(tmp_path / "in", **{**kwargs, "chain_break_distance": 30.0}) != first
    touched = tmp_path / "in" / "b.pdb"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    rebuilt = build_dataset(tmp_path / "in", **kwargs)
    assert rebuilt != first and "using cached" not in capsys.readouterr().out
    assert build_dataset(tmp_path / "in", **kwargs) == rebuilt
    # a corrupt cache file is rebuilt, not trusted
    rebuilt.write_bytes(b"garbage")
    assert build_dataset(tmp_path / "in", **kwargs) == rebuilt
    assert len(load_dataset_file(rebuilt)) == 4
    # so is a truncated one (zipfile.BadZipFile, which the reader raised unreported before)
    whole = rebuilt.read_bytes()
    rebuilt.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert build_dataset(tmp_path / "in", **kwargs) == rebuilt
    assert "unreadable" in capsys.readouterr().out and len(load_dataset_file(rebuilt)) == 4


def _flip_a_coordinate_byte(path: Path) -> None:
    """Change one byte inside the stored coordinates (the zip's CRC no longer matches)."""
    with np.load(path) as data:
        raw = data["coords"].tobytes()
    whole = bytearray(path.read_bytes())
    start = whole.find(raw[:64])
    assert start >= 0 and whole.find(raw[:64], start + 1) < 0
    whole[start + 10] ^= 0x40
    path.write_bytes(bytes(whole))


def _rewrite(path: Path, **changes) -> None:
    """Rewrite the .npz at ``path`` with some arrays replaced (None: removed)."""
    with np.load(path) as data:
        payload = dict(data)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    with open(path, "wb") as handle:
        np.savez(handle, **payload)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"garbage"),
    "pickle": lambda p: p.write_bytes(pickle.dumps({"coords": [1, 2, 3]})),
    "flipped_byte": _flip_a_coordinate_byte,
    "another_npz": lambda p: _rewrite(p, coords=None),
    "other_version": lambda p: _rewrite(
        p, metadata=np.array(json.dumps({**read_dataset_metadata(p), "format_version": 999}))
    ),
    "metadata_not_an_object": lambda p: _rewrite(p, metadata=np.array("[1, 2]")),
    "object_array": lambda p: _rewrite(p, names=np.array([object()] * 4, dtype=object)),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_an_unreadable_cache_is_reported_once_and_rebuilt(tmp_path, capsys, damage):
    _make_inputs(tmp_path / "in")
    kwargs = {"cache_dir": tmp_path / "cache", "min_length": 20, "num_workers": 1}
    path = build_dataset(tmp_path / "in", **kwargs)
    good = load_dataset_file(path)
    DAMAGE[damage](path)
    with pytest.raises(DataError, match=str(path)):  # never another kind of exception
        load_dataset_file(path)
    capsys.readouterr()
    assert build_dataset(tmp_path / "in", **kwargs) == path
    out = capsys.readouterr().out
    assert out.count(f"cache {path} unreadable") == 1 and "rebuilding" in out
    rebuilt = load_dataset_file(path)
    assert rebuilt.names.tolist() == good.names.tolist()
    np.testing.assert_array_equal(rebuilt.coords, good.coords)
    assert "using cached" in (build_dataset(tmp_path / "in", **kwargs), capsys.readouterr())[1].out


def test_parallel_equals_serial(tmp_path):
    _make_inputs(tmp_path / "in")
    serial = load_dataset_file(
        build_dataset(tmp_path / "in", cache_dir=tmp_path / "c1", min_length=1, num_workers=1)
    )
    parallel = load_dataset_file(
        build_dataset(tmp_path / "in", cache_dir=tmp_path / "c2", min_length=1, num_workers=2)
    )
    assert serial.names.tolist() == parallel.names.tolist()
    np.testing.assert_array_equal(serial.coords, parallel.coords)
    np.testing.assert_array_equal(serial.offsets, parallel.offsets)


def test_no_usable_segment_is_a_clear_error(tmp_path):
    _make_inputs(tmp_path / "in")
    with pytest.raises(ValueError, match=r"no usable Cα segment in .*in.*min_length"):
        build_dataset(tmp_path / "in", cache_dir=tmp_path / "cache", min_length=500)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.pdb").write_text("REMARK nothing\n")
    with pytest.raises(ValueError, match=r"no usable Cα segment.*no atoms: 1"):
        build_dataset(tmp_path / "bad", cache_dir=tmp_path / "cache", min_length=1)
    with pytest.raises(FileNotFoundError, match="empty"):
        build_dataset(str(tmp_path / "empty"), cache_dir=tmp_path / "cache", min_length=1)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        load_dataset_file(tmp_path / "other.npz")
    arrays = load_dataset_file(default_dataset_path())
    path = save_dataset_file(tmp_path / "copy.npz", arrays)
    assert read_dataset_metadata(path)["format_version"] == FORMAT_VERSION
    with np.load(path) as data:
        payload = dict(data)
    payload["metadata"] = np.array('{"format_version": 999}')
    np.savez(tmp_path / "future.npz", **payload)
    with pytest.raises(ValueError, match="format version 999"):
        load_dataset_file(tmp_path / "future.npz")


def test_command_line(tmp_path, capsys):
    _make_inputs(tmp_path / "in")
    code = main(
        [str(tmp_path / "in"), "--cache-dir", str(tmp_path / "cache"), "--min-length", "20"]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and Path(out[-1]).is_file()
    assert main([str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path), "--min-length", "1"]) == 2
    # as a module, with worker processes
    result = subprocess.run(
        [sys.executable, "-m", "genie.data.preprocess", str(tmp_path / "in"), "--cache-dir"]
        + [str(tmp_path / "cache2"), "--min-length", "20", "--keep-chain-breaks", "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert load_dataset_file(path).metadata["params"]["split_chain_breaks"] is False


def test_command_line_user_errors(tmp_path, capsys):
    _make_inputs(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.pdb").write_text("not a structure\n")
    cases = [
        (["--cache-dir", str(tmp_path / "file")], f"--cache-dir {tmp_path / 'file'} is a file"),
        (["--cache-dir", str(tmp_path / "c"), "--output", str(tmp_path / "file" / "x.npz")],
         f"--output {tmp_path / 'file' / 'x.npz'} cannot be written: {tmp_path / 'file'} is a"),
        (["--cache-dir", str(tmp_path / "c"), "--min-length", "0"], "need 1 <= --min-length"),
    ]  # fmt: skip
    for options, message in cases:
        assert main([str(tmp_path / "in"), *options]) == 2
        err = capsys.readouterr().err
        assert err == f"python -m genie.data.preprocess: error: {err.split(': error: ')[1]}"
        assert message in err
    assert not (tmp_path / "c").exists()  # nothing read or written
    assert main([str(tmp_path / "junk"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "no usable Cα segment" in capsys.readouterr().err


def test_real_files_and_bundled_default(tmp_path, shared_pdb):
    path = build_dataset(
        [shared_pdb / "bench" / "ts50", shared_pdb / "odd"],
        cache_dir=tmp_path,
        min_length=40,
        num_workers=2,
        progress=False,
    )
    arrays = load_dataset_file(path)
    summary = arrays.metadata["summary"]
    # both odd/ files parse; wrong_hydrogens holds only 2 residues
    assert (summary["files_read"], summary["files_skipped"]) == (52, {})
    assert (summary["segments_kept"], summary["segments_too_short"]) == (51, 1)
    # the bundled default holds exactly the 50 TS50 chains, centred, to 0.001 Å
    default = load_dataset_file(default_dataset_path())
    assert len(default) == 50 and default.metadata["provenance"]["package"]["version"] == "2.11.0"
    by_name = {str(name): i for i, name in enumerate(arrays.names)}
    for i, name in enumerate(default.names):
        j = by_name[str(name)]
        real = arrays.segment(j).astype(np.float64)
        np.testing.assert_allclose(default.segment(i), real - real.mean(0), atol=1.5e-3)
        assert default.sequences[i] == arrays.sequences[j]
        assert np.abs(default.segment(i).mean(0)).max() < 1e-3


def test_ts50_archive_members_match_shared_copies(shared_pdb):
    """The build script's selection rule picks exactly the 50 shared TS50 files (by name)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_default_dataset as script
    finally:
        sys.path.remove(str(REPO / "scripts"))
    names = [
        f"MDAnalysisTests/data/dssp/{p.name}" for p in (shared_pdb / "bench" / "ts50").iterdir()
    ]
    names += [f"MDAnalysisTests/data/dssp/{p.name}" for p in (shared_pdb / "odd").iterdir()]
    picked = [n for n in names if script.TS50_MEMBER.search(n)]
    assert len(picked) == 50 and not any("failing" in n or "hydrogens" in n for n in picked)
    with gzip.open(shared_pdb / "bench" / "ts50" / "1ahsA.pdb.gz", "rt") as handle:
        assert "ATOM" in handle.read(4096)


def test_command_line_output_file_of_the_long_chains(tmp_path, shared_pdb, capsys):
    long = shared_pdb / "long"
    output = tmp_path / "long_ca.npz"
    sources = [str(long / "4V8R.pdb.gz"), str(long / "6ZU5.cif.gz")]
    code = main([*sources, "--cache-dir", str(tmp_path / "cache"), "--output", str(output)])
    assert code == 0 and capsys.readouterr().out.strip().splitlines()[-1] == str(output)
    arrays = load_dataset_file(output)
    assert arrays.metadata["params"]["min_length"] == 20  # the command line's default
    lengths = {
        prefix: arrays.lengths[[str(n).startswith(prefix) for n in arrays.names]]
        for prefix in ("4V8R", "6ZU5")
    }
    # 4V8R: 16,716 Cα, four 10-residue pieces dropped; 6ZU5: 10,308 protein Cα, one of 13
    assert lengths["4V8R"].sum() == 16716 - 40 and lengths["6ZU5"].sum() == 10308 - 13
    assert min(v.min() for v in lengths.values()) >= 20
    assert main([*sources, "--cache-dir", str(tmp_path / "cache"), "--output", "x.txt"]) == 2
