"""The genie-eval command end to end, its errors, and reading real PDB files as reference."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, shared_pdb_dir

from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.data.structure_io import write_ca_structure
from genie.eval.cli import main
from genie.eval.inputs import read_reference, read_samples
from genie.eval.metrics import summarize_reference


@pytest.fixture()
def samples_dir(tmp_path):
    data = load_dataset_file(default_dataset_path())
    folder = tmp_path / "samples"
    for i in range(3):
        write_ca_structure(folder / f"s{i}.pdb", data.segment(i))
    cif = write_ca_structure(tmp_path / "s3.cif", data.segment(3), fmt="cif")
    with gzip.open(folder / "s3.cif.gz", "wt") as handle:
        handle.write(cif.read_text())
    (folder / "broken.pdb").write_text("not a structure\n")
    return folder


def test_command_writes_report_json_and_plots(samples_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        [str(samples_dir), "--out", str(out), "--buckets", "100,150", "--max-tm-pairs", "3"]
    )
    assert status == 0
    assert "samples 4/4" in capsys.readouterr().err  # progress
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["num_chains"] == 4
    assert metrics["reference"]["num_chains"] == 50
    assert list(metrics["inputs"]["skipped_sample_files"]) == [str(samples_dir / "broken.pdb")]
    assert metrics["settings"]["buckets"] == [100, 150]
    for name in ("distributions", "rg_vs_length", "secondary_structure"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    passed = sum(bool(c["passed"]) for c in metrics["checks"])
    measured = sum(c["passed"] is not None for c in metrics["checks"])
    assert f"**{passed} of {measured} checks pass**" in report
    assert "broken.pdb" in report and "![rg_vs_length](rg_vs_length.png)" in report
    # one table row per bucket present in the JSON
    for bucket in metrics["buckets"]:
        row = f"| {bucket['label']} | {bucket['num_chains']} |"
        assert re.search("^" + re.escape(row), report, re.M)


def test_samples_are_read_with_chains_whole(tmp_path):
    # A stretched bond must reach the metrics: the sample is not split at the 8 Å gap.
    x = np.stack([3.8 * np.arange(30), np.zeros(30), np.zeros(30)], axis=-1)
    x[15:, 0] += 4.2
    write_ca_structure(tmp_path / "gap.pdb", x)
    chains = read_samples(tmp_path)
    assert len(chains.traces) == 1 and len(chains.traces[0]) == 30


def test_missing_package_fails_early_and_names_the_extra(
    samples_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tmtools", None)
    out = tmp_path / "out"
    assert main([str(samples_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "tmtools" in err and "pip install 'genie-long[eval]'" in err
    assert not out.exists()


def test_bad_arguments_are_reported(samples_dir, tmp_path, capsys):
    assert main([str(samples_dir), "--out", str(tmp_path / "o"), "--buckets", "9,3"]) == 2
    assert "strictly increasing" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no PDB/mmCIF files" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_any_work(samples_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("genie.eval.cli.read_samples", lambda *a, **k: 1 / 0)  # not reached
    (tmp_path / "file").write_text("x")
    for out, message in (
        (tmp_path / "file", f"--out {tmp_path / 'file'} is a file, not a folder"),
        (tmp_path / "file" / "o", f"--out {tmp_path / 'file' / 'o'} cannot be written"),
    ):
        assert main([str(samples_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genie-eval: error: ") and message in err
        assert len(err.strip().splitlines()) == 1


def test_sampler_fragments_are_not_samples(tmp_path):
    x = np.stack([3.8 * np.arange(30), np.zeros(30), np.zeros(30)], axis=-1)
    write_ca_structure(tmp_path / "gen_L30_0.pdb", x)
    write_ca_structure(tmp_path / "gen_L30_0_frag000.pdb", x[:15])
    write_ca_structure(tmp_path / "gen_L30_0_frag001.pdb", x[15:])
    write_ca_structure(tmp_path / "lone_frag000.pdb", x[:20])  # no whole chain beside it
    chains = read_samples(tmp_path)
    assert sorted(map(len, chains.traces)) == [20, 30]
    assert sorted(Path(p).name for p in chains.skipped) == [
        "gen_L30_0_frag000.pdb",
        "gen_L30_0_frag001.pdb",
    ]


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_package_imports_without_optional_packages():
    code = (
        "import sys\n"
        "for m in ('biotite', 'tmtools', 'matplotlib'): sys.modules[m] = None\n"
        "import numpy as np, genie.eval, genie.eval.cli\n"
        "from genie.eval.clashes import count_clashes\n"
        "print(count_clashes(np.zeros((5, 3))))\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"  # (5-3)(5-2)/2 pairs with |i-j| >= 3


def test_module_entry_point():
    result = _run_python(
        "import runpy, sys; sys.argv = ['genie.eval', '--help']; "
        "runpy.run_module('genie.eval', run_name='__main__')"
    )
    assert result.returncode == 0, result.stderr
    assert "--max-tm-length" in result.stdout and "--reference" in result.stdout


def test_real_pdb_folder_as_reference_matches_bundled_dataset():
    folder = shared_pdb_dir() / "bench" / "ts50"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    from_files = read_reference(folder)
    bundled = read_reference(None)
    assert sorted(map(len, from_files.traces)) == sorted(map(len, bundled.traces))
    a = summarize_reference(from_files.traces)
    b = summarize_reference(bundled.traces)
    assert a.group["sse"] == pytest.approx(b.group["sse"], abs=1e-3)
    assert a.fit["nu"] == pytest.approx(b.fit["nu"], abs=1e-4)
    assert a.group["clashes"]["pairs"] == b.group["clashes"]["pairs"] == 0
