"""Per-frame image steps: colour coherence, contrast, noise and sample conversions."""

from deforum.image.colors import COLOR_COHERENCE_MODES, maintain_colors
from deforum.image.convert import image_to_sample, sample_to_image, sample_to_uint8
from deforum.image.noise import add_noise, apply_contrast

__all__ = [
    "COLOR_COHERENCE_MODES",
    "add_noise",
    "apply_contrast",
    "image_to_sample",
    "maintain_colors",
    "sample_to_image",
    "sample_to_uint8",
]
