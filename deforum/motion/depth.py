"""Depth estimation for the 3D warp and depth-map files (spec 5.5, 6.9; generation spec 9).

The default is MiDaS v3 DPT-Large, the network of v0.6's ``dpt_large-midas-2f21e586.pt``, loaded through
transformers (``Intel/dpt-large``) and fed exactly as v0.6 fed it: RGB/255 resized with one common factor
(384/h or 384/w, whichever is closer to 1) to multiples of 32 with OpenCV bicubic, normalised with mean
and std 0.5, network (fp16 on CUDA), bicubic back to h x w, then ``(50 - m)/19`` so that farther is larger.
Depth Anything V2 (small) is the alternative; it gets its own input size (multiples of 14, at least 518)
and ImageNet normalisation, and the same ``(50 - m)/19`` mapping (its output scale is not calibrated to
MiDaS, so the same depth-dependent motion looks different; see docs/compat.md).

Models are fetched into ``models_path`` on first use and loaded once per process.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deforum.errors import MediaError, ModelError


@dataclass(frozen=True)
class DepthFamily:
    """How one kind of depth network wants its input."""

    model_type: str  # transformers config.model_type
    size: int  # target side before rounding
    multiple: int  # each side is rounded to a multiple of this
    resize: str  # "minimal": scale closer to 1 (MiDaS); "lower_bound": both sides >= size (Depth Anything)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


MIDAS = DepthFamily("dpt", 384, 32, "minimal", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
DEPTH_ANYTHING = DepthFamily("depth_anything", 518, 14, "lower_bound", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
FAMILIES = {f.model_type: f for f in (MIDAS, DEPTH_ANYTHING)}

# Short names accepted by the depth model setting, each a Hugging Face repository.
DEPTH_MODELS = {
    "midas": "Intel/dpt-large",
    "dpt_large": "Intel/dpt-large",
    "depth_anything": "depth-anything/Depth-Anything-V2-Small-hf",
    "depth_anything_v2": "depth-anything/Depth-Anything-V2-Small-hf",
    "depth_anything_v2_small": "depth-anything/Depth-Anything-V2-Small-hf",
}

OFFLOAD_DEVICE = torch.device("cpu")  # where an offloaded depth network waits between frames

_NETWORKS: dict[tuple[str, str, torch.dtype], tuple[torch.nn.Module, DepthFamily]] = {}
_warned_adabins = False


class DepthModel:
    """A depth estimator: ``predict(uint8 HxWx3 RGB) -> float32 HxW depth`` (larger = farther).

    ``name`` is 'midas' (default, v0.6's network), 'depth_anything_v2', a Hugging Face repository id, or a
    local folder holding a transformers depth model (config.json + weights). ``midas_weight`` < 1 asked
    v0.6 to blend in AdaBins, which is not provided: MiDaS is used alone (with one warning per process).
    ``offload`` (Root's ``offload_depth_model``) keeps the network on the CPU between predictions and moves
    it to ``device`` only while it runs, to free VRAM for the diffusion model; otherwise it stays on
    ``device`` for the whole run. ``half`` (default: on CUDA) runs the network in float16; a prediction
    that overflows there (inf or NaN) is redone in float32, which is then kept, with one warning.
    """

    def __init__(
        self,
        name: str = "midas",
        *,
        models_path: str | os.PathLike = "models",
        device: str | torch.device = "cpu",
        midas_weight: float = 1.0,
        half: bool | None = None,
        offload: bool = False,
    ):
        self.device = torch.device(device)
        half = self.device.type == "cuda" if half is None else half
        self.dtype = torch.float16 if half else torch.float32
        self.folder = resolve_model_folder(name, models_path)
        self.name = name
        self.network, self.family = _load_network(self.folder, self.device, self.dtype)
        self.offload = bool(offload)
        self._park()
        if midas_weight < 1.0:
            _warn_no_adabins(midas_weight)

    @classmethod
    def from_network(cls, network: torch.nn.Module, *, device: str | torch.device = "cpu",
                     offload: bool = False, name: str = "") -> DepthModel:
        """A DepthModel around an already built transformers depth network (benchmarks, tests)."""
        model = cls.__new__(cls)
        model.folder = None
        model.device = torch.device(device)
        model.dtype = next(network.parameters()).dtype
        model.name = name or type(network).__name__
        model.family = FAMILIES[network.config.model_type]
        model.network = network.eval().to(model.device)
        model.offload = bool(offload)
        model._park()
        return model

    def _park(self) -> None:
        """Where the network waits between predictions: the CPU when offloading, else its device."""
        self.network.to(OFFLOAD_DEVICE if self.offload else self.device)

    @torch.no_grad()
    def predict(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Depth of an HxWx3 uint8 RGB image, as an HxW float32 tensor on the model's device.

        A uint8 tensor (the device frame loop's frame) is resized on its device (``prepare_input_tensor``)
        and nothing is read back: a non-finite prediction is not redone in float32 here, it makes the warped
        frame non-finite, which the loop reports as a ``FrameError``.
        """
        if isinstance(image, torch.Tensor):
            return self._predict_tensor(image)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise MediaError(
                f"depth prediction needs an HxWx3 uint8 RGB image; got "
                f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            )
        height, width = image.shape[:2]
        pixels = prepare_input(image, self.family).to(self.device)
        if self.device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        inverse = self._forward(pixels)
        if not bool(torch.isfinite(inverse).all()):  # one host read per frame, not per step
            if self.dtype == torch.float32:
                raise MediaError(f"depth model {self.name!r} predicted non-finite depth (inf or NaN) for a "
                                 f"{width} x {height} frame in float32")
            self._use_float32()
            inverse = self._forward(pixels)
        inverse = F.interpolate(inverse.unsqueeze(1), size=(height, width), mode="bicubic", align_corners=False)
        return (50.0 - inverse[0, 0]) / 19.0

    def _predict_tensor(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise MediaError(f"depth prediction needs an HxWx3 uint8 RGB image; got {image.dtype} "
                             f"{tuple(image.shape)}")
        height, width = image.shape[:2]
        pixels = prepare_input_tensor(image.to(self.device), self.family)
        if self.device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        inverse = self._forward(pixels)
        inverse = F.interpolate(inverse.unsqueeze(1), size=(height, width), mode="bicubic", align_corners=False)
        return (50.0 - inverse[0, 0]) / 19.0

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's relative inverse depth (1 x h' x w', float32), moving it in and out when offloading."""
        if self.offload:
            self.network.to(self.device)
        try:
            return _network_forward(self.network, pixels.to(self.dtype)).float()
        finally:
            if self.offload:
                self.network.to(OFFLOAD_DEVICE)

    def _use_float32(self) -> None:
        """Switch to float32 for the rest of the process after a half-precision overflow."""
        warnings.warn(f"depth model {self.name!r} overflowed in {str(self.dtype).replace('torch.', '')} "
                      "(inf or NaN depth); it runs in float32 from now on (set half_precision: False to "
                      "start that way)", UserWarning, stacklevel=3)
        if self.folder is not None:
            _NETWORKS.pop((str(self.folder.resolve()), str(self.device), self.dtype), None)
            self.network, _ = _load_network(self.folder, self.device, torch.float32)
        else:
            self.network = self.network.float()
        self.dtype = torch.float32
        self._park()


def prepare_input(image: np.ndarray, family: DepthFamily) -> torch.Tensor:
    """uint8 RGB -> normalised 1x3xh'xw' float32 network input, resized as the family wants."""
    height, width = image.shape[:2]
    new_height, new_width = network_size(height, width, family)
    pixels = image.astype(np.float32) / 255.0
    pixels = cv2.resize(pixels, (new_width, new_height), interpolation=cv2.INTER_CUBIC)
    pixels = (pixels - np.float32(family.mean)) / np.float32(family.std)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32))


def prepare_input_tensor(image: torch.Tensor, family: DepthFamily) -> torch.Tensor:
    """``prepare_input`` of an HxWx3 uint8 tensor on its device: torch's bicubic (a = -0.75, as OpenCV's
    INTER_CUBIC, edge pixels repeated) instead of ``cv2.resize``; equal to it up to float rounding."""
    height, width = image.shape[:2]
    size = network_size(height, width, family)
    pixels = (image.to(torch.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    pixels = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False)
    mean = torch.tensor(family.mean, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(family.std, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def network_size(height: int, width: int, family: DepthFamily) -> tuple[int, int]:
    """(h', w') of the network input: one scale for both sides, each rounded to a multiple (MiDaS rules)."""
    scale_h, scale_w = family.size / height, family.size / width
    if family.resize == "minimal":
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        return _round_to(scale * height, family.multiple), _round_to(scale * width, family.multiple)
    scale = max(scale_h, scale_w)
    return _ceil_to(scale * height, family.multiple), _ceil_to(scale * width, family.multiple)


def _round_to(x: float, multiple: int) -> int:
    # np.round: halves to even, as MiDaS's transform did; never 0 (extreme aspect ratios crashed v0.6).
    return max(multiple, int(np.round(x / multiple) * multiple))


def _ceil_to(x: float, multiple: int) -> int:
    return int(np.ceil(x / multiple) * multiple)


def _network_forward(network: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Relative inverse depth, 1 x h' x w'."""
    config = network.config
    square = pixels.shape[-1] == pixels.shape[-2]
    if config.model_type != "dpt" or square or config.is_hybrid or config.backbone_config is not None:
        return network(pixel_values=pixels).predicted_depth
    return dpt_forward_any_shape(network, pixels)


def dpt_forward_any_shape(network: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """A plain-ViT transformers DPT run on a non-square input.

    transformers' DPT neck assumes a square patch grid; MiDaS feeds non-square inputs (768x512 -> 576x384),
    so the three stages are called here with the real grid (the embeddings already resize positions).
    """
    config = network.config
    outputs = network.dpt(pixels, output_hidden_states=True)
    features = [f for i, f in enumerate(outputs.hidden_states[1:]) if i in config.backbone_out_indices]
    patch = config.patch_size
    features = network.neck(features, pixels.shape[-2] // patch, pixels.shape[-1] // patch)
    return network.head(features)


def resolve_model_folder(name: str, models_path: str | os.PathLike) -> Path:
    """A local folder holding the depth model ``name``, downloading it into ``models_path`` if needed."""
    if os.path.isdir(name):
        return Path(name)
    repo_id = DEPTH_MODELS.get(name, name)
    if repo_id.count("/") != 1:
        raise ModelError(
            f"depth model {name!r} is neither a local folder nor a known model; use one of "
            f"{sorted(DEPTH_MODELS)}, a Hugging Face repository id, or a folder with config.json"
        )
    folder = Path(models_path) / repo_id.split("/")[1]
    if _has_weights(folder):
        return folder
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise ModelError(_missing_message(name, repo_id, folder, "HF_HUB_OFFLINE is set"))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        snapshot_download(repo_id, local_dir=folder, allow_patterns=["*.json", "*.safetensors"])
        if not _has_weights(folder):  # older repositories only have pytorch_model.bin
            snapshot_download(repo_id, local_dir=folder, allow_patterns=["pytorch_model.bin"])
    except (OSError, HfHubHTTPError) as exc:
        raise ModelError(_missing_message(name, repo_id, folder, f"the download failed: {exc}")) from exc
    if not _has_weights(folder):
        raise ModelError(_missing_message(name, repo_id, folder, "the repository has no model weights"))
    return folder


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()
    )


def _missing_message(name: str, repo_id: str, folder: Path, reason: str) -> str:
    return (
        f"depth model {name!r} is not in {str(folder)!r} and could not be downloaded ({reason}). "
        f"Put the files of https://huggingface.co/{repo_id} (config.json and model.safetensors) in "
        f"that folder, e.g. `hf download {repo_id} --local-dir {folder}` on a machine with internet, "
        f"or set the depth model to a local folder that has them."
    )


def _load_network(folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, DepthFamily]:
    key = (str(folder.resolve()), str(device), dtype)
    if key not in _NETWORKS:
        from transformers import AutoConfig, AutoModelForDepthEstimation

        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the depth model config in {str(folder)!r}: {exc}") from exc
        if config.model_type not in FAMILIES:
            raise ModelError(
                f"the model in {str(folder)!r} is a {config.model_type!r} model; depth needs one "
                f"of {sorted(FAMILIES)} (MiDaS DPT or Depth Anything)"
            )
        try:
            network = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the depth model in {str(folder)!r}: {exc}") from exc
        network = network.eval().to(device)
        if device.type == "cuda":
            network = network.to(memory_format=torch.channels_last)
        _NETWORKS[key] = (network, FAMILIES[config.model_type])
    return _NETWORKS[key]


def _warn_no_adabins(midas_weight: float) -> None:
    global _warned_adabins
    if not _warned_adabins:
        _warned_adabins = True
        warnings.warn(
            f"midas_weight={midas_weight} asks for an AdaBins blend, which this version does not "
            "provide; depth comes from the depth model alone (as v0.6 did whenever AdaBins failed)",
            UserWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------------
# Depth-map files


def depth_map_image(depth: torch.Tensor | np.ndarray, state: dict) -> np.ndarray:
    """HxW depth -> HxWx3 uint8 grey image (farther = brighter) on a scale that stays fixed for the run.

    ``state`` is the run's ``{"dmin", "dmax"}`` (JSON-friendly, kept for resume): the range of the first map
    saved, used for every later map, so one depth has one grey level in every frame; depths outside it are
    clipped to black/white. v0.6 widened the range whenever a frame went beyond it (spec 6.9, 12.1 #20), so
    the same depth drifted to other greys over the run. Grey = ``trunc((D - dmin) / (dmax - dmin) * 255)``.
    """
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().float().cpu().numpy()
    d = np.asarray(depth, np.float32)
    if not state:
        state["dmin"], state["dmax"] = float(d.min()), float(d.max())
    dmin, dmax = np.float32(state["dmin"]), np.float32(state["dmax"])
    scaled = (d - dmin) / max(np.float32(1e-8), dmax - dmin) * np.float32(255)
    return np.repeat(np.clip(scaled, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def save_depth_map(depth: torch.Tensor | np.ndarray, path: str | os.PathLike, state: dict) -> dict:
    """Write ``{timestring}_depth_{frame:05}.png`` atomically, updating and returning the run's ``state``."""
    from deforum.image.io import save_png_atomic

    save_png_atomic(depth_map_image(depth, state), path)
    return state
