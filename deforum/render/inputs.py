"""RunInputs: every image a run reads (init images, the mask, the extracted video frames), read once, before
the model loads, with one set of rules for every render mode (spec generation 5.1, animation 11.2).

- ``use_init``: the None mode reads every image ``init_image`` names (a file, an http(s) URL or a folder of
  .png/.jpg/.jpeg); the other modes read the one image it names. Each is resized to W x H; with ``use_mask``
  and ``use_alpha_as_mask`` it is read as RGBA and its alpha channel is its mask (v0.6's ``load_img``), and an
  alpha channel that is all opaque or all transparent is refused.
- ``use_mask`` without ``use_alpha_as_mask``: ``mask_file`` as read (each mode sizes it as v0.6 did).
- Video Input: the extracted frames (``deforum.render.video_input``).

``deforum.runner.preflight`` reads all of it before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from deforum.image.io import list_init_images, load_init_image, open_image
from deforum.image.masks import check_alpha_mask

if TYPE_CHECKING:
    from deforum.settings import Settings


@dataclass(frozen=True)
class InitImage:
    source: str  # the path or URL it was read from
    image: Image.Image  # RGB, W x H
    alpha: Image.Image | None  # 'L', W x H: the mask when use_alpha_as_mask, else None


@dataclass(frozen=True)
class RunInputs:
    inits: tuple[InitImage, ...] = ()  # in order; empty without use_init
    mask_image: Image.Image | None = None  # mask_file as read (use_mask without use_alpha_as_mask)
    video: Any = None  # Video Input: the extracted frames (deforum.render.video_input.VideoFrames)

    @property
    def init(self) -> InitImage | None:
        """The init image of the modes that use one (the first of the None mode's)."""
        return self.inits[0] if self.inits else None

    def mask_of(self, init: InitImage | None) -> Image.Image | None:
        """The mask that goes with ``init``: its alpha channel, else mask_file (None without use_mask)."""
        if init is not None and init.alpha is not None:
            return init.alpha
        return self.mask_image


def read_inputs(settings: Settings) -> RunInputs:
    """Read the init images and the mask the settings name (nothing is read when they are off)."""
    init_settings, image = settings.init, settings.image
    alpha_mask = init_settings.use_mask and init_settings.use_alpha_as_mask
    inits: list[InitImage] = []
    if init_settings.use_init and settings.animation.animation_mode != "Video Input":
        if settings.animation.animation_mode == "None":
            sources = list_init_images(init_settings.init_image)
        else:
            sources = [str(init_settings.init_image)] if init_settings.init_image else []
        for source in sources:
            rgb, alpha = load_init_image(source, image.W, image.H, use_alpha_as_mask=alpha_mask)
            if alpha is not None:
                check_alpha_mask(alpha)
            inits.append(InitImage(source, rgb, alpha))
    mask_image = None
    if init_settings.use_mask and not init_settings.use_alpha_as_mask:
        mask_image = open_image(init_settings.mask_file, field="mask_file")
    return RunInputs(tuple(inits), mask_image)

