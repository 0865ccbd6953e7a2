"""The one exception family for user mistakes (DESIGN section 6).

Every message names the field, the value, what is allowed and, where it applies, the place (file, key,
character position), so an artist can act on it without reading a traceback.
"""

from __future__ import annotations


class DeforumError(Exception):
    """A problem the user can fix: bad settings, a missing file, an unsafe checkpoint, no network."""


class ScheduleError(DeforumError, ValueError):
    """A keyframe schedule or weighted prompt that cannot be parsed or evaluated."""

    def __init__(self, message: str, *, field: str | None = None, text: str | None = None,
                 position: int | None = None):
        self.field = field
        self.text = text
        self.position = position
        where = []
        if field:
            where.append(f"in {field!r}")
        if position is not None:
            where.append(f"at character {position}")
        prefix = (" ".join(where) + ": ") if where else ""
        detail = ""
        if text is not None:
            shown = text if len(text) <= 200 else text[:200] + "..."
            detail = f"\n  {shown}"
            if position is not None and position <= 200:
                detail += "\n  " + " " * position + "^"
        super().__init__(prefix + message + detail)


class SettingsError(DeforumError, ValueError):
    """A settings field with a value that is not allowed (wrong type, out of range, unknown choice)."""


class ModelError(DeforumError):
    """A checkpoint or config that cannot be found, downloaded, verified or loaded safely."""


class MediaError(DeforumError):
    """An image, mask or video that cannot be read, fetched or written."""


class StateError(DeforumError, ValueError):
    """A resume state (``{timestring}_state/``) that is damaged, crafted or does not fit the settings.

    The message names the state file, the key and what is allowed; it is raised before any model loads.
    """


class FrameError(DeforumError, ValueError):
    """A frame (or the init it is made from) that is not finite: NaN or inf pixels, never saved.

    The message names the frame and the values it was computed from; the frames before it stay on disk.
    """
