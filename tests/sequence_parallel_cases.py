"""Sequence-parallel checks run in a group of CPU processes (gloo) started from a test.

:func:`run_group` starts ``world`` processes (``torch.multiprocessing`` spawn, ``file://``
rendezvous), each runs one function of this module and saves what it returns; the test compares.
The functions compute the unsharded reference themselves (every process holds the same weights,
seeded alike) and the sharded result, gathered, so that a test compares whole chains: outputs,
the sum over processes of every parameter gradient, input gradients, losses, samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import SPARSE_TINY, denoiser_batch, randomize_

from genie.distributed.mesh import end_process_group

SPARSE = ["useSparseKNN=True", "useFlashMode=True", "knnStrategy=hybrid", "useLocalEdgeBias=True",
          "useSpatialBias=True"]  # fmt: skip
MODELS = {
    # stage 3 V2: k-NN edges, triangle updates, FlashIPA on pooled factors, local edge attention
    "stage3v2": SPARSE + SPARSE_TINY,
    # stage 4: + axial attention (and triangle attention with its bias), layer checkpointing,
    # weight sharing
    "stage4": SPARSE + SPARSE_TINY + [
        "useAxialAttention=True", "includeTriangularAttention=True",
        "useGradientCheckpointing=True", "checkpointingStrategy=adaptive",
        "adaptiveCheckpointFraction=0.8", "useModelCompression=True",
        "compressionStrategy=adjacent", "compressionRatio=2",
    ],
    # mHC + FlashIPA on factorised pairs with k-NN environment features and factor transitions
    "mhc_flash": SPARSE_TINY + [
        "useFactorizedPairs=True", "useFlashMode=True", "useMHCMode=True", "mhcExpansionRate=2",
        "useKnnEnvironmentFeatures=True", "knnStrategy=coordinate", "zFactorRank=2",
        "includeTriangularMultiplicativeUpdate=False",
    ],
}  # fmt: skip
LENGTH, PADDED = 13, 3  # residues per chain (not a multiple of 2 or 3); padding of the last chain


def run_group(fn: Callable[..., Any], world: int, folder: Path, *args: Any) -> list[Any]:
    """``fn(rank, world, *args)`` in ``world`` processes of one gloo group; their results."""
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_entry, args=(fn, world, str(folder), args), nprocs=world, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _entry(rank: int, fn: Callable[..., Any], world: int, folder: str, args: tuple) -> None:
    torch.set_num_threads(1)  # several processes share the machine's cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    init = f"file://{Path(folder) / 'rendezvous'}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
    except BaseException:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    end_process_group()  # (Lightning's teardown may have destroyed it already)
    torch.save(result, Path(folder) / f"rank{rank}.pt")


def tiny_model(name: str, *extra: str):
    from genie.config import load_config
    from genie.model.build import build_denoiser

    model = build_denoiser(load_config(None, MODELS[name] + list(extra)), announce=False)
    return randomize_(model, scale=0.2, seed=1).double()


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _summed(grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for g in grads.values():
        dist.all_reduce(g)
    return grads


def forward_backward(rank: int, world: int) -> dict[str, Any]:
    """Per model: the unsharded and the sharded (gathered) ε̂, parameter gradients (sharded:
    summed over the group) and input gradients, of a random linear function of ε̂."""
    from genie.distributed import SequenceShards, pad_residues, padded_length, sequence_parallel

    layout = SequenceShards(dist.group.WORLD)
    # chain 0: 13 residues, the last shard holds padding too; chain 1: 3 residues, the last
    # shard holds padding only
    x, t, mask = denoiser_batch(n=LENGTH, b=2, seed=3, pad_last=LENGTH - 3)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    n = padded_length(LENGTH, world)
    own = layout.own(n)
    results = {}
    for name in MODELS:
        model = tiny_model(name).eval()
        x_ref = x.clone().requires_grad_()
        ref = model(x_ref, t, mask)
        (ref * weights).sum().backward()
        ref_grads = _gradients(model)
        model.zero_grad()
        x_own = pad_residues(x, n)[:, own].clone().requires_grad_()
        with sequence_parallel(model, layout):
            out = model(x_own, t, pad_residues(mask, n)[:, own])
            (out * pad_residues(weights, n)[:, own]).sum().backward()
            out_whole = layout.gather(out.detach())[:, :LENGTH]
            x_grad = layout.gather(x_own.grad)[:, :LENGTH]
        results[name] = dict(
            out=out_whole, ref=ref.detach(), grads=_summed(_gradients(model)), ref_grads=ref_grads,
            x_grad=x_grad, ref_x_grad=x_ref.grad, local_residues=x_own.shape[1],
        )  # fmt: skip
    return results


def _objective(model, batch, *, layout, generator, distance: bool):
    """:func:`genie.training.objective.denoising_losses` of a tiny schedule, as the module
    calls it (``useMHCLoss`` with chunked pairs when ``distance``)."""
    from genie.diffusion import DEFAULT_CUTOFFS, DiffusionSchedule
    from genie.training.objective import DistanceLoss, denoising_losses

    term = DistanceLoss(weights=(0.5, 1.0, 2.0), cutoffs=DEFAULT_CUTOFFS, chunk_size=4)
    return denoising_losses(
        model, DiffusionSchedule(num_timesteps=100).double(), batch, layout=layout,
        loss_type="l2", distance=term if distance else None, generator=generator,
    )  # fmt: skip


def loss_batch() -> dict[str, torch.Tensor]:
    x, _, mask = denoiser_batch(n=LENGTH, b=2, seed=3, pad_last=PADDED)
    residue_index = torch.arange(LENGTH).expand(2, LENGTH) + 7
    return {"coords": x, "mask": mask, "residue_index": residue_index}


def losses(rank: int, world: int) -> dict[str, Any]:
    """The objective with the multi-scale distance loss (chunked): unsharded terms and gradients
    vs the sharded whole-batch terms and the sum of the shares' gradients."""
    from genie.distributed import SequenceShards, sequence_parallel
    from genie.model.layout import WHOLE_CHAIN

    model, batch = tiny_model("stage3v2"), loss_batch()
    ref = _objective(model, batch, layout=WHOLE_CHAIN, generator=torch.Generator().manual_seed(0),
                     distance=True)  # fmt: skip
    ref.objective.backward()
    ref_grads = _gradients(model)
    model.zero_grad()
    layout = SequenceShards(dist.group.WORLD)
    with sequence_parallel(model, layout):
        sharded = _objective(model, batch, layout=layout,
                             generator=torch.Generator().manual_seed(0), distance=True)  # fmt: skip
        sharded.objective.backward()
    keys = ("total", "noise", "distance", "per_chain", "t")
    return dict(
        ref={k: getattr(ref, k).detach() for k in keys},
        sharded={k: getattr(sharded, k) for k in keys},
        share=sharded.objective.detach(), grads=_summed(_gradients(model)), ref_grads=ref_grads,
    )  # fmt: skip


