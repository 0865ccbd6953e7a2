"""Moved to ``deforum.settings`` (a temporary alias while the render modes move to typed settings)."""

from deforum.settings import *  # noqa: F403
from deforum.settings.resolve import as_dict, check_mask, get_value, resolve_seed  # noqa: F401
