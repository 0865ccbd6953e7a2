"""The frame sink: where every render mode's files go, what they are called, and how they are written.

One place formats every output name (frames, stills, grids, depth maps, the per-step folder, the settings
file); every image goes through ``deforum.image.io.save_png_atomic`` (the one atomic writer), inline or on a
``BackgroundWriter`` thread; ``on_frame(frame, path)`` is called in the caller's thread once the frame's
files exist, in frame order. The names are v0.6's (``tests/test_output_names.py`` holds them fixed):

- frame ``j`` of an animation (2D, 3D, Video Input, Interpolation): ``{timestring}_{j:05}.png``
- its depth map (``save_depth_maps``): ``{timestring}_depth_{j:05}.png``
- still ``i`` (None mode): ``{timestring}_{i:05}_{seed}.png``, or ``{timestring}_{i:05}_{prompt}.png`` with
  ``filename_format`` ``"{timestring}_{index}_{prompt}.png"``
- the grid of prompt ``p``: ``{timestring}_{p:05}_grid_{seed}.png``
- the per-step images of an image with ``seed`` (``save_sample_per_step``): ``{timestring}_00_{seed}/``
- the settings file: ``{timestring}_settings.txt``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deforum.image.io import BackgroundWriter, save_png_atomic
from deforum.prompts import sanitize

PROMPT_FILENAME_FORMAT = "{timestring}_{index}_{prompt}.png"

OnFrame = Callable[[int, Path], None]


# ------------------------------------------------------------------------------------------------- names


def frame_name(timestring: str, frame: int) -> str:
    return f"{timestring}_{frame:05}.png"


def depth_name(timestring: str, frame: int) -> str:
    return f"{timestring}_depth_{frame:05}.png"


def image_filename(filename_format: str, timestring: str, index: int, prompt: str, seed: int) -> str:
    """The file name of still ``index`` (spec 11.3); a format is a choice, never a path.

    ``"{timestring}_{index}_{prompt}.png"`` gives ``{timestring}_{index:05}_{sanitize(prompt)[:160]}.png``;
    any other value gives ``{timestring}_{index:05}_{seed}.png``, as v0.6.
    """
    if filename_format == PROMPT_FILENAME_FORMAT:
        return f"{timestring}_{index:05}_{sanitize(prompt)[:160]}.png"
    return f"{timestring}_{index:05}_{seed}.png"


def grid_filename(timestring: str, prompt_index: int, seed: int) -> str:
    return f"{timestring}_{prompt_index:05}_grid_{seed}.png"


def step_folder_name(timestring: str, seed: int) -> str:
    """v0.6's per-step folder: the sample index in it is always 00 (one sample per call)."""
    return f"{timestring}_00_{seed}"


def settings_filename(timestring: str) -> str:
    return f"{timestring}_settings.txt"


# -------------------------------------------------------------------------------------------------- sink


class FrameSink:
    """The files of one run in ``outdir``, named by ``timestring``.

    ``write_frame`` / ``write_still`` / ``write_grid`` write inline, or on a background thread inside
    ``with sink.background():``. ``written`` lists the frame and still paths in the order they were queued.
    """

    def __init__(self, outdir: str | Path, timestring: str, *, on_frame: OnFrame | None = None):
        self.outdir, self.timestring, self.on_frame = Path(outdir), str(timestring), on_frame
        self.written: list[Path] = []
        self._writer: BackgroundWriter | None = None

    # -- names --------------------------------------------------------------------------------------------
    def frame_path(self, frame: int) -> Path:
        return self.outdir / frame_name(self.timestring, frame)

    def depth_path(self, frame: int) -> Path:
        return self.outdir / depth_name(self.timestring, frame)

    def still_path(self, filename_format: str, index: int, prompt: str, seed: int) -> Path:
        return self.outdir / image_filename(filename_format, self.timestring, index, prompt, seed)

    def grid_path(self, prompt_index: int, seed: int) -> Path:
        return self.outdir / grid_filename(self.timestring, prompt_index, seed)

    def step_dir(self, seed: int) -> Path:
        return self.outdir / step_folder_name(self.timestring, seed)

    def settings_path(self) -> Path:
        return self.outdir / settings_filename(self.timestring)

    def frame_paths(self, count: int) -> list[Path]:
        return [self.frame_path(j) for j in range(count)]

    # -- writes -------------------------------------------------------------------------------------------
    def write_frame(self, frame: int, image: np.ndarray | Image.Image,
                    depth: tuple[Callable[..., Any], Any, Any] | None = None) -> Path:
        """Write frame ``frame`` (uint8 image) and, with ``depth`` = (writer, depth, state), its depth map
        as ``writer(depth, depth_path, state)``; ``on_frame`` follows once both are on disk."""
        path = self.frame_path(frame)
        self.submit(save_png_atomic, image, path)
        if depth is not None:
            write_depth, value, state = depth
            self.submit(write_depth, value, self.depth_path(frame), state)
        self.written.append(path)
        self._frame_done(frame, path)
        return path

    def write_still(self, image: np.ndarray | Image.Image, filename_format: str, index: int, prompt: str,
                    seed: int) -> Path:
        path = self.still_path(filename_format, index, prompt, seed)
        self.submit(save_png_atomic, image, path)
        self.written.append(path)
        return path

    def write_grid(self, image: np.ndarray | Image.Image, prompt_index: int, seed: int) -> Path:
        path = self.grid_path(prompt_index, seed)
        self.submit(save_png_atomic, image, path)
        self.written.append(path)
        return path

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` now, or queue it on the background writer (in order with the frames)."""
        if self._writer is None:
            fn(*args)
        else:
            self._writer.submit(fn, *args)

    def _frame_done(self, frame: int, path: Path) -> None:
        if self._writer is None:
            done = [(frame, path)]
        else:
            self._writer.submit(lambda: None, tag=(frame, path))  # finishes once the frame's writes have
            done = self._writer.done()
        self._report(done)

    def _report(self, done: list[tuple[int, Path]]) -> None:
        if self.on_frame is not None:
            for frame, path in done:
                self.on_frame(frame, path)

    def flush(self) -> None:
        """Wait until every queued write is on disk (before saving resume state, which names them)."""
        if self._writer is not None:
            self._report(self._writer.flush())

    @contextmanager
    def background(self, max_pending: int = 4) -> Iterator[FrameSink]:
        """Writes inside the block run on one background thread (PNG compression overlaps the next frame);
        at its end every queued write is finished. After an error the queued writes are still finished and
        the original error is raised."""
        if self._writer is not None:
            yield self
            return
        writer = self._writer = BackgroundWriter(max_pending)
        try:
            try:
                yield self
            except BaseException:
                try:  # the frames already queued are finished work: write them, but keep the original error
                    writer.close()
                except Exception:  # noqa: BLE001
                    pass
                raise
            self._report(writer.close())  # on_frame for the frames finished since the last report
        finally:
            self._writer = None


__all__ = ["PROMPT_FILENAME_FORMAT", "FrameSink", "depth_name", "frame_name", "grid_filename", "image_filename",
           "settings_filename", "step_folder_name"]
