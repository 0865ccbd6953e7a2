"""Showing the library's messages to a person.

The library does not print: what it has to say ("Loaded ... on cuda (float16)", "Downloading ...") goes to
``logging`` on loggers under ``deforum``. The CLI and the notebook call show_progress_messages() so those
messages reach the screen: INFO lines as the bare message, other levels as ``LEVEL logger: message``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER = "deforum"
HANDLER_NAME = "deforum.show_progress_messages"


class _PlainInfo(logging.Formatter):
    """INFO records as the bare message (what a print showed); the others with their level and logger."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return record.message if record.levelno == logging.INFO else super().formatMessage(record)


class _Handler(logging.StreamHandler):
    """A StreamHandler that, given no stream, writes to whatever sys.stderr is at the time of each record
    (a notebook or a test may replace sys.stderr after the handler is attached)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self.fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self.fixed if self.fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ / setStream assign it
        pass


def show_progress_messages(stream: TextIO | None = None, level: int | str = logging.INFO) -> logging.Handler:
    """Show the ``deforum`` logger's messages of ``level`` and above on ``stream`` (default: the current
    sys.stderr), one line each. Idempotent: a second call adjusts the one handler instead of adding another.
    Returns that handler."""
    logger = logging.getLogger(LOGGER)
    handler = next((h for h in logger.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = _Handler(stream)
        handler.set_name(HANDLER_NAME)
        handler.setFormatter(_PlainInfo())
        logger.addHandler(handler)
    else:
        handler.fixed = stream
    logger.setLevel(level)
    return handler


def hide_progress_messages() -> None:
    """Take show_progress_messages()'s handler off the ``deforum`` logger again (no-op when there is none)."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
        logger.removeHandler(handler)
