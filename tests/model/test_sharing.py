"""Parameter sharing: groups, parameter counts by hand, one state_dict key per shared weight,
save/reload, accumulated gradients, and the config wiring (with layer checkpointing) of every
training config."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL, helix_trace, randomize_, tiny_train_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.testing import assert_close

from genie.config import load_config
from genie.model.build import build_denoiser
from genie.model.dense.layer import PairTransformLayer
from genie.model.factor.layer import FactorPairLayer
from genie.model.sharing import LayerSharing, SharedLayers, shared_layers, sharing_groups
from genie.model.stack import PairStack
from genie.training.module import load_module
from genie.training.run import train

REPO = Path(__file__).resolve().parents[2]
PAIR = dict(c_p=6, triangle_mul=True, triangle_att=True, c_hidden_mul=4, c_hidden_att=3,
            n_heads_att=2, dropout=0.0, transition_n=2)  # fmt: skip
FACTOR = dict(c_f=4, rank=2, update_rank=2, c_hidden_att=3, n_heads_att=2, transition_n=2,
              attention_chunk_size=None)  # fmt: skip


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def pair_stack(n_layers: int, strategy: str = "none", ratio: int = 1) -> PairStack:
    sharing = LayerSharing(strategy=strategy, ratio=ratio)
    layers = sharing.triangle_layers(
        lambda _: PairTransformLayer(**PAIR), n_layers=n_layers, n_triangle_layers=n_layers
    )
    return randomize_(PairStack(layers=layers), seed=n_layers).double()


def pair_input(n=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, n, n, PAIR["c_p"], generator=gen, dtype=torch.float64)
    mask = torch.ones(2, n, n, dtype=torch.float64)
    mask[1, -2:, :] = mask[1, :, -2:] = 0
    return z, mask


@pytest.mark.parametrize(
    ("n", "strategy", "ratio", "segments", "expected"),
    [
        (4, "none", 3, None, (0, 1, 2, 3)),
        (4, "universal", 1, None, (0, 0, 0, 0)),
        (7, "adjacent", 3, None, (0, 0, 0, 1, 1, 1, 2)),
        (4, "adjacent", 1, None, (0, 1, 2, 3)),
        (5, "universal", 1, (2, 3), (0, 0, 1, 1, 1)),
        (5, "adjacent", 2, (3, 2), (0, 0, 1, 2, 2)),
        (3, "adjacent", 2, (0, 3), (0, 0, 1)),
        (0, "universal", 1, None, ()),
    ],
)
def test_sharing_groups(n, strategy, ratio, segments, expected):
    assert sharing_groups(n, strategy=strategy, ratio=ratio, segments=segments) == expected


def test_sharing_rejects_bad_arguments():
    with pytest.raises(ValueError, match="compressionStrategy: unknown 'all'"):
        LayerSharing(strategy="all")
    with pytest.raises(ValueError, match="compressionRatio must be at least 1"):
        LayerSharing(strategy="adjacent", ratio=0)
    with pytest.raises(ValueError, match="do not sum to n_layers=4"):
        sharing_groups(4, strategy="universal", segments=(1, 2))


def test_no_sharing_is_a_plain_module_list_with_unchanged_keys():
    for sharing in (LayerSharing(), LayerSharing(strategy="adjacent", ratio=1)):
        layers = sharing.layers(lambda i: nn.Linear(3, 3), 2)
        assert type(layers) is nn.ModuleList
        assert list(layers.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert type(shared_layers(lambda i: nn.Linear(3, 3), 1, strategy="universal")) is nn.ModuleList


@pytest.mark.parametrize(("strategy", "ratio", "unique"), [
    ("none", 1, 5), ("universal", 1, 1), ("adjacent", 2, 3), ("adjacent", 3, 2),
    ("adjacent", 5, 1),
])  # fmt: skip
def test_pair_stack_parameter_count(strategy, ratio, unique):
    per_layer = count(PairTransformLayer(**PAIR))
    assert count(pair_stack(5, strategy, ratio)) == unique * per_layer


def test_factor_stack_never_shares_across_triangle_and_plain_layers():
    triangle = count(FactorPairLayer(triangle_mul=True, triangle_att=True, **FACTOR))
    plain = count(FactorPairLayer(triangle_mul=False, triangle_att=False, **FACTOR))
    assert triangle > plain

    def stack(strategy, ratio=1):
        sharing = LayerSharing(strategy=strategy, ratio=ratio)
        layers = sharing.triangle_layers(
            lambda t: FactorPairLayer(triangle_mul=t, triangle_att=t, **FACTOR),
            n_layers=5, n_triangle_layers=2,
        )  # fmt: skip
        return PairStack(layers=layers)

    assert count(stack("none")) == 2 * triangle + 3 * plain
    assert count(stack("universal")) == triangle + plain
    assert count(stack("adjacent", 2)) == triangle + 2 * plain  # groups (0,1) | (2,3), (4)
    layers = stack("universal").layers
    assert [len(layer.updates) for layer in layers] == [4, 4, 0, 0, 0]


def test_shared_positions_are_one_module_and_give_identical_outputs():
    stack = pair_stack(4, "adjacent", 2)
    assert isinstance(stack.layers, SharedLayers) and len(stack.layers) == 4
    assert stack.layers[0] is stack.layers[1] and stack.layers[2] is stack.layers[3]
    z, mask = pair_input()
    with torch.no_grad():
        outputs = [layer(z, mask) for layer in stack.layers]
    assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert_close(outputs[2], outputs[3], rtol=0, atol=0)
    assert (outputs[0] - outputs[2]).abs().max() > 1e-3  # the two groups have their own weights


def test_state_dict_holds_each_shared_weight_once():
    stack = pair_stack(4, "universal")
    one_layer = list(PairTransformLayer(**PAIR).state_dict())
    assert list(stack.state_dict()) == [f"layers.unique.0.{key}" for key in one_layer]
    adjacent = pair_stack(5, "adjacent", 2).state_dict()
    assert {key.split(".")[2] for key in adjacent} == {"0", "1", "2"}


def test_shared_gradients_accumulate_over_uses_and_one_step_updates_once():
    shared = pair_stack(3, "universal")
    copies = pair_stack(3)  # three independent layers holding the shared layer's weights
    for layer in copies.layers:
        layer.load_state_dict(shared.layers[0].state_dict())
    z, mask = pair_input()
    weights = torch.randn_like(z)
    for model in (shared, copies):
        (model(z, mask, n=z.shape[1]) * weights).sum().backward()
    names = [name for name, _ in shared.layers[0].named_parameters()]
    summed = {
        name: sum(dict(layer.named_parameters())[name].grad for layer in copies.layers)
        for name in names
    }
    for name, p in shared.layers[0].named_parameters():
        assert_close(p.grad, summed[name], msg=name)
    before = {name: p.detach().clone() for name, p in shared.named_parameters()}
    optimizer = torch.optim.SGD(shared.parameters(), lr=0.1)
    assert len(optimizer.param_groups[0]["params"]) == len(names)  # each shared weight once
    optimizer.step()
    for name, p in shared.layers[0].named_parameters():
        assert_close(p.detach(), before[f"layers.unique.0.{name}"] - 0.1 * summed[name], msg=name)


# --- whole models ------------------------------------------------------------------------------

FLASH_MHC = [
    "useFactorizedPairs=True", "includeTriangularMultiplicativeUpdate=False", "useFlashMode=True",
    "zFactorRank=2", "pairFactorDim=6", "useMHCMode=True", "mhcExpansionRate=2",
]  # fmt: skip
DEPTHS = ["numPairTransformLayers=3", "structureEncoderDepth=4"]


def denoiser(*extra: str):
    return build_denoiser(load_config(None, TINY_MODEL + DEPTHS + list(extra)))


@pytest.mark.parametrize("variant", [[], FLASH_MHC], ids=["dense", "flash_mhc"])
def test_denoiser_parameter_count_by_hand(variant):
    plain = denoiser(*variant)
    per_pair = count(plain.pair_encoder.stack.layers[0])
    per_structure = count(plain.structure.layers[0])
    transitions = plain.structure.factor_transitions
    per_transition = count(transitions[0]) if transitions is not None else 0
    # universal: 3 pair layers -> 1, 4 structure layers -> 1, 3 factor transitions -> 1
    universal = denoiser(*variant, "useModelCompression=True", "compressionStrategy=universal")
    assert universal.num_parameters() == (
        plain.num_parameters() - 2 * per_pair - 3 * per_structure - 2 * per_transition
    )
    # adjacent, ratio 2: pair 3 -> 2, structure 4 -> 2, factor transitions 3 -> 2
    adjacent = denoiser(*variant, "useModelCompression=True", "compressionRatio=2")
    assert adjacent.num_parameters() == (
        plain.num_parameters() - per_pair - 2 * per_structure - per_transition
    )


def test_mhc_shared_layers_keep_their_first_positions_initialisation():
    three = [*FLASH_MHC, "mhcExpansionRate=3"]
    model = denoiser(*three, "useModelCompression=True", "compressionRatio=2")
    layers = model.structure.layers
    assert layers.positions == (0, 0, 1, 1)
    # Each unique layer is built for the first position of its group (layer_index 0 and 2): its
    # branches initially read streams 2·0 = 0, 2·0+1 = 1 and (2·2, 2·2+1) mod 3 = (1, 2), as the
    # unshared model's layers 0 and 2 do.
    plain = denoiser(*three)
    for unique, position in zip(layers.unique, (0, 2), strict=True):
        for branch in ("hc_ipa", "hc_transition"):
            expected = getattr(plain.structure.layers[position], branch).b_pre
            assert_close(getattr(unique, branch).b_pre, expected, msg=branch)
    assert layers.unique[1].hc_ipa.b_pre.argmax() == 1


def test_saved_and_reloaded_denoiser_equals_the_original():
    extra = [
        "useModelCompression=True",
        "compressionStrategy=universal",
        "useGradientCheckpointing=True",
    ]
    model = randomize_(denoiser(*FLASH_MHC, *extra), seed=4).double().eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = denoiser(*FLASH_MHC, *extra).double().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))  # strict
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([helix_trace(9, generator=gen) for _ in range(2)]).double()
    t, mask = torch.tensor([5, 900]), torch.ones(2, 9, dtype=torch.float64)
    with torch.no_grad():
        assert_close(fresh(x, t, mask), model(x, t, mask), rtol=0, atol=0)


CONFIGS = ["train_baseline", "train_stage1", "train_stage2", "train_stage3", "train_flash",
           "train_mhc", "train_mhc_flash"]  # fmt: skip
SMALL = TINY_MODEL + ["pairFactorDim=6", "kNeighbors=4", "useMixedPrecision=False",
                      "triangularMultiplicativeHiddenDimension=8"]  # fmt: skip


@pytest.mark.parametrize("name", CONFIGS)
def test_existing_configs_build_and_train_with_sharing_and_checkpointing(name):
    keys = ["useModelCompression=True", "compressionStrategy=universal",
            "useGradientCheckpointing=True", "checkpointingStrategy=adaptive"]  # fmt: skip
    cfg = load_config(REPO / "configs" / f"{name}.config", SMALL + keys)
    model = build_denoiser(cfg)
    plain = build_denoiser(load_config(REPO / "configs" / f"{name}.config", SMALL))
    assert model.num_parameters() < plain.num_parameters()
    assert isinstance(model.structure.layers, SharedLayers)
    x = torch.stack([helix_trace(10) for _ in range(2)])
    t, mask = torch.tensor([3, 400]), torch.ones(2, 10)
    for _ in range(2):  # measuring step, then the adaptive choice
        model.zero_grad()
        model(x, t, mask).square().sum().backward()
        assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    assert model.structure.checkpointing.chosen(10)


def test_training_logs_parameter_count_and_checkpoint_reloads(tmp_path):
    cfg = tiny_train_config(tmp_path, "numEpochs=1", "useModelCompression=True",
                            "compressionStrategy=universal", "structureEncoderDepth=3",
                            "useGradientCheckpointing=True")  # fmt: skip
    trainer, module = train(cfg, enable_progress_bar=False, enable_model_summary=False)
    events = EventAccumulator(trainer.logger.log_dir)
    events.Reload()
    logged = events.Scalars("model/num_parameters")
    assert [e.value for e in logged] == [module.model.num_parameters()]
    loaded = load_module(Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt").eval()
    assert isinstance(loaded.model.structure.layers, SharedLayers)
    module.eval()
    x, t, mask = torch.randn(1, 10, 3) * 5, torch.tensor([50]), torch.ones(1, 10)
    with torch.no_grad():
        assert_close(loaded.model(x, t, mask), module.model(x, t, mask))
