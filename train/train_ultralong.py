"""Train a Genie-Long model on chains of 4,096-65,536 residues on one GPU (or several).

python train/train_ultralong.py --config configs/FILE.config [--set key=value ...]
                                [--resume runs/NAME/version_0/checkpoints/last.ckpt]
torchrun --nproc_per_node 8 train/train_ultralong.py --config ...   (one process per GPU)

The engine of train/train_long.py (genie.training.run.main), with these defaults for long chains:

- environment: PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, unless already set (fewer
  out-of-memory failures from fragmentation when the crop length changes); set here, before
  torch is imported, so before CUDA initialises;
- config keys that neither the config file nor --set give a value (a key written in the file
  keeps the file's value, even when it equals the generic default):
    batchSize 1              one long chain per step (per GPU);
    concatenateChains True   items shorter than the crop length are real segments joined with
                             marked, artificial joins (docs/DATA.md);
    validationSize 16        at most 16 validation chains (each a full crop: a validation
                             pass over hundreds of 65,536-residue chains would cost hours).
  numWorkers keeps its generic default (2): building a 65,536-residue item takes ~0.1 s on
  one core, far less than a training step at that length.
The defaults applied are printed and written to the run's config.resolved.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, too

from genie.training.run import main  # noqa: E402

ULTRALONG_DEFAULTS = {
    "batchSize": "1",
    "concatenateChains": "True",
    "validationSize": "16",
}


def run(argv: list[str] | None = None) -> int:
    """Train with the long-chain defaults; ``argv`` as on the command line (None = sys.argv)."""
    return main(argv, description=__doc__, defaults=ULTRALONG_DEFAULTS)


if __name__ == "__main__":
    sys.exit(run())