def diverged_streams(rank: int, world: int) -> str:
    """Processes that draw different timesteps for one batch: the error message."""
    from genie.distributed import SequenceShards, sequence_parallel

    model, layout = tiny_model("stage3v2"), SequenceShards(dist.group.WORLD)
    with sequence_parallel(model, layout):
        try:
            _objective(model, loss_batch(), layout=layout,
                       generator=torch.Generator().manual_seed(rank), distance=False)  # fmt: skip
        except RuntimeError as error:
            return str(error)
    return "no error"


def dropout(rank: int, world: int) -> dict[str, Any]:
    """ε̂ in training mode (dropout on, a length divisible by the shards): sharded vs unsharded
    from the same random stream, and the eval-mode ε̂ (to show the masks matter)."""
    from genie.distributed import SequenceShards, sequence_parallel

    layout = SequenceShards(dist.group.WORLD)
    model = tiny_model("stage3v2", "triangularDropout=0.25", "ipaDropout=0.1",
                       "structureTransitionDropout=0.1").train()  # fmt: skip
    x, t, mask = denoiser_batch(n=4 * world, b=2, seed=5)
    with torch.no_grad():
        torch.manual_seed(3)
        ref = model(x, t, mask)
        with sequence_parallel(model, layout):
            torch.manual_seed(3)
            own = layout.own(x.shape[1])
            out = layout.gather(model(x[:, own], t, mask[:, own]))
        evaluated = model.eval()(x, t, mask)
    return dict(out=out, ref=ref, eval=evaluated)


