"""The model keys of the training configuration (:class:`~genie.config.schema.GenieConfig`
inherits them): features, pair representations and stacks, FlashIPA, mHC, sparse k-NN pairs,
checkpointing, sharing, the structure stack and the chunk sizes of the dense operations.
``genie/model/build.py`` reads them all.
"""

from __future__ import annotations

import dataclasses

from genie.config.fields import (
    MAX_DIMENSION,
    MAX_LAYERS,
    MAX_RESIDUES,
    MAX_STEPS,
    option,
)

# Model keys that a resumed run may change (``--resume``, genie/training/from_checkpoint.py): they
# change memory and speed only (chunk sizes, layer recomputation, attention kernels: the same
# function up to rounding), the regularisation (dropout rates) or the initialisation (mhcAlphaInit:
# the checkpoint's weights replace it). Every other model key, and numTimesteps and schedule,
# defines what the trained weights compute, so a resume refuses a change of it.
RESUMABLE_MODEL_KEYS = frozenset(
    {
        "triangleChunkSize", "axialRowChunkSize", "axialColChunkSize",
        "triangleAttentionChunkSize", "sparseChunkSize", "knnChunkSize", "ipaChunkSize",
        "useGradientCheckpointing", "checkpointingStrategy", "checkpointEveryNLayers",
        "checkpointModules", "adaptiveCheckpointFraction",
        "flashBackend", "flashQKDtype", "useFlashAttn3",
        "triangularDropout", "ipaDropout", "structureTransitionDropout",
        "mhcAlphaInit",
    }
)  # fmt: skip


