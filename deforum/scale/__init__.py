"""Many renders at once: settings files on a Ray cluster (``ray_render``), sweeps over settings values
(``sweep``) and their contact sheet (``contact_sheet``).

Ray is an optional extra (``pip install 'deforum-stable-diffusion[ray]'``); everything here but the Ray
dispatch itself runs without it, and a ``--ray`` run without it stops with ``require_ray``'s message.
"""

from __future__ import annotations

from typing import Any

from deforum.errors import DeforumError

RAY_EXTRA = "pip install 'deforum-stable-diffusion[ray]'"


class RayMissing(DeforumError):
    """``--ray`` was asked for but the ray package is not installed."""


def require_ray() -> Any:
    """The ``ray`` module, or a RayMissing error naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissing(f"--ray: the ray package is not installed ({exc}); install the ray extra: "
                         f"{RAY_EXTRA}") from None
    return ray
