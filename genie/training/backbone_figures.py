"""Pictures of single Cα backbones: distance and contact maps, 3-D traces (matplotlib).

Notation: ``n`` residues of one backbone; coordinates and distances in Å. The figures are plain
:class:`matplotlib.figure.Figure` objects with one panel per backbone (no pyplot state, no GUI
backend), ready for ``SummaryWriter.add_figure`` or ``savefig``; matplotlib is optional (the
``eval`` extra) and imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from genie.eval.optional import import_optional

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CONTACT_DISTANCE = 8.0  # Å: Cα pairs closer than this are in contact
PANEL_COLUMNS = 4  # backbones per row of a figure


def distance_map(coords: np.ndarray) -> np.ndarray:
    """Cα distances ``|x_i − x_j|``: ``[n, 3]`` Å -> ``[n, n]`` Å."""
    xyz = np.asarray(coords, dtype=np.float64)  # [n, 3]
    return np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)  # [n, n]


def contact_map(coords: np.ndarray, *, threshold: float = CONTACT_DISTANCE) -> np.ndarray:
    """Cα contacts: ``[n, 3]`` Å -> ``[n, n]`` bool, True where ``|x_i − x_j| < threshold`` (Å;
    the diagonal is True)."""
    return distance_map(coords) < threshold


def _panels(
    count: int, *, size: float = 3.0, projection: str | None = None
) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, at most :data:`PANEL_COLUMNS` per row."""
    figure_module = import_optional("matplotlib.figure", package="matplotlib", purpose="plots")
    columns = min(count, PANEL_COLUMNS)
    rows = math.ceil(count / columns)
    figure = figure_module.Figure(figsize=(size * columns, size * rows), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1, projection=projection) for i in range(count)]
    return figure, axes


def contact_map_figure(
    traces: Sequence[np.ndarray], *, threshold: float = CONTACT_DISTANCE
) -> Figure:
    """One panel per backbone ``[n_i, 3]`` (Å): its contact map (black = contact); the title
    counts the pairs with ``|i − j| ≥ 3``."""
    figure, axes = _panels(len(traces))
    for i, (ax, xyz) in enumerate(zip(axes, traces, strict=True)):
        contacts = contact_map(xyz, threshold=threshold)  # [n, n]
        ax.imshow(contacts, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        long_range = int(np.triu(contacts, k=3).sum())  # pairs i < j − 2
        ax.set_title(f"sample {i}: {long_range} contacts, |i−j| ≥ 3", fontsize=9)
        ax.set_xlabel("residue", fontsize=8)
    return figure


def distance_map_figure(traces: Sequence[np.ndarray], *, max_distance: float = 40.0) -> Figure:
    """One panel per backbone ``[n_i, 3]`` (Å): its Cα distance map, colours up to
    ``max_distance`` Å."""
    figure, axes = _panels(len(traces))
    for i, (ax, xyz) in enumerate(zip(axes, traces, strict=True)):
        image = ax.imshow(
            distance_map(xyz), cmap="viridis_r", vmin=0, vmax=max_distance, interpolation="nearest"
        )
        ax.set_title(f"sample {i}: Cα distances", fontsize=9)
        ax.set_xlabel("residue", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8, label="Å")
    return figure


def trace_figure(traces: Sequence[np.ndarray]) -> Figure:
    """One 3-D panel per backbone ``[n_i, 3]`` (Å): the Cα trace coloured N (purple) → C
    (yellow), equal axis scales."""
    art3d = import_optional("mpl_toolkits.mplot3d.art3d", package="matplotlib", purpose="plots")
    figure, axes = _panels(len(traces), projection="3d")
    for i, (ax, xyz) in enumerate(zip(axes, traces, strict=True)):
        xyz = np.asarray(xyz, dtype=np.float64)  # [n, 3]
        bonds = np.stack([xyz[:-1], xyz[1:]], axis=1)  # [n-1, 2, 3]
        lines = art3d.Line3DCollection(bonds, cmap="viridis", linewidths=1.5)
        lines.set_array(np.arange(len(bonds)))
        ax.add_collection3d(lines)
        centre = (xyz.max(axis=0) + xyz.min(axis=0)) / 2  # [3]
        half = max(float(np.ptp(xyz, axis=0).max()) / 2, 1.0)
        for axis, c in zip("xyz", centre, strict=True):
            getattr(ax, f"set_{axis}lim")(c - half, c + half)
        ax.set_box_aspect((1, 1, 1))
        ax.tick_params(labelsize=6)
        ax.set_title(f"sample {i}: {len(xyz)} residues, span {2 * half:.0f} Å", fontsize=9)
    return figure
