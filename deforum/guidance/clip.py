"""CLIP for guidance (spec generation 6.8): open-clip-torch models, cutouts and the spherical-distance loss.

``clip_name`` keeps v0.6's OpenAI names; ``CLIP_MODELS`` maps each to an open_clip (architecture, pretrained
tag). A model is loaded once per process and device, in eval mode with frozen weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from deforum.errors import ModelError, SettingsError

# guide name -> (open_clip architecture, pretrained tag or None for random weights, quick_gelu)
CLIP_MODELS: dict[str, tuple[str, str | None, bool]] = {
    "ViT-L/14": ("ViT-L-14", "openai", True),
    "ViT-L/14@336px": ("ViT-L-14-336", "openai", True),
    "ViT-B/16": ("ViT-B-16", "openai", True),
    "ViT-B/32": ("ViT-B-32", "openai", True),
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_LOADED: dict[tuple, Clip] = {}


@dataclass
class Clip:
    """A frozen open_clip model with its tokenizer and input size."""

    name: str
    model: Any
    tokenizer: Any
    size: int
    _texts: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encode_text(self, text: str) -> torch.Tensor:
        """[1, D] float embedding of one text (the whole string; tokens past CLIP's 77 are cut), cached."""
        if text not in self._texts:
            with torch.no_grad():
                tokens = self.tokenizer([text]).to(self.device)
                self._texts[text] = self.model.encode_text(tokens).float()
        return self._texts[text]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, D] float embeddings of images already resized to ``size`` and CLIP-normalised."""
        return self.model.encode_image(images.to(self.device, self.dtype)).float()


def normalize(images01: torch.Tensor) -> torch.Tensor:
    """CLIP's per-channel mean/std normalisation of images in [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
    return (images01 - mean) / std


def arch_of(clip_name: str) -> tuple[str, str | None, bool]:
    try:
        return CLIP_MODELS[clip_name]
    except KeyError:
        raise SettingsError(f"clip_name: {clip_name!r} is not one of {', '.join(map(repr, CLIP_MODELS))}") from None


def load_clip(clip_name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Clip:
    """The open_clip model for a guide ``clip_name``, downloaded by open_clip on first use, loaded once."""
    arch, pretrained, quick_gelu = arch_of(clip_name)
    key = (arch, pretrained, quick_gelu, str(torch.device(device)), dtype)
    if key in _LOADED:
        return _LOADED[key]
    import open_clip

    try:
        model = open_clip.create_model(arch, pretrained=pretrained, force_quick_gelu=quick_gelu, device="cpu")
    except Exception as error:  # open_clip raises RuntimeError, OSError or hub errors when offline
        where = f"open_clip {arch!r} with the {pretrained!r} weights" if pretrained else f"open_clip {arch!r}"
        raise ModelError(f"clip_name {clip_name!r}: cannot load {where} ({type(error).__name__}: {error}). "
                         "It is downloaded from the Hugging Face hub into its cache on first use: connect to "
                         "the internet once, or copy the cache (~/.cache/huggingface) from a machine that has "
                         "it.") from error
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    clip = Clip(clip_name, model, open_clip.get_tokenizer(arch), size)
    _LOADED[key] = clip
    return clip


def make_cutouts(images: torch.Tensor, cut_size: int, cutn: int, cut_pow: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``cutn`` random square crops of each image, average-pooled to cut_size (v0.6's MakeCutouts).

    size = int(U^cut_pow * (max_s - min_s) + min_s), U ~ U[0, 1) and the offsets drawn on the CPU from
    ``generator``; small cut_pow gives crops of the whole shorter side.
    """
    h, w = images.shape[-2:]
    max_size = min(h, w)
    min_size = min(h, w, cut_size)
    cutouts = []
    for _ in range(cutn):
        u = float(torch.rand([], generator=generator))
        size = int(u ** cut_pow * (max_size - min_size) + min_size)
        ox = int(torch.randint(0, w - size + 1, (), generator=generator))
        oy = int(torch.randint(0, h - size + 1, (), generator=generator))
        crop = images[:, :, oy:oy + size, ox:ox + size]
        cutouts.append(F.adaptive_avg_pool2d(crop, cut_size))
    return torch.cat(cutouts)


def spherical_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|u^ - v^| / 2)^2 between L2-normalised embeddings (broadcasting over leading axes)."""
    u = F.normalize(u, dim=-1)
    v = F.normalize(v, dim=-1)
    return (u - v).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


@dataclass
class ClipLoss:
    """``clip_scale`` (spec 6.8): mean spherical distance of CLIP cutouts of x to the prompt's embedding.

    The prompt is the current image's whole prompt (v0.6 looped over its characters); set it with
    ``set_prompt`` before sampling. The cutout RNG restarts from ``seed`` for every image.
    """

    clip: Clip
    cutn: int = 1
    cut_pow: float = 0.0001
    seed: int = 0
    prompt: str | None = None
    generator: torch.Generator = field(default_factory=torch.Generator, repr=False)

    def set_prompt(self, prompt: str | None) -> None:
        if prompt is not None:
            self.prompt = prompt
        self.generator.manual_seed(self.seed)

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of x's CLIP embedding (whole image, pooled) to the prompt (a metric)."""
        with torch.no_grad():
            images = normalize(F.adaptive_avg_pool2d((x + 1) / 2, self.clip.size))
            embeds = self.clip.encode_image(images)
            return F.cosine_similarity(embeds, self.clip.encode_text(self._text()).to(embeds.device)).mean()

    def _text(self) -> str:
        if not self.prompt:
            raise SettingsError("clip_scale: CLIP guidance needs a prompt, and this image has none")
        return self.prompt

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        target = self.clip.encode_text(self._text())
        cutouts = make_cutouts((x + 1) / 2, self.clip.size, self.cutn, self.cut_pow, self.generator)
        embeds = self.clip.encode_image(normalize(cutouts))
        return spherical_distance(embeds, target.to(embeds.device)).mean()


__all__ = ["CLIP_MODELS", "Clip", "ClipLoss", "arch_of", "load_clip", "make_cutouts", "normalize",
           "spherical_distance"]
