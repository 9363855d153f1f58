"""torch.compile's cache file (``compileCacheFile``, genie/training/compile_cache.py): a process
with empty caches that loads the file finds its compiled graph there; a damaged file is skipped
with a warning; only the global-zero process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from helpers import REPO

from genie.training.compile_cache import CompileCache

# One "run" in a fresh process: the callback around a compiled step, torch.compile's caches in
# their own folder (argv[2]); prints the FX-graph cache hits and misses and what was loaded.
RUN = """
import json, sys, torch
from types import SimpleNamespace
from genie.training.compile_cache import CompileCache
cache = CompileCache(path=sys.argv[1])
trainer = SimpleNamespace(is_global_zero=True)
cache.on_fit_start(trainer, None)
step = torch.compile(lambda x: torch.nn.functional.gelu(x @ x.T).sum())
step(torch.randn(8, 8))
cache.on_train_end(trainer, None)
counters = torch._dynamo.utils.counters["inductor"]
print(json.dumps({"loaded": cache.loaded, "saved": cache.saved,
                  "hits": counters["fxgraph_cache_hit"], "misses": counters["fxgraph_cache_miss"]}))
"""


def run(cache_file, tmp_path, name: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / name), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", RUN, str(cache_file)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_finds_its_graph_in_the_file(tmp_path):
    cache_file = tmp_path / "run" / "compile_cache.bin"
    first = run(cache_file, tmp_path, "machine_a")
    assert first["loaded"] == 0 and first["hits"] == 0 and first["misses"] >= 1
    assert first["saved"] >= 1 and cache_file.stat().st_size > 0
    second = run(cache_file, tmp_path, "machine_b")  # empty caches, the file loaded
    assert second["loaded"] == first["saved"]
    assert second["hits"] >= 1 and second["misses"] == 0
    third = run(tmp_path / "other.bin", tmp_path, "machine_c")  # the control: no file
    assert third["hits"] == 0 and third["misses"] >= 1


def test_a_damaged_file_is_skipped_and_other_ranks_write_nothing(tmp_path, caplog):
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"not a cache")
    cache = CompileCache(path=damaged)
    with caplog.at_level("WARNING", logger="genie.train"):
        cache.on_fit_start(SimpleNamespace(is_global_zero=True), None)
    assert cache.loaded == 0 and "not used" in caplog.text
    other = CompileCache(path=tmp_path / "rank1.bin")
    other.on_train_end(SimpleNamespace(is_global_zero=False), None)
    assert not (tmp_path / "rank1.bin").exists()
