"""Starting training from a checkpoint: the checks of ``--resume`` and ``--init-weights``.

Both read the file with the one checkpoint reader, :func:`genie.checkpoint.load_checkpoint_file`
(``weights_only=True``, checksum, finite weights), before anything of the run is written.

A resumed run continues the checkpoint's model: :func:`check_resume` refuses a config whose model
differs from it. The model is what the weights and the diffusion schedule are: the parameter
names and shapes of the denoiser ``--config`` builds (built on the ``meta`` device, so nothing is
allocated) and the schedule's number of timesteps, and what its output means (the noise scale and
the prediction target, :meth:`~genie.diffusion.parametrisation.Parametrisation.describe`). Keys
that leave all of them alone (epochs, learning rate, data, chunk sizes, layer checkpointing,
dropout, random edges, …) may differ: a warning names them. ``--init-weights`` starts a new run,
which may give the weights another meaning (e.g. fine-tune a unit-noise model with length-aware
noise).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from genie.checkpoint import MODEL_PREFIX, load_checkpoint_file
from genie.config import ConfigError, GenieConfig, config_from_dict
from genie.model.build import build_denoiser, build_parametrisation, build_schedule
from genie.training.module import GenieModule

log = logging.getLogger("genie.train")

SCHEDULE = "diffusion timesteps"  # the schedule's entry in a model's signature
MAX_PARAMETERS = 3  # parameters named per kind of mismatch
MAX_KEYS = 6  # config keys named in one message


def weights_mismatch(own: Mapping[str, torch.Size], stored: Mapping[str, torch.Size]) -> str:
    """What keeps weights of the shapes ``stored`` out of a model of the shapes ``own``
    (``missing: …; unexpected: …; shape (stored vs config): …``), or "" when they fit."""
    missing = sorted(set(own) - set(stored))
    unexpected = sorted(set(stored) - set(own))
    shapes = [
        f"{k} {tuple(stored[k])} vs {tuple(v)}"
        for k, v in own.items()
        if k in stored and tuple(stored[k]) != tuple(v)
    ]
    return "; ".join(
        f"{what}: {_listed(names, MAX_PARAMETERS)}"
        for what, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape (stored vs config)", shapes),
        )
        if names
    )


def _listed(names: list[str], limit: int) -> str:
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "")


def load_initial_weights(module: GenieModule, path: Path) -> None:
    """Copy the model weights of checkpoint ``path`` into ``module`` (``--init-weights``).

    Raises:
        CheckpointError: the file cannot be used (missing, unreadable, not ours, corrupted,
            non-finite weights: see :func:`~genie.checkpoint.load_checkpoint_file`).
        ConfigError: the checkpoint's model differs from the config's (names the first
            missing, unexpected or mis-shaped parameters).
    """
    weights = load_checkpoint_file(path, role="--init-weights")["state_dict"]
    own = {k: v.shape for k, v in module.state_dict().items()}
    mismatch = weights_mismatch(own, {k: v.shape for k, v in weights.items()})
    if mismatch:
        raise ConfigError(
            f"--init-weights: the model in {path} does not match the config's model "
            f"({mismatch}); use the model keys the checkpoint was trained with"
        )
    module.load_state_dict(weights)


def model_signature(cfg: GenieConfig) -> dict[str, torch.Size]:
    """The parameter shapes of the model ``cfg`` describes, as stored in a checkpoint (prefix
    ``model.``), and its schedule's timesteps: built on the ``meta`` device, unlogged."""
    with torch.device("meta"):
        model = build_denoiser(cfg, announce=False)
    signature = {MODEL_PREFIX + k: v.shape for k, v in model.state_dict().items()}
    signature[SCHEDULE] = torch.Size([build_schedule(cfg).num_timesteps])
    return signature


def check_resume(cfg: GenieConfig, path: Path) -> None:
    """Check a ``--resume`` checkpoint before the run writes anything: the file passes the
    checkpoint reader, and its model is the one ``cfg`` builds (parameter names and shapes,
    diffusion timesteps). Other differences from the checkpoint's config are allowed, with a
    warning that names them.

    Raises:
        CheckpointError: the file cannot be used (see
            :func:`~genie.checkpoint.load_checkpoint_file`).
        ConfigError: the checkpoint's config is not valid, or its model differs from ``cfg``'s
            (names the keys that differ, with both values).
    """
    stored = load_checkpoint_file(path, role="--resume")
    stored_cfg = config_from_dict(
        GenieConfig, stored["hyper_parameters"]["config"], source=str(path)
    )
    signature = {k: v.shape for k, v in stored["state_dict"].items()}
    signature[SCHEDULE] = model_signature(stored_cfg)[SCHEDULE]
    del stored  # the trainer reads the file again; do not hold two copies
    new, old = dataclasses.asdict(cfg), dataclasses.asdict(stored_cfg)
    differing = [key for key in new if new[key] != old[key]]
    mismatch = weights_mismatch(model_signature(cfg), signature)
    if mismatch:
        culprits = [k for k in differing if _changes_model(stored_cfg, k, new[k], signature)]
        keys = _listed([f"{k} {old[k]!r} (checkpoint) vs {new[k]!r} (--config)"
                        for k in culprits or differing], MAX_KEYS)  # fmt: skip
        raise ConfigError(
            f"--resume: the model in {path} differs from --config's model "
            f"({f'{keys}; ' if keys else ''}{mismatch}): to resume, use the "
            "checkpoint's values of these keys (config.resolved in its run folder); for a new "
            "run from its weights, use --init-weights (with the same model keys)"
        )
    meaning, stored_meaning = (build_parametrisation(c).describe() for c in (cfg, stored_cfg))
    if meaning != stored_meaning:
        raise ConfigError(
            f"--resume: the model in {path} was trained with {stored_meaning} (noiseScale, "
            f"noiseSigma, predictionTarget) but --config asks for {meaning}: to resume, use the "
            "checkpoint's values; for a new run from its weights, use --init-weights"
        )
    if differing:
        log.warning(
            "--resume: the config differs from the one %s was trained with in %s; continuing "
            "with the values given now",
            path,
            _listed([f"{k} ({old[k]!r} -> {new[k]!r})" for k in differing], MAX_KEYS),
        )


def _changes_model(
    stored_cfg: GenieConfig, key: str, value: object, signature: Mapping[str, torch.Size]
) -> bool:
    """Whether setting ``key`` alone to ``value`` in the checkpoint's config changes its model
    (True also when that config would not be valid)."""
    try:
        trial = model_signature(dataclasses.replace(stored_cfg, **{key: value}))
    except ValueError:  # ConfigError included
        return True
    return bool(weights_mismatch(trial, signature))
