"""A contact sheet: one row per run (its label, its first and its last frame), to compare a sweep at a glance.

Frames are shown at their size up to ``MAX_CELL`` pixels on the longer side (larger ones are scaled down);
a run that failed or wrote no frames gets grey cells, so rows still line up with the variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

MAX_CELL = 256  # pixels on the longer side of a thumbnail
PAD = 4  # pixels between and around the cells
LINE = 12  # pixels of one line of the default font
BACKGROUND, TEXT, MISSING = (255, 255, 255), (0, 0, 0), (160, 160, 160)
HEADER = ("run", "first frame", "last frame")


@dataclass(frozen=True)
class SheetRow:
    """One run on the sheet: its label and its frames, in order (empty when it wrote none)."""

    label: str
    frames: Sequence[Path]


def thumbnail(path: Path, size: tuple[int, int]) -> Image.Image:
    """The frame as RGB, scaled to fit ``size`` (never enlarged), on a cell of exactly ``size``."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    if image.width > size[0] or image.height > size[1]:
        image.thumbnail(size, Image.Resampling.LANCZOS)
    cell = Image.new("RGB", size, BACKGROUND)
    cell.paste(image, (0, 0))
    return cell


def cell_size(rows: Sequence[SheetRow]) -> tuple[int, int]:
    """The thumbnail cell: the largest frame's size, scaled so that its longer side is at most MAX_CELL."""
    width = height = 1
    for row in rows:
        for path in row.frames[:1]:
            with Image.open(path) as image:
                width, height = max(width, image.width), max(height, image.height)
    scale = min(1.0, MAX_CELL / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass(frozen=True)
class Layout:
    """Where everything goes: the label column's width, the cell size and each row's top and lines."""

    label_w: int
    cell: tuple[int, int]
    lines: list[list[str]]
    tops: list[int]
    size: tuple[int, int]

    def box(self, index: int, column: int) -> tuple[int, int, int, int]:
        """Row ``index``'s cell ``column`` (0: first frame, 1: last): (left, top, right, bottom)."""
        left = PAD + self.label_w + column * (self.cell[0] + PAD)
        return left, self.tops[index], left + self.cell[0], self.tops[index] + self.cell[1]


def layout(rows: Sequence[SheetRow]) -> Layout:
    """The sheet's layout: a header line, then each row's label (one line per ``name=value``) beside its
    first and last frame."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cell_w, cell_h = cell_size(rows)
    lines = [row.label.split(" ") for row in rows]
    widths = [measure.textlength(text, font=font) for row in lines for text in row]
    label_w = int(max([*widths, measure.textlength(HEADER[0], font=font)])) + PAD
    tops, top = [], PAD + LINE + PAD
    for row in lines:
        tops.append(top)
        top += max(cell_h, len(row) * LINE) + PAD
    return Layout(label_w, (cell_w, cell_h), lines, tops, (PAD + label_w + 2 * (cell_w + PAD), top))


def contact_sheet(rows: Sequence[SheetRow]) -> Image.Image:
    """The sheet as an RGB image (``layout`` says where each part is)."""
    font = ImageFont.load_default()
    plan = layout(rows)
    sheet = Image.new("RGB", plan.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), HEADER[0], fill=TEXT, font=font)
    for column, text in enumerate(HEADER[1:]):
        draw.text((plan.box(0, column)[0] if rows else PAD, PAD), text, fill=TEXT, font=font)
    for index, (row, texts) in enumerate(zip(rows, plan.lines, strict=True)):
        for k, text in enumerate(texts):
            draw.text((PAD, plan.tops[index] + k * LINE), text, fill=TEXT, font=font)
        picks = [row.frames[0], row.frames[-1]] if row.frames else [None, None]
        for column, path in enumerate(picks):
            left, top, right, bottom = plan.box(index, column)
            if path is None:
                draw.rectangle((left, top, right - 1, bottom - 1), fill=MISSING)
            else:
                sheet.paste(thumbnail(Path(path), plan.cell), (left, top))
    return sheet


def save_contact_sheet(rows: Sequence[SheetRow], path: Path) -> Path:
    """Write the sheet as a PNG (atomically: a sheet is never seen half written)."""
    import io

    from deforum.image.io import write_atomic

    buffer = io.BytesIO()
    contact_sheet(rows).save(buffer, format="PNG")
    return write_atomic(Path(path), buffer.getvalue())
