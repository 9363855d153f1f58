"""Starting training from a checkpoint: the checks of ``--resume`` and ``--init-weights``.

Both read the file with the one checkpoint reader, :func:`genie.checkpoint.load_checkpoint_file`
(``weights_only=True``, checksum, finite weights), before anything of the run is written.

A resumed run continues the checkpoint's model: :func:`check_resume` refuses a config whose model
differs from it. The model is what the weights compute: every model key
(:class:`~genie.config.model_keys.ModelKeys`) but those that change memory, speed, dropout or the
initialisation only (:data:`~genie.config.model_keys.RESUMABLE_MODEL_KEYS`), the diffusion
schedule (``numTimesteps``, ``schedule``), what its output means (the noise scale and the
prediction target, :meth:`~genie.diffusion.parametrisation.Parametrisation.describe`) and the
parameter names and shapes of the denoiser ``--config`` builds (built on the ``meta`` device, so
nothing is allocated). Keys that leave the model alone (epochs, learning rate, data, chunk sizes,
layer checkpointing, dropout, …) may differ: a warning names them. ``--init-weights`` starts a
new run, which may give the weights another meaning (e.g. fine-tune a unit-noise model with
length-aware noise).

A resumed run also continues the checkpoint's lineage: a checkpoint in a run folder's
``checkpoints/`` (``logDirectory/name/version_N/checkpoints/x.ckpt``) continues in that folder,
so the config's ``logDirectory`` and ``name`` must name it; and it must not be behind that
folder's ``last.ckpt``, which the resumed run would overwrite. A checkpoint outside a run folder
continues in a new ``version_N`` of ``logDirectory/name``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from genie.checkpoint import MODEL_PREFIX, load_checkpoint_file
from genie.config import ConfigError, GenieConfig, config_from_dict
from genie.config.model_keys import RESUMABLE_MODEL_KEYS, ModelKeys
from genie.model.build import build_denoiser, build_parametrisation, build_schedule
from genie.training.module import GenieModule

log = logging.getLogger("genie.train")

SCHEDULE = "diffusion timesteps"  # the schedule's entry in a model's signature
MAX_PARAMETERS = 3  # parameters named per kind of mismatch
MAX_KEYS = 6  # config keys named in one message
LAST = "last.ckpt"  # the checkpoint of a run folder that every resume of the run rewrites
# the keys whose values define what the weights compute (see the module docstring)
MODEL_IDENTITY_KEYS = tuple(
    key
    for key in (*(f.name for f in dataclasses.fields(ModelKeys)), "numTimesteps", "schedule")
    if key not in RESUMABLE_MODEL_KEYS
)


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


def check_resume(cfg: GenieConfig, path: Path) -> Path | None:
    """Check a ``--resume`` checkpoint before the run writes anything: the file passes the
    checkpoint reader, its model is the one ``cfg`` describes (the keys of
    :data:`MODEL_IDENTITY_KEYS`, parameter names and shapes, diffusion timesteps), and its run
    folder is the one ``cfg`` asks for (:func:`resume_folder`). Other differences from the
    checkpoint's config are allowed, with a warning that names them.

    Returns:
        the run folder the resumed run continues in, or None for a checkpoint outside a run
        folder (the run starts a new ``version_N`` of ``logDirectory/name``).

    Raises:
        CheckpointError: the file cannot be used (see
            :func:`~genie.checkpoint.load_checkpoint_file`).
        ConfigError: the checkpoint's config is not valid, its model differs from ``cfg``'s
            (names the keys that differ, with both values), or its run folder is not the one
            ``cfg`` names, or is further on than the checkpoint.
    """
    stored = load_checkpoint_file(path, role="--resume")
    stored_cfg = config_from_dict(
        GenieConfig, stored["hyper_parameters"]["config"], source=str(path)
    )
    signature = {k: v.shape for k, v in stored["state_dict"].items()}
    signature[SCHEDULE] = model_signature(stored_cfg)[SCHEDULE]
    progress = _progress(stored)
    del stored  # the trainer reads the file again; do not hold two copies
    new, old = dataclasses.asdict(cfg), dataclasses.asdict(stored_cfg)
    differing = [key for key in new if new[key] != old[key]]
    culprits = [key for key in differing if key in MODEL_IDENTITY_KEYS]
    mismatch = weights_mismatch(model_signature(cfg), signature)
    if culprits or mismatch:
        keys = _listed([f"{k} {old[k]!r} (checkpoint) vs {new[k]!r} (--config)"
                        for k in culprits], MAX_KEYS)  # fmt: skip
        detail = "; ".join(part for part in (keys, mismatch) if part)
        raise ConfigError(
            f"--resume: the model in {path} differs from --config's model ({detail}): to "
            "resume, use the checkpoint's values of these keys (config.resolved in its run "
            "folder); for a new run from its weights, use --init-weights"
        )
    meaning, stored_meaning = (build_parametrisation(c).describe() for c in (cfg, stored_cfg))
    if meaning != stored_meaning:
        raise ConfigError(
            f"--resume: the model in {path} was trained with {stored_meaning} (noiseScale, "
            f"noiseSigma, predictionTarget) but --config asks for {meaning}: to resume, use the "
            "checkpoint's values; for a new run from its weights, use --init-weights"
        )
    run = resume_folder(cfg, path, progress=progress)
    if differing:
        log.warning(
            "--resume: the config differs from the one %s was trained with in %s; continuing "
            "with the values given now",
            path,
            _listed([f"{k} ({old[k]!r} -> {new[k]!r})" for k in differing], MAX_KEYS),
        )
    return run


def resume_folder(cfg: GenieConfig, path: Path, *, progress: tuple[int, int]) -> Path | None:
    """The run folder that resuming checkpoint ``path`` (at ``progress``, (global step, epoch))
    continues in: ``…/version_N`` when the file lies in its ``checkpoints/`` folder, else None
    (a new run folder).

    Raises:
        ConfigError: ``cfg``'s ``logDirectory``/``name`` name another folder (the resumed run
            would write into another run's folder), or the folder's ``last.ckpt`` is further on
            than ``path`` (the resumed run would overwrite it).
    """
    if path.parent.name != "checkpoints":
        return None
    run = path.parent.parent
    asked = Path(cfg.logDirectory).expanduser() / cfg.name
    if asked.resolve() != run.parent.resolve():
        raise ConfigError(
            f"--resume: {path} belongs to the run folder {run}, but logDirectory and name ask "
            f"for a run folder in {asked}; a resumed run continues in its checkpoint's folder: "
            f"use logDirectory {run.parent.parent} and name {run.parent.name} (as in "
            f"{run / 'config.resolved'}), or start a new run from its weights with --init-weights"
        )
    last = path.parent / LAST
    if last.is_file() and not last.samefile(path):
        ahead = _stored_progress(last)
        # steps alone: the epoch of a checkpoint written when training ends counts the last
        # epoch as done, that of one written at the same epoch end (every N epochs) does not
        if ahead is not None and ahead[0] > progress[0]:
            raise ConfigError(
                f"--resume: {last} of the same run is further on (step {ahead[0]}, epoch "
                f"{ahead[1]}) than {path} (step {progress[0]}, epoch {progress[1]}) and the "
                f"resumed run would overwrite it: resume {last}, or, to branch off from "
                f"{path.name}, copy it out of {path.parent} and resume the copy (a new run folder)"
            )
    return run


def _progress(stored: Mapping[str, object]) -> tuple[int, int]:
    """(global step, epoch) of a checkpoint's contents (0 where it has none)."""
    return int(stored.get("global_step", 0) or 0), int(stored.get("epoch", 0) or 0)


def _stored_progress(path: Path) -> tuple[int, int] | None:
    """(global step, epoch) of checkpoint ``path`` (memory-mapped: its tensors are not read),
    or None when it cannot be read (a broken file may be overwritten)."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return _progress(stored)
    except Exception as error:  # any unreadable file: nothing of value to protect
        log.info("--resume: %s cannot be read (%s); the resumed run replaces it", path, error)
        return None
