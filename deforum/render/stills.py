"""The ``None`` animation mode: batches of still images (spec animation 11, 10.4, 10.6).

prompts x ``n_batch`` x init images, in that nesting order, one image per plan row; the seed advances after
every image. Everything that can fail on user input (init images, mask, settings) is checked before the
first image is generated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deforum.args import check_mask, get_value, resolve_seed
from deforum.errors import SettingsError
from deforum.image.convert import sample_to_uint8
from deforum.image.io import list_init_images, load_init_image, open_image
from deforum.image.masks import check_alpha_mask
from deforum.plan import make_plan
from deforum.render.output import PROMPT_FILENAME_FORMAT, FrameSink, grid_filename, image_filename
from deforum.render.steps import check_finite

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


def _resolve_generator(model_or_generator: Any) -> Any:
    from deforum.generate import Generator

    if isinstance(model_or_generator, Generator) or callable(model_or_generator) and not hasattr(
            model_or_generator, "apply_model"):
        return model_or_generator
    model = getattr(model_or_generator, "model", None)
    if model is not None and not hasattr(model_or_generator, "apply_model"):
        return Generator(model)  # a root namespace holding the model
    return Generator(model_or_generator)


def render_image_batch(args: Any, prompts: list[str], model: Any, *,
                       display: Callable[[Image.Image], None] | None = None,
                       clear_output: Callable[[], None] | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       root: Any = None) -> list[Path]:
    """Generate and save the still images of the ``None`` mode; returns the paths written, in order.

    ``model`` is a loaded model, a ``deforum.generate.Generator`` or the notebook's ``root`` (``.model``).
    ``display`` shows an image when ``display_samples`` is on (the notebook passes IPython's display);
    ``clear_output`` is called every 32 images when ``n_batch >= 32``, as v0.6. ``progress(step, total)``
    is the per-step hook of each image. ``args.seed`` -1 is resolved to a random seed, recorded in the
    settings file. ``root`` (the notebook's Root namespace) is used for the model when ``model`` is None.
    """
    from deforum.generate import generation_kwargs

    generate = _resolve_generator(model if model is not None else root)
    prompts = [str(p) for p in (prompts or [])]
    if not prompts:
        raise SettingsError("prompts: the None mode needs at least one prompt in the prompts list")
    seed = resolve_seed(int(get_value(args, "seed")))
    timestring = str(get_value(args, "timestring"))
    outdir = Path(get_value(args, "outdir"))
    W, H = int(get_value(args, "W")), int(get_value(args, "H"))

    use_init = bool(get_value(args, "use_init", False))
    use_mask = bool(get_value(args, "use_mask", False))
    use_alpha_as_mask = bool(get_value(args, "use_alpha_as_mask", False))
    check_mask(args)

    # Everything read from disk or the network is read before the first image is generated.
    init_sources = list_init_images(get_value(args, "init_image")) if use_init else []
    inits = {source: load_init_image(source, W, H, use_alpha_as_mask=use_alpha_as_mask and use_mask)
             for source in init_sources}
    if use_mask and use_alpha_as_mask:
        for _, alpha in inits.values():
            check_alpha_mask(alpha)
    mask_image = None
    if use_mask and not use_alpha_as_mask:
        mask_image = open_image(get_value(args, "mask_file"), field="mask_file")

    plan = make_plan({"seed": seed, "seed_behavior": get_value(args, "seed_behavior", "iter"),
                      "n_batch": get_value(args, "n_batch", 1)},
                     {"animation_mode": "None"}, None, prompts, init_sources or None)

    outdir.mkdir(parents=True, exist_ok=True)
    sink = FrameSink(outdir, timestring)
    if get_value(args, "save_settings", True):
        sink.written.append(_save_settings(args, seed, prompts, sink.settings_path()))

    call = generation_kwargs(args)
    save_samples = bool(get_value(args, "save_samples", True))
    n_batch = int(get_value(args, "n_batch", 1))
    per_prompt: dict[str, list[tuple[int, np.ndarray]]] = {}
    for row in plan.rows:
        init, alpha = inits[row.init_image] if row.init_image is not None else (None, None)
        step_dir = None
        if get_value(args, "save_sample_per_step", False):
            step_dir = sink.step_dir(row.seed)
        sample = generate(**call, prompt=row.prompt, frame=0, seed=row.seed, init_image=init,
                          mask=(alpha if use_alpha_as_mask else mask_image) if use_mask else None,
                          step_dir=step_dir, show_step=_show_step(display, args), progress=progress)
        check_finite(sample, row.frame, "generated image", noun="image")
        image = sample_to_uint8(sample)
        per_prompt.setdefault(row.prompt, []).append((row.seed, image))
        if save_samples:
            sink.write_still(image, str(get_value(args, "filename_format", "")), row.frame, row.prompt, row.seed)
        if display is not None and get_value(args, "display_samples", False):
            if clear_output is not None and n_batch >= 32 and row.frame % 32 == 0 and row.frame:
                clear_output()
            display(Image.fromarray(image))

    if get_value(args, "make_grid", False):
        for prompt_index, prompt in enumerate(dict.fromkeys(prompts)):
            images = per_prompt.get(prompt, [])
            if not images:
                continue
            grid = make_grid([image for _, image in images], int(get_value(args, "grid_rows", 2)))
            sink.write_grid(grid, prompt_index, images[0][0])
            if display is not None and get_value(args, "display_samples", False):
                display(Image.fromarray(grid))
    return sink.written


def _show_step(display: Callable[[Image.Image], None] | None, args: Any):
    """The per-step preview hook for ``show_sample_per_step`` (labels 'x' and 'x0_pred')."""
    if display is None or not get_value(args, "show_sample_per_step", False):
        return None

    def show(label: str, image: np.ndarray) -> None:
        log.info("%s", label)
        display(Image.fromarray(image))
    return show


def _save_settings(args: Any, seed: int, prompts: list[str], path: Path) -> Path:
    """The run's settings file, written before the first image; its ``prompts`` entry is the None-mode
    dump format {prompt text: "00000"-style index} (spec 10.4)."""
    from deforum.settings import save_settings

    values = dict(args) if isinstance(args, Mapping) else dict(vars(args))
    values["seed"] = seed
    return save_settings(path, values, {"animation_mode": "None"}, prompts=prompts)


__all__ = ["PROMPT_FILENAME_FORMAT", "grid_filename", "image_filename", "make_grid",
           "render_image_batch"]
