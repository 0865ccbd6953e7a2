"""Keyframe sources: files and programs outside the settings that produce schedule strings or per-frame
values before ``resolve()`` (docs/architecture.md, "Where new work lands").

``deforum.sources.audio``: one value per frame from a sound file (``deforum audio``, the notebook's audio cell).
Each module imports its optional libraries (librosa) only when called: importing this package costs nothing.
"""
