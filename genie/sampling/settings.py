"""The sampler a sampling config names (``samplingStrategy``, its stride, η, γ and start), the
phrase the summary line gives it, and the settings that sample provenance records
(:mod:`genie.sampling.provenance`)."""

from __future__ import annotations

from genie.checkpoint import TrainedModel
from genie.config import ConfigError, SampleConfig
from genie.diffusion.schedule import DiffusionSchedule
from genie.sampling.ddim import DDIMSampler
from genie.sampling.ddpm import DDPMSampler
from genie.sampling.renoise import RenoiseSampler
from genie.sampling.reverse import ReverseSampler
from genie.sampling.start import late_start


def build_sampler(cfg: SampleConfig, schedule: DiffusionSchedule) -> ReverseSampler:
    """The sampler the config names, on the model's schedule.

    Raises:
        ConfigError: a DDIM stride (``skipSteps``) not below the model's ``numTimesteps``, or a
            ``startTimestep`` above it or below every visited timestep.
    """
    start = cfg.startTimestep
    if start is not None and start > schedule.num_timesteps:
        raise ConfigError(f"startTimestep {start} exceeds the model's numTimesteps "
                          f"{schedule.num_timesteps}")  # fmt: skip
    try:
        if cfg.samplingStrategy == "ddpm":
            sampler = DDPMSampler(schedule=schedule, temperature=cfg.temperature)
        elif cfg.samplingStrategy == "renoise":
            sampler = RenoiseSampler(
                schedule=schedule, stride=cfg.skipSteps, temperature=cfg.temperature
            )
        else:
            sampler = DDIMSampler(schedule=schedule, stride=cfg.skipSteps, eta=cfg.ddimEta,
                                  temperature=cfg.temperature)  # fmt: skip
        return late_start(sampler, start)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def describe_sampler(cfg: SampleConfig, sampler: ReverseSampler) -> str:
    """One phrase for the summary line, e.g. ``ddim, stride 100, 10 steps, η 0, γ 0.6`` (and
    ``, from t = 950`` for a start below T)."""
    steps: int | str = len(sampler.timesteps())
    if cfg.startSignalShare is not None:
        steps = f"≤ {steps}"  # each batch starts at its own step
    start = "" if cfg.startTimestep is None else f", from t = {sampler.timesteps()[0]}"
    if cfg.startSignalShare is not None:
        start = f", from signal share {cfg.startSignalShare:g}"
    if cfg.samplingStrategy == "ddpm":
        return f"ddpm, {steps} steps, γ {cfg.temperature:g}{start}"
    stride = max(cfg.skipSteps, 1)
    if cfg.samplingStrategy == "renoise":
        return f"renoise, stride {stride}, {steps} steps, γ {cfg.temperature:g}{start}"
    return (f"ddim, stride {stride}, {steps} steps, η {cfg.ddimEta:g}, "
            f"γ {cfg.temperature:g}{start}")  # fmt: skip


def sampler_settings(cfg: SampleConfig, trained: TrainedModel, sampler: ReverseSampler) -> dict:
    """The settings of this run that change the samples, as the provenance records them."""
    return {
        "samplingStrategy": cfg.samplingStrategy,
        "temperature": cfg.temperature,
        "skipSteps": cfg.skipSteps,
        "ddimEta": cfg.ddimEta,
        "numTimesteps": trained.schedule.num_timesteps,
        "steps": len(sampler.timesteps()),
        "knnUpdateFrequency": cfg.knnUpdateFrequency,
        "recentre": cfg.recentre,
        "parametrisation": trained.parametrisation.describe(),
        "modelOverrides": cfg.model_overrides(),
        # only when set: records written before the key existed still match a start at T
        **{
            k: v
            for k in ("startTimestep", "startSignalShare")
            if (v := getattr(cfg, k)) is not None
        },  # fmt: skip
    }
