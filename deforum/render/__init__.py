"""Render loops, one module per animation mode; they execute the render plan row by row.

Submodules are imported on first use so that importing one mode does not load the others.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_image_batch"]


def __getattr__(name: str) -> Any:
    if name == "render_image_batch":
        from deforum.render.stills import render_image_batch
        return render_image_batch
    raise AttributeError(f"module 'deforum.render' has no attribute {name!r}")
