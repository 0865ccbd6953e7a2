"""Simulacra Aesthetic Captions linear heads on CLIP image embeddings (``aesthetics_scale``, spec 6.9).

A head predicts a 0-10 rating from an L2-normalised CLIP image embedding: ``Linear(e^ * sqrt(dim))``.
The file for the chosen ``clip_name`` is looked up in ``models_path`` and downloaded there on first use
(v0.6's GitHub URL), with its sha256 checked; it is read as plain tensors (no pickle code runs).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from deforum.errors import ModelError, SettingsError
from deforum.guidance.clip import Clip, normalize

log = logging.getLogger(__name__)

HEADS_URL = "https://github.com/crowsonkb/simulacra-aesthetic-models/raw/master/models/{}"
# clip_name -> (file, sha256, embedding dim)
AESTHETIC_HEADS: dict[str, tuple[str, str, int]] = {
    "ViT-B/32": ("sac_public_2022_06_29_vit_b_32_linear.pth",
                 "64315370e2293a08cc2f4816ae9db715f935791569c1a57d84b943e482ea5e12", 512),
    "ViT-B/16": ("sac_public_2022_06_29_vit_b_16_linear.pth",
                 "cdc27b2196565bcb69f2692731084b0189612b98aae74adec033782469ab583c", 512),
    "ViT-L/14": ("sac_public_2022_06_29_vit_l_14_linear.pth",
                 "f77d1d0f4bb04b0ff8e60c5747fd0bfff0cc4a85263a6106627522c06eae85c6", 768),
}
MAX_RATING = 10.0
DOWNLOAD_TIMEOUT_S = 60.0


class AestheticHead(torch.nn.Module):
    """score(e) = Linear(normalize(e) * sqrt(dim)), a single unit predicting a 0-10 rating."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(dim, 1)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(embeds, dim=-1) * embeds.shape[-1] ** 0.5)


def head_entry(clip_name: str) -> tuple[str, str, int]:
    try:
        return AESTHETIC_HEADS[clip_name]
    except KeyError:
        raise SettingsError(f"aesthetics_scale: there is no aesthetics head for clip_name {clip_name!r}; use "
                            f"one of {', '.join(map(repr, AESTHETIC_HEADS))}") from None


def _download(url: str, dest: Path, sha256: str) -> None:
    """Stream url to dest through a temp file, checking the sha256 before the file takes its name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ModelError(f"{dest.name}: downloaded from {url} but its sha256 is {digest.hexdigest()}, "
                             f"expected {sha256}; not used")
        os.replace(tmp, dest)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ModelError(f"{dest.name} is not in {dest.parent} and cannot be downloaded ({error}); download "
                         f"{url} and put it at {dest}") from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def head_path(clip_name: str, models_path: str | os.PathLike[str], *, check_sha256: bool = True) -> Path:
    """models_path/<head file> for clip_name, downloaded first if missing, its sha256 verified."""
    from deforum.models.download import verify_sha256

    filename, sha256, _ = head_entry(clip_name)
    path = Path(models_path) / filename
    if not path.is_file():
        log.info("Downloading the aesthetics head %s to %s", filename, models_path)
        _download(HEADS_URL.format(filename), path, sha256)
    elif check_sha256:
        verify_sha256(path, sha256)
    return path


def load_head(clip_name: str, models_path: str | os.PathLike[str], device: str | torch.device = "cpu", *,
              check_sha256: bool = True) -> AestheticHead:
    """The frozen head for clip_name (tensors only: ``torch.load(weights_only=True)``)."""
    _, _, dim = head_entry(clip_name)
    path = head_path(clip_name, models_path, check_sha256=check_sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file: pickle and zip errors of every kind
        raise ModelError(f"{path}: not a readable aesthetics head ({error})") from error
    state = {k.removeprefix("linear."): v for k, v in dict(state).items()}
    head = AestheticHead(dim)
    try:
        head.linear.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{path}: does not hold a {dim}-dim linear aesthetics head ({error})") from error
    return head.to(device).eval().requires_grad_(False)


@dataclass
class AestheticsLoss:
    """``aesthetics_scale``: mean over the batch of (10 - predicted rating) of x's CLIP embedding.

    x is mapped to [0, 1], resized (bilinear) to CLIP's input size and CLIP-normalised, as the heads were
    trained (v0.6 fed the raw [-1, 1] values with a nearest resize and scored the first image only).
    """

    clip: Clip
    head: AestheticHead

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted rating per image [B] (0-10)."""
        images = F.interpolate((x + 1) / 2, size=self.clip.size, mode="bilinear", align_corners=False)
        embeds = self.clip.encode_image(normalize(images))
        return self.head(embeds.to(next(self.head.parameters()).dtype))[:, 0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (MAX_RATING - self.score(x)).mean()


__all__ = ["AESTHETIC_HEADS", "AestheticHead", "AestheticsLoss", "head_entry", "head_path", "load_head"]
