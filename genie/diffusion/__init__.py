"""Diffusion process: schedule, noising and losses."""

from genie.diffusion.distance_loss import (
    DEFAULT_CUTOFFS,
    distance_error_sums,
    distance_errors,
    multiscale_distance_loss,
    per_chain_distance_loss,
)
from genie.diffusion.losses import noise_loss, per_chain_loss
from genie.diffusion.schedule import DiffusionSchedule, cosine_alpha_bar

__all__ = [
    "DEFAULT_CUTOFFS",
    "DiffusionSchedule",
    "cosine_alpha_bar",
    "distance_error_sums",
    "distance_errors",
    "multiscale_distance_loss",
    "noise_loss",
    "per_chain_distance_loss",
    "per_chain_loss",
]
