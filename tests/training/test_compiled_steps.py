"""Which steps of a training run go through ``torch.compile`` (``compileModel``): training
steps do, validation does not (genie.training.module.GenieModule.denoise)."""

from __future__ import annotations

from helpers import tiny_train_config

import genie.training.module as module_file
from genie.training.run import train


class SpyCompiled:
    """Stands in for CompiledDenoiser: counts the calls and runs the module eagerly."""

    calls: list[str] = []

    def __init__(self, model, *, mode: str):
        self.model = model
        self.mode = mode

    def __call__(self, *args, **kwargs):
        SpyCompiled.calls.append("train" if self.model.training else "eval")
        return self.model(*args, **kwargs)


def test_training_steps_are_compiled_and_validation_is_eager(tmp_path, monkeypatch):
    monkeypatch.setattr(module_file, "CompiledDenoiser", SpyCompiled)
    modes = []
    cfg = tiny_train_config(tmp_path, "compileModel=default", "numEpochs=1")
    SpyCompiled.calls = []
    original = module_file.GenieModule.denoise

    def counting(self, *args, **kwargs):
        modes.append(self.training)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(module_file.GenieModule, "denoise", counting)
    train(cfg)
    trained = sum(modes)  # denoise calls in training steps
    validated = len(modes) - trained
    assert trained == 2 and validated > 0  # tiny_train_config: 2 steps per epoch
    assert SpyCompiled.calls == ["train"] * trained  # validation never reached the compiled path