def sampling(rank: int, world: int) -> dict[str, Any]:
    """DDPM (6 steps, graph rebuilt every 2, trajectory every 2, re-centred every step) of two
    chains of different lengths with the length-aware noise scale: the single-process loop on
    the raw model (an ε model's output is the loop's noise) vs
    :func:`genie.sampling.sharded.sample_sharded`."""
    from genie.diffusion.noise_scale import NoiseScale
    from genie.diffusion.parametrisation import Parametrisation
    from genie.diffusion.schedule import DiffusionSchedule
    from genie.sampling.chains import ChainBatch
    from genie.sampling.ddpm import DDPMSampler
    from genie.sampling.reverse import reverse_process
    from genie.sampling.sharded import sample_sharded

    model = tiny_model("stage3v2").eval()
    schedule = DiffusionSchedule(num_timesteps=6)
    sampler = DDPMSampler(schedule=schedule, temperature=0.6)
    parametrisation = Parametrisation(noise=NoiseScale(kind="length"))
    lengths, seeds = [LENGTH, LENGTH - PADDED - 1], [5, 7]
    kwargs = dict(knn_update_frequency=2, trajectory_every=2, recentre=True)
    scales = parametrisation.noise.sampling(lengths)
    chains = ChainBatch(lengths=lengths, seeds=seeds, scales=scales)
    one = reverse_process(model, sampler, chains, **kwargs)
    sharded = sample_sharded(model, group=dist.group.WORLD, schedule=schedule,
                             parametrisation=parametrisation, sampler=sampler, lengths=lengths,
                             seeds=seeds, **kwargs)  # fmt: skip
    return dict(one=one, sharded=sharded, scales=scales)


def graphs(rank: int, world: int) -> dict[str, Any]:
    """Per k-NN strategy: the graph built on the shards vs the unsharded one."""
    from genie.distributed import SequenceShards, pad_residues, padded_length
    from genie.geometry.graph import build_knn_graph

    layout = SequenceShards(dist.group.WORLD)
    x, _, mask = denoiser_batch(n=LENGTH, b=2, seed=8, pad_last=PADDED)
    index = torch.arange(LENGTH).expand(2, LENGTH)
    n = padded_length(LENGTH, world)
    x, mask, index = (pad_residues(v, n) for v in (x, mask, index))
    own = layout.own(n)
    results = {}
    for strategy in ("coordinate", "sequence", "hybrid"):
        options = dict(k=5, strategy=strategy, chunk_size=2)
        sharded = layout.knn_graph(x[:, own], mask[:, own], index[:, own], **options)
        ref = build_knn_graph(x, mask, index, **options)
        results[strategy] = {key: (getattr(sharded, key), getattr(ref, key))
                             for key in ("index", "valid", "offsets")}  # fmt: skip
    return results


def suite(rank: int, world: int) -> dict[str, Any]:
    """Every check above, in one group (process start-up dominates the cost)."""
    checks = (graphs, forward_backward, losses, diverged_streams, dropout, sampling)
    return {fn.__name__: fn(rank, world) for fn in checks}


# --- training through Lightning (imports pytorch_lightning: a group of its own) -----------------


def module_training_step(rank: int, world: int) -> dict[str, Any]:
    """GenieModule on a data × sequence mesh as ModelParallelStrategy builds it: configure_model
    (shards, DDP replication), training_step and backward; the gradients after DDP's all-reduce
    vs the unsharded step's."""
    import copy

    from torch.distributed.device_mesh import init_device_mesh

    from genie.config import load_config
    from genie.training.module import GenieModule
    from genie.training.sequence_parallel import DATA_DIM, SEQUENCE_DIM

    config = load_config(None, MODELS["stage3v2"] + ["numTimesteps=100", "useMHCLoss=True"])
    module = GenieModule(config)
    randomize_(module.model, scale=0.2, seed=1)
    reference = copy.deepcopy(module)
    batch = {k: v.float() if v.is_floating_point() else v for k, v in loss_batch().items()}
    torch.manual_seed(11)
    reference.training_step(batch, 0).backward()
    mesh = init_device_mesh("cpu", (1, world), mesh_dim_names=(DATA_DIM, SEQUENCE_DIM))
    module._device_mesh = mesh
    module.configure_model()
    torch.manual_seed(11)  # one stream on every process, as BatchSeedCallback makes it
    module.training_step(batch, 0).backward()
    return dict(grads=_gradients(module), ref_grads=_gradients(reference),
                shards=module.model.sequence_layout.num_shards)  # fmt: skip
