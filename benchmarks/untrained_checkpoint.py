"""Write the checkpoint of an untrained (freshly initialised) model, the control of docs/QUALITY.md.

Usage::

    python benchmarks/untrained_checkpoint.py --config configs/train_baseline.config OUT.ckpt \
        [--set key=value ...]

The file has the layout of a training checkpoint that ``genie.training.module.load_module`` (and
so the sampling entry points) read: the config under ``hyper_parameters`` and the weights, drawn
with the config's seed, under ``state_dict``, with their checksum (``genie_checksum``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genie.checkpoint import CHECKSUM_KEY, checksum_entry  # noqa: E402
from genie.config import load_config  # noqa: E402
from genie.config.cli import add_config_arguments  # noqa: E402
from genie.training.module import GenieModule  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser, what="training")
    parser.add_argument("out", help="checkpoint to write (.ckpt)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    ensure_writable_file(args.out, what="OUT")
    pl.seed_everything(cfg.seed, verbose=False)
    module = GenieModule(cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = module.state_dict()
    torch.save(
        {
            "hyper_parameters": {"config": dataclasses.asdict(cfg)},
            "state_dict": state,
            CHECKSUM_KEY: checksum_entry(state),
            "epoch": 0,
            "global_step": 0,
        },
        out,
    )
    print(f"untrained {cfg.name}: {module.model.num_parameters():,} parameters -> {out}")


if __name__ == "__main__":
    sys.exit(run_command(main))
