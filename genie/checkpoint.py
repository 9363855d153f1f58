"""Reading a trained model from a training checkpoint, without PyTorch Lightning.

A checkpoint written by training (``genie.training``) holds the full config under
``hyper_parameters["config"]`` (plain types), the LightningModule's weights under ``state_dict``
(the denoiser's with the prefix ``model.``) and, since checksums were added, a checksum of those
weights under ``genie_checksum`` (:func:`checksum_entry`). :func:`load_checkpoint_file` is the one
reader of a checkpoint file for every use (sampling, ``--resume``, ``--init-weights``,
``load_module``): it reads with ``torch.load(weights_only=True)`` (no code in a checkpoint ever
runs), verifies the checksum and the finiteness of the weights, and turns every failure into a
:class:`CheckpointError` whose one line names the file, the case and what to do.
:func:`read_checkpoint` rebuilds the denoiser and its diffusion schedule from that alone; the
LightningModule uses the same builder, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genie.config import ConfigError, GenieConfig, config_from_dict
from genie.diffusion.parametrisation import Parametrisation
from genie.diffusion.schedule import DiffusionSchedule
from genie.model.build import build_denoiser, build_parametrisation, build_schedule
from genie.model.denoiser import GenieDenoiser

log = logging.getLogger(__name__)

MODEL_PREFIX = "model."  # the denoiser's weights inside the LightningModule's state_dict
CHECKSUM_KEY = "genie_checksum"  # {"algorithm": "sha256", "state_dict": hex digest}
CHECKSUM_ALGORITHM = "sha256"
OTHER_CHECKPOINT = "use another checkpoint (e.g. best-*.ckpt next to it, or an earlier copy)"


class CheckpointError(ConfigError):
    """A checkpoint file that cannot be used: missing, unreadable, refused (it would need code
    to load), not a checkpoint of ours, corrupted or holding non-finite weights. A
    :class:`~genie.config.ConfigError`, so the entry points report it in one line (exit 2)."""


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """The SHA-256 hex digest of a state_dict's tensors, in its key order: for each, the key,
    dtype and shape (length-prefixed) and the raw bytes of the values (on the CPU, contiguous,
    native byte order; any dtype, bfloat16 included, is hashed through a byte view).

    Only the model's ``state_dict`` is hashed: the optimiser and scheduler states, loop counters
    and callbacks' states of a checkpoint are not covered.

    Raises:
        TypeError: a value is not a tensor.
    """
    digest = hashlib.sha256()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        tensor = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        header = f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}".encode()
        digest.update(len(header).to_bytes(8, "little"))
        digest.update(header)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def checksum_entry(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """The ``genie_checksum`` entry that every checkpoint we write carries (see
    :func:`state_dict_digest`: the model weights, not the optimiser state)."""
    return {"algorithm": CHECKSUM_ALGORITHM, "state_dict": state_dict_digest(state)}


def load_checkpoint_file(path: str | Path, *, role: str = "") -> dict[str, Any]:
    """The contents of a checkpoint file of ours, on the CPU, checked: the one reader of every
    use (sampling, ``--resume``, ``--init-weights``, ``load_module``).

    Reads with ``torch.load(weights_only=True)``; requires ``hyper_parameters["config"]`` (a
    dict) and a ``state_dict`` of tensors; verifies the checksum where there is one (checkpoints
    written before checksums were added have none: accepted, with an info line) and that every
    floating-point weight is finite.

    Args:
        path: the ``.ckpt`` file.
        role: what the file is for (e.g. ``--resume``); starts every message.

    Raises:
        CheckpointError: one line naming the file, the case and what to do.
    """
    path = Path(path)
    what = f"{role}: checkpoint" if role else "checkpoint"
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointError(
            f"{what} {path} is a folder, not a file: give a .ckpt file "
            f"(e.g. {path / 'checkpoints' / 'last.ckpt'})"
        )
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is not a regular file: give a .ckpt file")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{what} {path} is empty (0 bytes; cut off while it was written?): {OTHER_CHECKPOINT}"
        )
    stored = _torch_load(path, what)
    hyper = stored.get("hyper_parameters") if isinstance(stored, dict) else None
    if not isinstance(hyper, Mapping) or not isinstance(hyper.get("config"), Mapping):
        raise CheckpointError(
            f"{what} {path} holds no Genie-Long config (no hyper_parameters['config']; a "
            "checkpoint of another project?): give one written by Genie-Long training"
        )
    state = stored.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{what} {path} holds no model weights (no state_dict): give one written by "
            "Genie-Long training"
        )
    odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise CheckpointError(
            f"{what} {path}: state_dict[{odd!r}] is not a tensor (not a checkpoint of ours?): "
            "give one written by Genie-Long training"
        )
    _verify_checksum(stored, state, path, what)
    _require_finite(state, path, what)
    return stored


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, every failure a CheckpointError."""
    try:
        with warnings.catch_warnings():  # raw pickles of protocol 4+ warn before they fail
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except PermissionError as err:
        raise CheckpointError(
            f"{what} {path} cannot be read ({err.strerror}): check its permissions"
        ) from None
    except Exception as err:  # torch raises many kinds for damaged files: all mean "unreadable"
        text = str(err)
        needed = re.search(r"GLOBAL ([\w.]+)", text)
        if isinstance(err, pickle.UnpicklingError) and needed:
            raise CheckpointError(
                f"{what} {path} was not loaded: it holds an object that only code can rebuild "
                f"({needed.group(1)}), so it may contain code, and none is ever run; give a "
                "checkpoint written by Genie-Long training (tensors and plain values only)"
            ) from None
        raise CheckpointError(
            f"{what} {path} is truncated or not a PyTorch checkpoint ({_reason(err)}); "
            f"nothing was loaded: {OTHER_CHECKPOINT}"
        ) from None


