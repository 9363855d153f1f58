"""Compiled execution of a denoiser: ``torch.compile`` of its forward, the graph built eagerly.

:class:`CompiledDenoiser` has the call interface of :class:`~genie.model.denoiser.GenieDenoiser`
(``build_graph``, ``uses_graph``, ``__call__(coords, t, mask, residue_index, graph=)``) and runs
the forward through ``torch.compile`` (Ansel et al. 2024, "PyTorch 2"). The readable eager
module stays the reference: the compiled path is optional, tested against it, and falls back to
it (with one logged warning) when compilation fails.

What is compiled, and what is not:

- The k-NN graph is built eagerly (:meth:`build_graph`, outside the compiled region): its search
  is index work, and its one data-dependent size, the column-list width (the largest in-degree),
  is settled there, rounded up to a multiple of 8 (:class:`~genie.geometry.graph.KnnGraph`).
  Every shipped config's forward is then one graph without breaks (``tests/model/
  test_compiled.py`` checks this with ``torch._dynamo.explain``) while its chunked operations
  have at most ``MAX_UNROLLED`` chunks (below).
- A chunked operation of more than :data:`~genie.utils.chunking.MAX_UNROLLED` chunks is a
  deliberate graph break: its chunks run through one compiled chunk function
  (:mod:`genie.utils.chunking`), compiled like the forward, instead of being unrolled into the
  graph, so compile time does not grow with the number of chunks (``docs/BENCHMARKS.md``).
- Shapes: ``torch.compile``'s automatic dynamic shapes. The first call compiles for its exact
  shapes; the first change of a size (chain length n, column width) recompiles once with that
  size symbolic, and later sizes reuse it. Further recompilations happen only where a size
  changes the program: the number of chunks of a chunked operation up to ``MAX_UNROLLED`` (one
  variant each; beyond, the count is the chunk loop's business), and a last chunk of exactly one
  residue. No length padding is needed (padding would cost its residues in every step). The
  per-function recompilation limit is raised to :data:`RECOMPILE_LIMIT` (PyTorch's default, 8,
  would send some lengths back to eager: the unrolled chunk counts, and the chunk function's
  variants, one pair per chunked layer class).
- ``reduce-overhead`` and ``max-autotune`` add CUDA graphs (cudagraph trees): one recorded graph
  per distinct concrete shape, replayed on fixed buffers. A reverse-diffusion loop at one length
  sees a handful of shapes (the column-width buckets), so its model calls are replays after the
  first few steps. Outputs are copied out of the graph's memory before they are returned. The
  chunk function runs without CUDA graphs (at lengths of many chunks the launches are a small
  share of a chunk's work).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.utils.chunking import chunks_run_by, compile_chunk_runner
from genie.utils.runtime import COMPILE_MODES

log = logging.getLogger(__name__)
_MODES = COMPILE_MODES[2:]  # the torch.compile modes
RECOMPILE_LIMIT = 64  # compiled variants per function (chunked layer classes × special sizes)
_GRAPHED = ("reduce-overhead", "max-autotune")  # the modes with CUDA graphs
_CHUNK_MODES = {"default": "default", "reduce-overhead": "default",
                "max-autotune": "max-autotune-no-cudagraphs"}  # fmt: skip


class CompiledDenoiser:
    """A denoiser's forward through ``torch.compile`` (module doc); same call interface.

    Not an ``nn.Module``: it holds the module (whose parameters and state dict are unchanged)
    and a compiled function of its forward.
    """

    def __init__(self, model: nn.Module, *, mode: str, backend: str = "inductor"):
        """
        Args:
            model: a :class:`~genie.model.denoiser.GenieDenoiser`.
            mode: ``default``, ``reduce-overhead`` or ``max-autotune``.
            backend: the ``torch.compile`` backend (tests trace with ``aot_eager``, which
                checks the captured graph and its autograd without generating kernels).
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        self.model = model
        self.mode = mode
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)  # process-wide
        if backend == "inductor":
            self._compiled = torch.compile(model.forward, mode=mode)
            self._chunk_runner = compile_chunk_runner(mode=_CHUNK_MODES[mode])
        else:  # modes are inductor options
            self._compiled = torch.compile(model.forward, backend=backend)
            self._chunk_runner = compile_chunk_runner(backend=backend)
        self.failed: str | None = None  # the error that made it fall back to eager

    @property
    def uses_graph(self) -> bool:
        return self.model.uses_graph

    @property
    def self_conditioning(self) -> bool:
        return self.model.self_conditioning

    def build_graph(
        self,
        coords: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        **options: Any,
    ) -> KnnGraph | None:
        """The model's graph of ``coords [b, n, 3]`` Å (``options``: the model's
        ``self_condition``, ``seeds``), built eagerly."""
        return self.model.build_graph(coords, mask, residue_index, **options)

    def __call__(
        self,
        coords: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        *,
        graph: KnnGraph | None = None,
        **inputs: Any,
    ) -> torch.Tensor:
        """The model's forward (``coords [b, n, 3]`` Å, ``timesteps [b]``, ``mask [b, n]``;
        ``inputs``: the model's ``self_condition [b, n, 3]``), compiled; the graph is built
        eagerly when not given."""
        if graph is None and self.model.uses_graph:
            condition = inputs.get("self_condition")
            options = {} if condition is None else {"self_condition": condition}
            graph = self.model.build_graph(coords, mask, residue_index, **options)
        if self.failed is None:
            try:
                return self._call_compiled(coords, timesteps, mask, residue_index, graph, inputs)
            except torch.cuda.OutOfMemoryError:
                raise  # not a compiler failure: eager would not fit either
            except Exception as err:  # noqa: BLE001 - any compiler failure: run eagerly instead
                self.failed = _describe(err)
                log.warning("torch.compile failed (%s); running the model eagerly", self.failed)
        return self.model(coords, timesteps, mask, residue_index, graph=graph, **inputs)

    def _call_compiled(self, *args: Any) -> torch.Tensor:
        coords, timesteps, mask, residue_index, graph, inputs = args
        graphed = self.mode in _GRAPHED
        if graphed:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are done
        with chunks_run_by(self._chunk_runner):
            out = self._compiled(coords, timesteps, mask, residue_index, graph=graph, **inputs)
        return out.clone() if graphed else out


def _describe(err: BaseException) -> str:
    """One line naming a compiler failure and its root cause (the compiler wraps the error it
    met, e.g. ``BackendCompilerFailed`` around a backend's own exception)."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = f"{type(err).__name__}: {err}"
    if root is not err:
        text = f"{type(err).__name__} ({type(root).__name__}: {root})"
    return " ".join(text.split())[:500]


def maybe_compile(model: nn.Module, *, mode: str) -> Any:
    """``model`` itself for ``mode == "off"``, else a :class:`CompiledDenoiser` of it."""
    return model if mode == "off" else CompiledDenoiser(model, mode=mode)
