"""The Genie denoiser and its parts; :func:`build_denoiser` makes it from a config
(``docs/ARCHITECTURE.md`` maps the package)."""

from genie.model.build import build_denoiser, mHCFlashDenoiser
from genie.model.denoiser import GenieDenoiser

__all__ = ["GenieDenoiser", "build_denoiser", "mHCFlashDenoiser"]
