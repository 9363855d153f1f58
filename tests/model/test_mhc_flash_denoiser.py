"""FlashIPA and mHC in the whole denoiser: invariance, padding, n = 1, streams that separate."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_MODEL, helix_trace, random_rotation, randomize_
from torch.testing import assert_close

from genie.config import ConfigError, load_config
from genie.model.build import build_denoiser, mHCFlashDenoiser
from genie.model.structure.hyper_layer import HyperStructureLayer

FLASH = [
    "useFactorizedPairs=True", "includeTriangularMultiplicativeUpdate=False", "useFlashMode=True",
    "zFactorRank=2", "pairFactorDim=6", "ipaDropout=0", "structureTransitionDropout=0",
]  # fmt: skip


def model(*extra, seed=0):
    m = build_denoiser(load_config(None, TINY_MODEL + FLASH + list(extra)))
    return randomize_(m, scale=0.2, seed=seed).double().eval()


@pytest.mark.parametrize("mhc", [[], ["useMHCMode=True", "mhcExpansionRate=3"]])
def test_rotates_with_input_and_ignores_padding(mhc):
    net = model(*mhc)
    gen = torch.Generator().manual_seed(1)
    x = torch.stack([helix_trace(12, generator=gen) for _ in range(2)]).double() * 1.5
    t, mask = torch.tensor([5, 900]), torch.ones(2, 12, dtype=torch.float64)
    q = random_rotation(gen, torch.float64)
    with torch.no_grad():
        eps = net(x, t, mask)
        moved = net(x @ q.T + 11.0, t, mask)
        padded = net(torch.cat([x, 40 * torch.randn(2, 3, 3, dtype=torch.float64)], 1), t,
                     torch.cat([mask, torch.zeros(2, 3, dtype=torch.float64)], 1))  # fmt: skip
    assert eps.abs().max() > 1e-3
    assert_close(moved, eps @ q.T)
    assert_close(padded[:, :12], eps)


def test_one_stream_is_the_plain_pre_ln_residual_layer():
    net = model("useMHCMode=True", "mhcExpansionRate=1", seed=2)
    layer = net.structure.layers[0]
    assert isinstance(layer, HyperStructureLayer)
    gen = torch.Generator().manual_seed(2)
    x = helix_trace(10, generator=gen)[None].double()
    mask = torch.ones(1, 10, dtype=torch.float64)
    s, pair = net.pair_encoder(net.single_features(torch.arange(10)[None], torch.tensor([3]), mask),
                               x, torch.arange(10)[None], mask)  # fmt: skip
    from genie.geometry import frenet_serret_frames

    frames = frenet_serret_frames(x, mask).scale_translation(0.1)
    with torch.no_grad():
        streams, new_frames = layer(s[:, :, None], pair, frames, mask)
        h = s + layer.ipa(layer.ipa_norm(s), pair, frames, mask)  # plain pre-LN residuals
        h = h + layer._transition(h)
    assert_close(streams[:, :, 0], h, rtol=0, atol=0)
    update = layer.backbone_update(layer.readout_norm(h))
    assert_close(new_frames.trans, frames.compose(update).trans)


def test_streams_differ_after_one_optimiser_step():
    net = build_denoiser(load_config(None, TINY_MODEL + FLASH + ["useMHCMode=True"]))
    x = helix_trace(10, generator=torch.Generator().manual_seed(3))[None] * 1.5
    t, mask = torch.tensor([200]), torch.ones(1, 10)

    def stream_spread() -> float:
        captured = {}
        hook = net.structure.layers[-1].register_forward_hook(
            lambda m, i, o: captured.update(x=o[0])
        )
        with torch.no_grad():
            net.eval()(x, t, mask)
        hook.remove()
        streams = captured["x"][0]  # [n, s, c]
        return (streams - streams.mean(1, keepdim=True)).abs().max().item()

    # Fresh: the branches' output layers start at zero, so the copied streams differ only by
    # H_res's Sinkhorn tolerance (rows sum to 1 within ~1e-4).
    before = stream_spread()
    assert before < 1e-3
    # The first step only moves the (zero-initialised) frame update, through which every other
    # gradient flows; from the second step on the branches write differently to each stream.
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        net.train()(x, t, mask).square().sum().backward()
        opt.step()
    assert stream_spread() > 5 * before


def test_mhc_flash_denoiser_forces_both_toggles_and_keeps_overrides():
    net = mHCFlashDenoiser(load_config(None, TINY_MODEL + ["pairFactorDim=6"]), mhcExpansionRate=2)
    assert net.config.useFlashMode and net.config.useMHCMode and net.config.useFactorizedPairs
    assert net.structure.expansion_rate == 2
    out = net(helix_trace(9)[None], torch.tensor([10]), torch.ones(1, 9))
    assert out.shape == (1, 9, 3)


def test_flash_mode_needs_factorised_pairs():
    with pytest.raises(ConfigError, match="useFlashMode needs useFactorizedPairs"):
        load_config(None, ["useFlashMode=True"])


@pytest.mark.parametrize("config", ["train_mhc_flash", "train_mhc", "train_stage3"])
def test_trains_under_bf16_autocast_with_fp32_geometry(config):
    from pathlib import Path

    from genie.training.module import GenieModule

    path = Path(__file__).resolve().parents[2] / "configs" / f"{config}.config"
    module = GenieModule(load_config(path, TINY_MODEL + ["pairFactorDim=6"]))
    frames = []
    hook = module.model.structure.layers[0].backbone_update.register_forward_hook(
        lambda m, i, o: frames.append(o)
    )
    batch = {"coords": helix_trace(20)[None] * 1.5, "mask": torch.ones(1, 20)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.compute_loss(batch)
    loss.backward()
    hook.remove()
    assert torch.isfinite(loss)
    assert frames[0].rots.dtype == torch.float32 and frames[0].trans.dtype == torch.float32


def test_rank_above_two_is_refused_at_default_sizes():
    flash = ["useFactorizedPairs=True", "useFlashMode=True",
             "includeTriangularMultiplicativeUpdate=False"]  # fmt: skip
    build_denoiser(load_config(None, flash + ["zFactorRank=2"]))
    with pytest.raises(ValueError, match="head dim 328 exceeds 256.*zFactorRank"):
        build_denoiser(load_config(None, flash + ["zFactorRank=3"]))
