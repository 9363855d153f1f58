"""The model builder: every shipped config keeps the parameters it had before genie/model was
reorganised (recorded at that commit), the encoder protocol, the k-NN graph of factorised
FlashIPA models, and the keys that switch the features useFlashMode used to add."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from helpers import SPARSE_TINY, TINY_MODEL, denoiser_batch, randomize_
from torch.testing import assert_close

from genie.config import ConfigError, GenieConfig, config_from_dict, load_config
from genie.geometry.knn import knn_graph
from genie.model import build_denoiser, mHCFlashDenoiser

REPO = Path(__file__).resolve().parents[2]
RECORDED = json.loads((Path(__file__).parent / "data" / "state_dict_6b9e3c7.json").read_text())
NO_DROPOUT = ["ipaDropout=0", "structureTransitionDropout=0", "triangularDropout=0"]
FACTOR_FLASH = ["useFactorizedPairs=True", "useFlashMode=True", "pairFactorDim=6",
                "includeTriangularMultiplicativeUpdate=False", "kNeighbors=5"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECORDED["models"]))
def test_shipped_configs_keep_their_parameter_names_and_shapes(name):
    """Checkpoints written before the reorganisation load: the same state_dict keys, in the same
    order, with the same shapes."""
    if name == "mHCFlashDenoiser()":
        model = mHCFlashDenoiser()
    else:
        model = build_denoiser(load_config(REPO / "configs" / f"{name}.config"))
    got = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert got == RECORDED["models"][name]


def tiny(*extra: str, seed: int = 0):
    model = build_denoiser(load_config(None, TINY_MODEL + NO_DROPOUT + list(extra)))
    return randomize_(model, scale=0.2, seed=seed).double().eval()


def sparse(*extra: str, seed: int = 0):
    cfg = load_config(REPO / "configs" / "train_stage3v2.config", SPARSE_TINY + list(extra))
    return randomize_(build_denoiser(cfg), scale=0.2, seed=seed).double().eval()


MODELS = {
    "dense": lambda: tiny(),
    "factor": lambda: tiny("useFactorizedPairs=True", "pairFactorDim=6",
                           "includeTriangularMultiplicativeUpdate=False"),
    "factor_flash": lambda: tiny(*FACTOR_FLASH),
    "sparse": lambda: sparse(),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_encoder_builds_its_graph_or_none_and_takes_it_back(kind):
    model = MODELS[kind]()
    x, t, mask = denoiser_batch(11, pad_last=3)
    graph = model.build_graph(x, mask)
    assert (graph is not None) == model.uses_graph == (kind in ("factor_flash", "sparse"))
    with torch.no_grad():
        own = model(x, t, mask)
        given = model(x, t, mask, graph=graph)
    assert_close(given, own, rtol=0, atol=0)
    assert own.abs().max() > 1e-3


def test_a_graph_for_a_model_without_one_is_refused():
    model = tiny()
    x, t, mask = denoiser_batch(9)
    graph = MODELS["sparse"]().build_graph(x, mask)
    with pytest.raises(ValueError, match="takes no k-NN graph"):
        model(x, t, mask, graph=graph)


def test_the_graph_is_complete_and_immutable():
    model = MODELS["sparse"]()
    x, _, mask = denoiser_batch(10)
    residue_index = torch.arange(10).expand(2, 10) * 2 + 7  # offsets in steps of 2
    graph = model.build_graph(x, mask, residue_index)
    expected = 2 * (graph.index - torch.arange(10)[None, :, None])
    assert torch.equal(graph.offsets, expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.offsets = None


@pytest.mark.parametrize("strategy", ["coordinate", "sequence", "hybrid"])
def test_factorised_flash_models_use_one_graph_of_the_configured_strategy(strategy):
    model = tiny(*FACTOR_FLASH, f"knnStrategy={strategy}")
    x, t, mask = denoiser_batch(12, pad_last=2)
    graph = model.build_graph(x, mask)
    index, valid = knn_graph(x, mask, k=5, strategy=strategy)
    assert torch.equal(graph.index, index) and torch.equal(graph.valid, valid)
    with torch.no_grad():  # the strategy reaches the output (a different graph, other features)
        other = "sequence" if strategy != "sequence" else "coordinate"
        swapped = model(x, t, mask, graph=tiny(*FACTOR_FLASH, f"knnStrategy={other}")
                        .build_graph(x, mask))  # fmt: skip
    assert not torch.allclose(model(x, t, mask), swapped)


def test_the_features_flash_mode_adds_have_their_own_keys():
    names = lambda model: set(model.state_dict())  # noqa: E731
    default = names(tiny(*FACTOR_FLASH))  # None: on, as useFlashMode used to imply
    assert any(k.startswith("pair_encoder.features.knn.") for k in default)
    assert any(k.startswith("structure.factor_transitions.") for k in default)
    off = names(tiny(*FACTOR_FLASH, "useKnnEnvironmentFeatures=False",
                     "useFactorTransitions=False"))  # fmt: skip
    assert not any("features.knn." in k or "factor_transitions" in k for k in off)
    assert not tiny(*FACTOR_FLASH, "useKnnEnvironmentFeatures=False").uses_graph
    # on for a factorised model with dense IPA, where useFlashMode would not switch them on
    plain = ["useFactorizedPairs=True", "pairFactorDim=6",
             "includeTriangularMultiplicativeUpdate=False"]  # fmt: skip
    on = names(tiny(*plain, "useKnnEnvironmentFeatures=True", "useFactorTransitions=True"))
    assert any("features.knn." in k for k in on) and any("factor_transitions" in k for k in on)


@pytest.mark.parametrize(("key", "message"), [
    ("useKnnEnvironmentFeatures", "useKnnEnvironmentFeatures is a feature of factorised pairs"),
    ("useFactorTransitions", "useFactorTransitions updates pair factors"),
])  # fmt: skip
def test_feature_keys_on_dense_pairs_are_refused(key, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"{key}=True"])


def test_checkpoints_of_earlier_versions_keep_their_k_nn_graph():
    """Before useKnnEnvironmentFeatures, factorised FlashIPA models searched the coordinate
    graph whatever knnStrategy said: such a stored config reads as knnStrategy coordinate."""
    stored = dataclasses.asdict(load_config(None, FACTOR_FLASH))  # knnStrategy hybrid
    for key in ("useKnnEnvironmentFeatures", "useFactorTransitions"):
        del stored[key]
    assert config_from_dict(GenieConfig, stored).knnStrategy == "coordinate"
    today = dataclasses.asdict(load_config(None, FACTOR_FLASH))
    assert config_from_dict(GenieConfig, today).knnStrategy == "hybrid"
    sparse_stored = dataclasses.asdict(load_config(REPO / "configs" / "train_stage3v2.config"))
    del sparse_stored["useKnnEnvironmentFeatures"]
    assert config_from_dict(GenieConfig, sparse_stored).knnStrategy == "hybrid"
