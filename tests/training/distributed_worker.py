"""Started by tests/training/test_distributed.py under ``torchrun --nproc_per_node 2``: trains the
runs of a plan file through :func:`genie.training.run.train` on CPU ranks (gloo), in order, in
the same processes, and writes what each rank saw to ``OUT/rank{r}.json``.

python distributed_worker.py PLAN.json OUT

PLAN: ``{"runs": [{"name": ..., "overrides": ["key=value", ...], "resume": CKPT or null,
"precision": "64-true" or "32-true"}]}``.
Per run: the (epoch, global step, dataset items) of every training batch of this rank and the
trainer's final metrics; then the ``(data, sequence)`` device meshes of 1 and 2 shards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from genie.config import load_config
from genie.distributed.mesh import build_device_mesh
from genie.training.run import train


class RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[list] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append([trainer.current_epoch, trainer.global_step, batch["items"].tolist()])


def main(plan_path: str, out: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    report: dict = {"runs": {}}
    for run in plan["runs"]:
        record = RecordBatches()
        trainer, _ = train(
            load_config(None, run["overrides"]),
            resume=run["resume"],
            precision=run["precision"],
            callbacks=[record],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        report["runs"][run["name"]] = {"batches": record.batches, "metrics": metrics}
        report["world_size"], rank = trainer.world_size, trainer.global_rank
    meshes = {}
    for shards in (1, 2):
        mesh = build_device_mesh(world_size=2, sequence_shards=shards, device_type="cpu")
        meshes[shards] = {
            "shape": list(mesh.shape),
            "names": list(mesh.mesh_dim_names),
            "coordinate": mesh.get_coordinate(),
            "sequence_ranks": mesh["sequence"].mesh.flatten().tolist(),
        }
    report["meshes"] = meshes
    report["threads"] = torch.get_num_threads()
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
