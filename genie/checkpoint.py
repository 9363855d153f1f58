"""Reading a trained model from a training checkpoint, without PyTorch Lightning.

A checkpoint written by training (``genie.training``) holds the full config under
``hyper_parameters["config"]`` (plain types) and the LightningModule's weights under
``state_dict``, the denoiser's with the prefix ``model.``. :func:`read_checkpoint` rebuilds the
denoiser and its diffusion schedule from those alone, with ``torch.load(weights_only=True)``
(no code in a checkpoint ever runs). Sampling and evaluation use it; the LightningModule uses
the same builder, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genie.config import ConfigError, GenieConfig, config_from_dict
from genie.diffusion.schedule import DiffusionSchedule
from genie.model.build import build_denoiser, build_schedule
from genie.model.denoiser import GenieDenoiser

MODEL_PREFIX = "model."  # the denoiser's weights inside the LightningModule's state_dict


@dataclass(frozen=True)
class TrainedModel:
    """A denoiser (eval mode) with its schedule and the config it was built from."""

    model: GenieDenoiser
    schedule: DiffusionSchedule
    config: GenieConfig
    path: Path


def read_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    overrides: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """The trained model of a checkpoint.

    Args:
        path: a ``.ckpt`` written by training (or with the same layout).
        map_location: where the weights are loaded.
        overrides: config keys to change before the model is built (e.g. chunk sizes for
            sampling); they must not change the parameters.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: the file holds no config or weights of ours, or weights that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    stored = torch.load(path, map_location=map_location, weights_only=True)
    try:
        values = stored["hyper_parameters"]["config"]
        state = stored["state_dict"]
    except (KeyError, TypeError):
        raise ConfigError(
            f"{path} holds no Genie-Long config (not a checkpoint of ours?)"
        ) from None
    config = config_from_dict(GenieConfig, values, source=str(path))
    if overrides:
        config = dataclasses.replace(config, **overrides)
    model = build_denoiser(config)
    weights = {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError(
            f"{path}: the weights do not fit the model of its config ({err})"
        ) from None
    model.to(map_location).eval()
    schedule = build_schedule(config).to(map_location)
    return TrainedModel(model=model, schedule=schedule, config=config, path=path)
