"""``compileCacheFile``: torch.compile's caches kept in one file, so that a run resumed on another
machine (a fresh cloud instance, a preempted job) skips most of its compilation.

:class:`CompileCache` loads the file, when it exists, before training starts
(``torch.compiler.load_cache_artifacts``: PyTorch's "mega-cache" of the Inductor, AOTAutograd
and Triton autotuning caches) and writes it, atomically, when training ends — at its last
epoch, by the time budget, by Ctrl-C or by an error (a kill writes nothing; the previous file
stays). What it holds comes from this process: the graphs it compiled and those it found in
the caches, the loaded file's included. Keys of those caches include the PyTorch version, the
device and the graph itself, so a file from another PyTorch or GPU is simply not used.

Measured (CPU, a small MLP through ``torch.compile``, dynamic shapes): 15 s to the third step
without the file, 11 s with it (Dynamo still traces; kernel generation is skipped). On an H200
the first step of a stage 3 V2 run took ≈ 4 minutes on a machine with cold caches and ≈ 40 s
with warm ones (docs/QUALITY.md, 2026-12-02).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from genie.data.atomic import atomic_open

log = logging.getLogger("genie.train")


class CompileCache(pl.Callback):
    """Load ``path`` into torch.compile's caches at fit start; write them to it at the end."""

    def __init__(self, *, path: str | Path) -> None:
        """
        Args:
            path: the cache file (written by the global-zero process only).
        """
        self.path = Path(path)
        self.loaded = 0  # artifacts loaded from the file
        self.saved = 0  # artifacts written to it

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.path.is_file():
            log.info("compile cache %s: none yet, written when training ends", self.path)
            return
        try:
            info = torch.compiler.load_cache_artifacts(self.path.read_bytes())
        except Exception as err:  # noqa: BLE001 - an unusable cache only costs compile time
            info, why = None, str(err)
        else:
            why = "unreadable: damaged or from another PyTorch"  # torch returns None then
        if info is None:
            log.warning("compile cache %s not used (%s): compiling anew", self.path, why)
            return
        self.loaded = _count(info)
        log.info("compile cache %s: %d artifacts loaded", self.path, self.loaded)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception) -> None:
        self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:  # nothing compiled in this process
            return
        data, info = saved
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path, binary=True) as f:
            f.write(data)
        self.saved = _count(info)
        log.info("compile cache %s: %d artifacts, %.1f MB", self.path, self.saved, len(data) / 1e6)


def _count(info) -> int:
    """Artifacts in a ``torch.compiler`` ``CacheInfo`` (0 for None)."""
    return 0 if info is None else sum(len(keys) for keys in info.artifacts.values())
