"""Sample very long Cα backbones (thousands to tens of thousands of residues).

python sample/sample_ultralong.py --config configs/sample_stage3.config [--set key=value ...]

The same sampler and config keys as sample/sample_long.py, with long-chain defaults for the keys
that neither the config file nor --set gives:

    batchSize 1                 one chain at a time (no padding, least memory)
    outputFormat auto           PDB up to 9,999 residues, mmCIF above
    saveTrajectory False        no trajectory frames held in memory
    clearCacheEveryNSteps 50    return cached CUDA blocks every 50 reverse steps

and PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (less fragmentation of GPU memory), set
before torch starts, unless the environment already sets PYTORCH_CUDA_ALLOC_CONF.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, too

from genie.sampling.run import main  # noqa: E402

ULTRALONG_DEFAULTS = {
    "batchSize": "1",
    "outputFormat": "auto",
    "saveTrajectory": "False",
    "clearCacheEveryNSteps": "50",
}

if __name__ == "__main__":
    sys.exit(main(description=__doc__, defaults=ULTRALONG_DEFAULTS))