@dataclasses.dataclass
class ModelKeys:
    """The keys that define the denoiser (a part of :class:`~genie.config.schema.GenieConfig`)."""

    # --- model: features ----------------------------------------------------------------------
    singleFeatureDimension: int = option(
        128, "c_s, single representation channels", min=1, max=MAX_DIMENSION
    )
    pairFeatureDimension: int = option(
        128, "c_p, pair representation channels", min=1, max=MAX_DIMENSION
    )
    positionalEmbeddingDimension: int = option(
        128, "sinusoidal residue-index encoding size", min=2, max=MAX_DIMENSION
    )
    timestepEmbeddingDimension: int = option(
        128, "sinusoidal timestep encoding size", min=2, max=MAX_DIMENSION
    )
    relativePositionK: int = option(
        32, "relative position one-hot clipped at ±k", min=1, max=MAX_DIMENSION
    )
    templateType: str = option(
        "binned",
        "noisy-trace distance feature: v1 = Genie's raw distance, binned = one-hot 2-20 Å",
        choices=("v1", "binned"),
    )

    # --- model: pair transform stack (AF2 Alg. 11-14) ----------------------------------------
    numPairTransformLayers: int = option(5, "pair transform layers", min=0, max=MAX_LAYERS)
    includeTriangularMultiplicativeUpdate: bool = option(
        True, "triangle multiplicative updates (outgoing, incoming) in each pair layer"
    )
    includeTriangularAttention: bool = option(
        False, "triangle attention (starting, ending node) in each pair layer"
    )
    triangularMultiplicativeHiddenDimension: int = option(
        128, "hidden channels of the triangle multiplicative update", min=1, max=MAX_DIMENSION
    )
    triangularAttentionHiddenDimension: int = option(
        32, "channels per triangle-attention head", min=1, max=MAX_DIMENSION
    )
    triangularAttentionNumHeads: int = option(4, "triangle-attention heads", min=1, max=MAX_LAYERS)
    triangularDropout: float = option(
        0.25, "row/column-shared dropout in the pair stack", min=0, max=1
    )
    pairTransitionN: int = option(4, "pair transition hidden size = N × c_p", min=1, max=MAX_LAYERS)
    triangleKernel: str = option(
        "auto",
        "kernels of the dense triangle and axial layers: auto = cuEquivariance's fused kernels "
        "for the calls they take (installed with pip install 'genie-long[cueq]', CUDA, fp32 or "
        "bf16, supported sizes), ours otherwise; reference = ours always; cuequivariance = the "
        "fused kernels for every call (an error where not installed or without CUDA)",
        choices=("auto", "reference", "cuequivariance"),
    )

    # --- stages 1-2: factorised pairs ----------------------------------------------------------
    useFactorizedPairs: bool = option(
        False, "hold pairs as per-residue factors U, V [n, r, c_f], never as [n, n, c]"
    )
    zFactorRank: int = option(2, "r, rank of the pair factors", min=1, max=MAX_LAYERS)
    pairFactorDim: int = option(
        96,
        "c_f, channels of each pair factor (FlashIPA value head dim: 40 + r·c_f ≤ 256)",
        min=1,
        max=MAX_DIMENSION,
    )
    useFactorizedTriangleOps: bool = option(
        False, "triangle updates/attention in factor algebra (needs useFactorizedPairs)"
    )
    triangleUpdateRank: int = option(
        2,
        "rank t of the triangle-update operands (x has rank t², projected back to r)",
        min=1,
        max=MAX_LAYERS,
    )
    triangleAttentionChunkSize: int = option(
        64,
        "rows per chunk of factorised triangle attention (memory O(chunk·n·c))",
        min=1,
        max=MAX_RESIDUES,
    )
    numTriangleLayers: int = option(
        2,
        "factorised pair layers (of numPairTransformLayers) that carry triangle ops",
        min=0,
        max=MAX_LAYERS,
    )

    # --- FlashIPA and mHC hyper-connections ---------------------------------------------------
    useFlashMode: bool = option(
        False, "IPA as one fused attention over augmented vectors (FlashIPA; needs factor pairs)"
    )
    kNeighbors: int = option(
        32,
        "k neighbours per residue in the k-NN graph of the noisy trace (sparse pairs, k-NN "
        "environment features)",
        min=1,
        max=MAX_DIMENSION,
    )
    useKnnEnvironmentFeatures: bool | None = option(
        None,
        "factorised pairs: add a summary of each residue's kNeighbors graph neighbours (binned "
        "distances, index offsets) to the single features; None = on with useFlashMode",
    )
    useFactorTransitions: bool | None = option(
        None,
        "pair factors (factorised or sparse): a transition updates U and V between consecutive "
        "structure layers; None = on with useFlashMode",
    )
    flashBackend: str = option(
        "auto",
        "FlashIPA kernel: auto (cuDNN → flash → mem-efficient → math; flash-attn if "
        "installed), or one of them",
        choices=("auto", "cudnn", "flash", "efficient", "math", "flash_attn"),
    )
    flashQKDtype: str = option(
        "auto",
        "precision of FlashIPA's augmented Q/K/V: auto = fp16 on GPU, input precision on CPU",
        choices=("auto", "fp16", "bf16", "fp32"),
    )
    useFlashAttn3: bool = option(
        False, "use FlashAttention-3 (flash_attn_interface, Hopper) when it imports"
    )
    useMHCMode: bool = option(
        False, "manifold-constrained hyper-connections on the structure layers' residual branches"
    )
    mhcExpansionRate: int = option(
        4, "residual streams of mHC (1 = plain pre-LN residual)", min=1, max=MAX_LAYERS
    )
    mhcSinkhornIters: int = option(20, "Sinkhorn–Knopp iterations for H_res", min=1, max=MAX_STEPS)
    mhcAlphaInit: float = option(0.01, "initial gate scale α of the mHC coefficients", min=0)

    # --- stages 3 V2 / 4: sparse k-NN pairs, axial attention -----------------------------------
    useSparseKNN: bool = option(
        False,
        "pairs as edges [n, k, c_p] to each residue's kNeighbors neighbours (no n×n tensor; "
        "needs useFlashMode)",
    )
    knnStrategy: str = option(
        "hybrid",
        "k-NN graph neighbours (sparse pairs, k-NN environment features): coordinate (Cα "
        "distance of the noisy trace), sequence (|i−j|), hybrid (half of each, de-duplicated)",
        choices=("coordinate", "sequence", "hybrid"),
    )
    randomNeighbors: int = option(
        0,
        "k-NN graph: this many random long-range neighbours per residue on top of kNeighbors, "
        "drawn with p ∝ d⁻³ over the other residues, fresh for every graph (0 = none)",
        min=0,
        max=MAX_DIMENSION,
    )
    knnChunkSize: int = option(
        1024,
        "queries per block of the k-NN distance search (memory O(chunk·n))",
        min=1,
        max=MAX_RESIDUES,
    )
    sparseChunkSize: int = option(
        1024,
        "residues per chunk of the sparse triangle/axial operations (memory O(chunk·k²·c))",
        min=1,
        max=MAX_RESIDUES,
    )
    useLocalEdgeBias: bool = option(
        True, "sparse pairs: add attention over each residue's k edges, biased by the edges"
    )
    useSpatialBias: bool = option(
        False, "sparse pairs: learned attention bias by sequence separation inside ±range"
    )
    spatialBiasRange: int = option(
        32, "sequence separations with their own bias (±range)", min=1, max=MAX_DIMENSION
    )
    useAxialAttention: bool = option(
        False,
        "row then column attention (triangle attention without its bias; its heads and channels) "
        "in every pair layer. Sparse edges: O(n·k²) compute. Dense pairs: O(n³) compute (it does "
        "not make a dense stack O(n)): each of n rows (columns) attends with n queries over n "
        "keys; chunking bounds only the memory, O(chunk·n·c) activations (+ O(chunk·n²) logits on "
        "PyTorch's math attention path)",
    )
    axialRowChunkSize: int | None = option(
        None,
        "rows per chunk of dense row attention (None = triangleChunkSize; sparse edges use "
        "sparseChunkSize)",
        min=1,
        max=MAX_RESIDUES,
    )
    axialColChunkSize: int | None = option(
        None,
        "columns per chunk of dense column attention (None = triangleChunkSize; sparse edges use "
        "sparseChunkSize)",
        min=1,
        max=MAX_RESIDUES,
    )

    # --- self-conditioning (Chen, Zhang & Hinton 2022) ----------------------------------------
    selfConditioning: bool = option(
        False,
        "feed the previous x̂0 (distances) into the pair features (sampling: the last step's; "
        "training: a no-grad first pass, on a random half of the steps)",
    )
    selfConditionGraph: bool = option(
        False,
        "k-NN models with selfConditioning: search the graph's coordinate and random neighbours "
        "on the previous x̂0 instead of x_t, where there is one",
    )

    # --- memory: gradient checkpointing and parameter sharing --------------------------------
    useGradientCheckpointing: bool = option(
        False, "recompute whole layers in backward instead of storing their activations"
    )
    checkpointingStrategy: str = option(
        "uniform",
        "uniform: every checkpointEveryNLayers-th layer; adaptive: the layers with the largest "
        "activation memory at the current length; selective: the kinds in checkpointModules",
        choices=("uniform", "adaptive", "selective"),
    )
    checkpointEveryNLayers: int = option(
        1,
        "uniform: checkpoint layers 0, N, 2N, ... of every stack (1 = all)",
        min=1,
        max=MAX_LAYERS,
    )
    checkpointModules: list[str] = option(
        ["pair"], "selective: layer kinds to checkpoint (pair, structure)"
    )
    adaptiveCheckpointFraction: float = option(
        0.5,
        "adaptive: checkpoint the largest layers until they hold this fraction of the activation "
        "memory measured per length bucket (docs/MEMORY.md)",
        min=0,
        max=1,
    )
    useModelCompression: bool = option(
        False, "share layer weights within stacks (compressionStrategy)"
    )
    compressionStrategy: str = option(
        "adjacent",
        "universal: one set of weights per stack; adjacent: groups of compressionRatio "
        "neighbouring layers share; none",
        choices=("universal", "adjacent", "none"),
    )
    compressionRatio: int = option(
        2, "adjacent: layers per weight-sharing group", min=1, max=MAX_LAYERS
    )

    # --- model: structure stack (IPA, AF2 Alg. 22) -------------------------------------------
    structureEncoderDepth: int = option(
        5, "structure layers (IPA + transition + frame update)", min=1, max=MAX_LAYERS
    )
    numStructureBlocks: int = option(
        1,
        "times the structure stack is applied (same weights each time; Genie key)",
        min=1,
        max=MAX_LAYERS,
    )
    structureEncoderHeads: int = option(12, "IPA heads", min=1, max=MAX_LAYERS)
    ipaHiddenDimension: int = option(
        16, "IPA scalar channels per head (c)", min=1, max=MAX_DIMENSION
    )
    ipaNumQkPoints: int = option(4, "IPA query/key points per head", min=1, max=MAX_LAYERS)
    ipaNumVPoints: int = option(8, "IPA value points per head", min=1, max=MAX_LAYERS)
    ipaDropout: float = option(0.1, "dropout after IPA", min=0, max=1)
    numStructureTransitionLayers: int = option(
        1, "transition blocks after each IPA", min=1, max=MAX_LAYERS
    )
    structureTransitionDropout: float = option(0.1, "dropout after the transition", min=0, max=1)

    # --- memory: chunking of the dense operations ---------------------------------------------
    triangleChunkSize: int | None = option(
        None,
        "rows per chunk of the dense triangle operations (None = unchunked; recomputed in "
        "backward under layer checkpointing only)",
        min=1,
        max=MAX_RESIDUES,
    )
    ipaChunkSize: int | None = option(
        None,
        "queries per chunk of dense IPA (None = unchunked; chunks are recomputed in backward, so "
        "training stores no [h, n, n])",
        min=1,
        max=MAX_RESIDUES,
    )
