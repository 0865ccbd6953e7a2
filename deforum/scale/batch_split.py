"""A None-mode batch (prompts x ``n_batch`` x init images) split over Ray workers, same files as one run.

Every image of a still batch has its own plan row: its index, prompt, seed and init image are decided by
``make_plan`` from the run's seed, so the rows can be rendered in any order, by any process, and each gives
the file a serial run gives it. A part is a contiguous slice of the rows (``split``); its worker writes those
images under the run's timestring (``render_part``). The driver writes what needs all of them once the
parts are done (``finish_batch``): the settings file (``save_settings``) and each prompt's grid
(``make_grid``), from the images the parts send back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deforum.scale.tasks import RunTask


@dataclass(frozen=True)
class BatchPart:
    """Rows ``start`` to ``stop - 1`` of a None-mode task."""

    task: RunTask
    start: int
    stop: int


@dataclass
class PartResult:
    """What a part wrote (in row order) and, when the run makes grids, its images by row index."""

    written: list[Path]
    images: dict[int, tuple[str, int, np.ndarray]]  # row index -> (prompt, seed, uint8 image)
    pid: int


def split(task: RunTask, parts: int) -> list[BatchPart]:
    """The task's rows in ``parts`` contiguous slices of nearly equal size (fewer when it has fewer rows)."""
    rows = task.total or 0
    parts = max(1, min(parts, rows))
    bounds = [round(k * rows / parts) for k in range(parts + 1)]
    return [BatchPart(task, bounds[k], bounds[k + 1]) for k in range(parts)]


def render_part(part: BatchPart, root: Any) -> PartResult:
    """Generate and save the part's rows exactly as ``deforum.render.stills.render_image_batch`` does for
    the whole batch (same requests, seeds and file names); grids and the settings file are the driver's."""
    import os

    from deforum.render.output import FrameSink
    from deforum.render.stills import generate_stills
    from deforum.runner import make_generator, preflight, prepare

    task = part.task
    identity = task.identity
    settings = prepare(task.args, task.anim_args, task.prompts, task.animation_prompts, root).settings
    inputs = preflight(settings, identity)
    sink = FrameSink(identity.outdir, identity.timestring)
    images: dict[int, tuple[str, int, np.ndarray]] = {}
    for row, image in generate_stills(settings, identity, make_generator(settings, root), inputs, sink,
                                      rows=range(part.start, part.stop)):
        if settings.output.make_grid:
            images[row.frame] = (row.prompt, row.seed, image)
    return PartResult(sink.written, images, os.getpid())


def finish_batch(task: RunTask, results: Sequence[PartResult], root: Any) -> Any:
    """The run's settings file and grids from its parts' results; the runner's RunResult of the whole run
    (``frames``: the images in row order, then the grids, as a serial run lists them)."""
    from deforum.render.output import FrameSink
    from deforum.render.resume import release_claim
    from deforum.render.stills import make_grid
    from deforum.runner import RunResult, prepare
    from deforum.settings import save_run_settings

    identity = task.identity
    settings = prepare(task.args, task.anim_args, task.prompts, task.animation_prompts, root).settings
    sink = FrameSink(identity.outdir, identity.timestring)
    settings_path = None
    if settings.output.save_settings:
        settings_path = save_run_settings(sink.settings_path(), settings, identity)
    frames = [path for result in results for path in result.written if path.suffix == ".png"]
    if settings.output.make_grid:
        rows = sorted((index, value) for result in results for index, value in result.images.items())
        per_prompt: dict[str, list[tuple[int, np.ndarray]]] = {}
        for _, (prompt, seed, image) in rows:
            per_prompt.setdefault(prompt, []).append((seed, image))
        for prompt_index, prompt in enumerate(dict.fromkeys(settings.prompts.prompts)):
            images = per_prompt.get(prompt, [])
            if images:
                sink.write_grid(make_grid([image for _, image in images], settings.output.grid_rows), prompt_index,
                                images[0][0])
    frames += [path for path in sink.written if path.suffix == ".png"]  # the grids, last (as a serial run lists)
    release_claim(identity.outdir, identity.timestring)
    return RunResult(identity.outdir, identity.timestring, frames, settings_path, None, settings, identity,
                     extra={"parts": len(results), "pids": sorted({r.pid for r in results})})
