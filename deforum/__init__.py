"""Deforum Stable Diffusion: prompts and keyframed camera moves turned into animations.

The notebook builds the argument namespaces and calls into this package; see DESIGN.md for the layout.
Heavy modules (torch, diffusers) are imported lazily by the submodules that need them, so
``import deforum`` and the render plan work without loading a model.
"""

from deforum.errors import DeforumError, MediaError, ModelError, ScheduleError, SettingsError

__version__ = "0.1.0"

__all__ = ["DeforumError", "MediaError", "ModelError", "ScheduleError", "SettingsError", "__version__"]
