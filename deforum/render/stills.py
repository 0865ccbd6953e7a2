"""The ``None`` animation mode: batches of still images (spec animation 11, 10.4, 10.6).

prompts x ``n_batch`` x init images, in that nesting order, one image per plan row; the seed advances after
every image. Everything that can fail on user input (init images, mask, settings) is checked before the
first image is generated: the settings by ``resolve``, the images by ``read_inputs`` (the runner reads them
before the model loads and passes them here).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from deforum.errors import SettingsError
from deforum.image.convert import sample_to_uint8
from deforum.plan import make_plan
from deforum.render.output import PROMPT_FILENAME_FORMAT, FrameSink, grid_filename, image_filename
from deforum.render.steps import check_finite, generation_request
from deforum.settings import save_run_settings

if TYPE_CHECKING:
    from deforum.generate import Generator
    from deforum.plan import FrameRow
    from deforum.render.inputs import RunInputs
    from deforum.settings import RunIdentity, Settings

log = logging.getLogger(__name__)

GRID_PADDING = 2  # pixels of black between and around grid cells (torchvision make_grid's default)


def make_grid(images: list[np.ndarray], grid_rows: int, padding: int = GRID_PADDING) -> np.ndarray:
    """Tile uint8 H x W x 3 images as torchvision ``make_grid`` with ``nrow = count // grid_rows`` per row.

    v0.6 divided by zero when there were fewer images than ``grid_rows``; here a row then holds at least one
    image.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    count = len(images)
    per_row = max(1, int(count / max(1, int(grid_rows))))
    columns = min(per_row, count)
    rows = math.ceil(count / columns)
    h, w, channels = images[0].shape
    cell_h, cell_w = h + padding, w + padding
    grid = np.zeros((rows * cell_h + padding, columns * cell_w + padding, channels), dtype=np.uint8)
    for k, image in enumerate(images):
        y, x = divmod(k, columns)
        top, left = y * cell_h + padding, x * cell_w + padding
        grid[top:top + h, left:left + w] = image
    return grid


def render_image_batch(settings: Settings, identity: RunIdentity, generator: Generator, inputs: RunInputs, *,
                       display: Callable[[Image.Image], None] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Generate and save the still images of the ``None`` mode; returns the paths written, in order (the
    settings file first when ``save_settings``, then the images, then the grids).

    ``identity`` names the files and holds the run's resolved seed; ``inputs`` holds the init images and the
    mask (``deforum.render.inputs.read_inputs``). ``display`` shows an image when ``display_samples`` is on
    (the notebook passes IPython's display); ``progress(step, total)`` is the per-step hook of each image.
    """
    prompts = settings.prompts.prompts
    if not prompts:
        raise SettingsError("prompts: the None mode needs at least one prompt in the prompts list")
    output = settings.output
    identity.outdir.mkdir(parents=True, exist_ok=True)
    sink = FrameSink(identity.outdir, identity.timestring)
    if output.save_settings:
        sink.written.append(save_run_settings(sink.settings_path(), settings, identity))

    show = display is not None and output.display_samples
    per_prompt: dict[str, list[tuple[int, np.ndarray]]] = {}
    for row, image in generate_stills(settings, identity, generator, inputs, sink, progress=progress,
                                      display=display):
        per_prompt.setdefault(row.prompt, []).append((row.seed, image))
        if show:
            display(Image.fromarray(image))

    if output.make_grid:
        for prompt_index, prompt in enumerate(dict.fromkeys(prompts)):
            images = per_prompt.get(prompt, [])
            if not images:
                continue
            grid = make_grid([image for _, image in images], output.grid_rows)
            sink.write_grid(grid, prompt_index, images[0][0])
            if show:
                display(Image.fromarray(grid))
    return sink.written


def generate_stills(settings: Settings, identity: RunIdentity, generator: Generator, inputs: RunInputs,
                    sink: FrameSink, *, rows: Iterable[int] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    display: Callable[[Image.Image], None] | None = None,
                    ) -> Iterator[tuple[FrameRow, np.ndarray]]:
    """Generate the still images of the plan's ``rows`` (indices; default every row) and save each
    (``save_samples``), yielding (row, uint8 image). Each row's seed, prompt and init come from the plan, so
    any slice of the rows, rendered by any process, gives the files a whole run gives (``deforum.scale``)."""
    output, use_mask = settings.output, settings.init.use_mask
    inits = {init.source: init for init in inputs.inits}
    plan = make_plan(settings, identity.seed, init_images=[init.source for init in inputs.inits] or None)
    base = dataclasses.replace(generation_request(settings, identity.seed), frame=0, progress=progress,
                               show_step=_show_step(display, settings))
    for index in range(len(plan.rows)) if rows is None else rows:
        row = plan.rows[index]
        init = inits[row.init_image] if row.init_image is not None else None
        step_dir = sink.step_dir(row.seed) if output.save_sample_per_step else None
        sample = generator.generate(dataclasses.replace(
            base, seed=row.seed, prompt=row.prompt, init_image=None if init is None else init.image,
            mask=inputs.mask_of(init) if use_mask else None, step_dir=step_dir))
        check_finite(sample, row.frame, "generated image", noun="image")
        image = sample_to_uint8(sample)
        if output.save_samples:
            sink.write_still(image, output.filename_format, row.frame, row.prompt, row.seed)
        yield row, image


def _show_step(display: Callable[[Image.Image], None] | None, settings: Settings):
    """The per-step preview hook for ``show_sample_per_step`` (labels 'x' and 'x0_pred')."""
    if display is None or not settings.output.show_sample_per_step:
        return None

    def show(label: str, image: np.ndarray) -> None:
        log.info("%s", label)
        display(Image.fromarray(image))
    return show


__all__ = ["PROMPT_FILENAME_FORMAT", "grid_filename", "image_filename", "make_grid",
           "render_image_batch"]
