"""Keyframe sources: files and programs outside the settings that produce schedule strings or per-frame
values before ``resolve()`` (docs/architecture.md, "Where new work lands").

- ``deforum.sources.audio``: one value per frame from a sound file (``deforum audio``, the notebook's audio
  cell); librosa, the optional extra ``audio``, is imported only when a file is read.
- ``deforum.sources.parseq``: a Parseq manifest's per-frame values (``parseq_manifest``).

Importing this package imports neither module.
"""