def _reason(err: Exception) -> str:
    """``Type: first sentence`` of a torch.load error (the weights-only unpickler's own line)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if found:
        text = found.group(1)
    first = text.strip().split("\n")[0].split(". ")[0].strip()
    if len(first) > 100:
        first = first[:99] + "…"
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _verify_checksum(
    stored: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path, what: str
) -> None:
    entry = stored.get(CHECKSUM_KEY)
    if entry is None:
        log.info(
            "%s has no checksum (written before checkpoints carried one): its weights are not "
            "verified",
            path,
        )
        return
    if not (
        isinstance(entry, Mapping)
        and entry.get("algorithm") == CHECKSUM_ALGORITHM
        and isinstance(entry.get("state_dict"), str)
    ):
        raise CheckpointError(
            f"{what} {path} has a damaged or unknown checksum entry ({CHECKSUM_KEY}): "
            f"{OTHER_CHECKPOINT}"
        )
    if state_dict_digest(state) != entry["state_dict"]:
        raise CheckpointError(
            f"{what} {path} is corrupted: its weights do not match its checksum "
            f"({CHECKSUM_ALGORITHM}; damaged on disk or in transfer): {OTHER_CHECKPOINT}"
        )


def _require_finite(state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not bad:
        return
    first = state[bad[0]]
    kinds = " and ".join(
        name
        for name, hit in (("NaN", torch.isnan(first).any()), ("inf", torch.isinf(first).any()))
        if hit
    )
    more = f" (and {len(bad) - 1} more parameters)" if len(bad) > 1 else ""
    raise CheckpointError(
        f"{what} {path} has non-finite weights: {bad[0]} holds {kinds}{more} (the run had "
        "diverged?): use an earlier checkpoint"
    )


@dataclass(frozen=True)
class TrainedModel:
    """A denoiser (eval mode) with its schedule, what its output means (noise scale and
    prediction target), the config it was built from, its checkpoint file and the SHA-256 of
    that checkpoint's weights (:func:`state_dict_digest`: the checksum it carries, or computed
    for a checkpoint written before checksums existed)."""

    model: GenieDenoiser
    schedule: DiffusionSchedule
    config: GenieConfig
    path: Path
    weights_sha256: str
    parametrisation: Parametrisation = field(default_factory=Parametrisation)


def read_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    overrides: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """The trained model of a checkpoint (read and checked by :func:`load_checkpoint_file`).

    Args:
        path: a ``.ckpt`` written by training (or with the same layout).
        map_location: where the model is placed.
        overrides: config keys to change before the model is built (e.g. chunk sizes for
            sampling); they must not change the parameters.

    Raises:
        CheckpointError: the file is missing, unreadable, refused, not ours, corrupted, holds
            non-finite weights, or weights that do not fit the model of its config.
        ConfigError: its config is not valid.
    """
    path = Path(path)
    stored = load_checkpoint_file(path)
    state = stored["state_dict"]
    config = config_from_dict(GenieConfig, stored["hyper_parameters"]["config"], source=str(path))
    if overrides:
        config = dataclasses.replace(config, **overrides)
    model = build_denoiser(config)
    weights = {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        detail = " ".join(str(err).split())  # one line
        detail = detail if len(detail) <= 300 else detail[:299] + "…"
        raise CheckpointError(
            f"checkpoint {path}: the weights do not fit the model of its config ({detail}); "
            f"its config or weights were edited? {OTHER_CHECKPOINT}"
        ) from None
    model.to(map_location).eval()
    schedule = build_schedule(config).to(map_location)
    entry = stored.get(CHECKSUM_KEY)  # verified by load_checkpoint_file where present
    digest = entry["state_dict"] if entry is not None else state_dict_digest(state)
    return TrainedModel(model=model, schedule=schedule, config=config, path=path,
                        weights_sha256=digest,
                        parametrisation=build_parametrisation(config))  # fmt: skip
