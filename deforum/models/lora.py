"""LoRA files on a loaded model, through diffusers and peft (no hand-written merge).

``apply_loras(model, settings.model.lora, models_path=...)`` makes the model's LoRA set exactly the given
``((path, weight), ...)``: each ``.safetensors`` file (kohya / A1111 layout or diffusers / peft layout) is read
and converted by diffusers' own ``lora_state_dict`` and loaded as one peft adapter into the UNet
(``UNet2DConditionModel.load_lora_adapter``) and, when the file has text-encoder weights, into the text
encoder(s) (diffusers' ``load_lora_into_text_encoder``), exactly as ``StableDiffusionPipeline.load_lora_weights``
does; ``set_adapters`` then gives each adapter its weight. The adapters stay unfused, so removing them gives
back the loaded weights bit for bit: a later call with another list (the runner keeps one model across runs)
unloads the previous set first, and ``()`` leaves the model exactly as loaded.

A missing file, a file that is not a safetensors LoRA, or a LoRA whose weights do not fit this model's layers
(a LoRA for another family) is a ``ModelError`` naming the file; nothing of that file stays loaded.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import peft  # noqa: F401  (diffusers' LoRA loading runs on the peft backend; fail here, clearly, without it)
import torch

from deforum.errors import ModelError
from deforum.models import catalogue, download

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "deforum_lora_"
_STATE_ATTR = "_deforum_loras"  # on the model: ((resolved path, size, mtime_ns, weight), ...) now applied


def resolve_lora_path(path: str, models_path: str = "models") -> Path:
    """The LoRA file a ``lora`` entry names: a relative path is looked up in models_path, then as given; a
    catalogue LoRA name (``lcm-lora-sdv1-5.safetensors``, ``lcm-lora-sdxl.safetensors``) missing there is
    downloaded into models_path (offline: the message the checkpoints give).

    ModelError when no such file exists or it is not a ``.safetensors`` file (LoRAs are never unpickled).
    """
    given = Path(os.path.expanduser(str(path)))
    candidates = [given] if given.is_absolute() else [Path(models_path) / given, given]
    found = next((c for c in candidates if c.is_file()), None)
    entry = catalogue.lookup(str(path))
    if found is None and entry is not None and entry.kind == "lora":  # a catalogue LoRA (LCM-LoRA): fetched
        found = download.download(entry, models_path)
    if found is None:
        looked = " and ".join(str(c) for c in candidates)
        raise ModelError(f"lora: LoRA file {str(path)!r} not found (looked at {looked}); "
                         "allowed: the path of a .safetensors LoRA file, absolute or relative to models_path")
    if found.suffix.lower() != ".safetensors":
        raise ModelError(f"lora: {str(found)!r} is not a .safetensors file; allowed: a LoRA in .safetensors "
                         "(kohya or diffusers/peft layout); .ckpt/.pt/.bin LoRAs are not loaded (they can run code)")
    return found.resolve()


def check_lora_files(loras: tuple[tuple[str, float], ...], models_path: str = "models") -> list[Path]:
    """Every LoRA file of ``settings.model.lora`` resolved (ModelError naming the first missing one); no model
    needed, so a run can check them before the model loads."""
    return [resolve_lora_path(path, models_path) for path, _ in loras]


def _components(model: Any) -> dict[str, torch.nn.Module]:
    """The model's LoRA-loadable networks by diffusers' state-dict prefix: unet, text_encoder(, text_encoder_2)."""
    parts = {"unet": model.unet, "text_encoder": getattr(model, "text_encoder", None),
             "text_encoder_2": getattr(model, "text_encoder_2", None)}
    return {name: module for name, module in parts.items() if module is not None}


def _loader_class(model: Any) -> type:
    """The diffusers pipeline class whose LoRA mixin reads and loads files for this model's family."""
    if getattr(model, "text_encoder_2", None) is not None:
        from diffusers import StableDiffusionXLPipeline
        return StableDiffusionXLPipeline
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline


def _adapters_of(module: torch.nn.Module) -> set[str]:
    return set(getattr(module, "peft_config", None) or {})


def _lora_parameter_count(module: torch.nn.Module, adapter: str) -> int:
    """How many LoRA tensors of adapter the module holds (lora_A / lora_B / embedding / magnitude)."""
    marker = f".{adapter}"
    return sum(1 for name, _ in module.named_parameters()
               if ".lora_" in name and (name.endswith(marker) or f"{marker}." in name))


def _has_peft_layers(module: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def _short(error: BaseException, limit: int = 400) -> str:
    """An exception's message on one line: its first two lines, then how many more there were."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    text = " ".join(lines[:2]) + (f" (and {len(lines) - 2} more like it)" if len(lines) > 2 else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _remove_adapters(model: Any, adapters: set[str]) -> None:
    """Remove these adapters; a network left with none gets its original layers back (peft wrappers removed)."""
    with warnings.catch_warnings():  # peft says which adapter stays active; the caller sets the set next
        warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
        for module in _components(model).values():
            _remove_from(module, adapters)


def _remove_from(module: torch.nn.Module, adapters: set[str]) -> None:
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.utils.peft_utils import delete_adapter_layers, recurse_remove_peft_layers

    present = _adapters_of(module)
    mine = present & adapters
    leftover = not present and (hasattr(module, "peft_config") or _has_peft_layers(module))
    if not mine and not leftover:
        return
    if present <= adapters:  # all ours, or an empty shell a failed load left: the loaded layers come back
        if isinstance(module, ModelMixin):
            module.unload_lora()
        else:  # what diffusers' unload_lora_weights does to a transformers text encoder
            recurse_remove_peft_layers(module)
            if hasattr(module, "peft_config"):
                del module.peft_config
            module._hf_peft_config_loaded = None
    else:  # someone else's adapters stay
        for adapter in sorted(mine):
            if isinstance(module, ModelMixin):
                module.delete_adapters(adapter)
            else:
                delete_adapter_layers(module, adapter)
                module.peft_config.pop(adapter, None)


def _load_one(model: Any, path: Path, adapter: str) -> set[str]:
    """Load one LoRA file as adapter; the names of the networks it went into. ModelError when it does not fit."""
    import safetensors

    loader = _loader_class(model)
    components = _components(model)
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            n_keys = len(list(handle.keys()))
    except Exception as error:  # a safetensors header that does not parse
        raise ModelError(f"lora: {str(path)!r} is not a readable .safetensors file ({error}); "
                         "allowed: a LoRA in .safetensors") from None
    if n_keys == 0:
        raise ModelError(f"lora: {str(path)!r} holds no tensors; allowed: a LoRA file")
    kwargs: dict[str, Any] = {"use_safetensors": True, "local_files_only": True, "return_lora_metadata": True}
    if "text_encoder_2" in components:
        kwargs["unet_config"] = model.unet.config  # SGM block numbers of kohya SDXL files
    try:
        state_dict, alphas, metadata = loader.lora_state_dict(str(path.parent), weight_name=path.name, **kwargs)
    except Exception as error:
        raise ModelError(f"lora: {str(path)!r} could not be read as a LoRA ({type(error).__name__}: {_short(error)}); "
                         "allowed: a .safetensors LoRA in kohya or diffusers/peft layout") from None
    if not state_dict or not all("lora" in key for key in state_dict):
        odd = next((key for key in state_dict if "lora" not in key), None)
        raise ModelError(f"lora: {str(path)!r} is not a LoRA (key {odd!r} is no LoRA weight: a checkpoint or "
                         "embedding?); allowed: a .safetensors LoRA in kohya or diffusers/peft layout")
    wanted = {name: sum(1 for key in state_dict if key.startswith(f"{name}.")) for name in components}
    stray = len(state_dict) - sum(wanted.values())
    loaded_into: set[str] = set()
    try:
        for name, module in components.items():
            if not wanted[name]:
                continue
            with warnings.catch_warnings():  # several adapters in one network are what we want
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")  # a failure
                _load_component(loader, name, module, _for_module(state_dict, name, module), alphas, metadata,
                                adapter)
            loaded_into.add(name)
            got = _lora_parameter_count(module, adapter)
            if got != wanted[name]:
                raise ValueError(f"{wanted[name] - got} of its {wanted[name]} {name} weights fit no layer")
        if stray:
            raise ValueError(f"{stray} of its weights are for no network of this model "
                             f"({', '.join(components)})")
    except Exception as error:
        _remove_adapters(model, {adapter})
        family = getattr(getattr(model, "family", None), "label", None) or getattr(
            getattr(model, "family", None), "name", None) or type(model).__name__
        raise ModelError(f"lora: {str(path)!r} does not fit this model ({family}): {_short(error)}; "
                         "allowed: a LoRA trained for this model family") from None
    return loaded_into


def _remove_all(model: Any) -> None:
    """Unload every adapter apply_loras loaded (others' adapters stay)."""
    ours = {a for module in _components(model).values() for a in _adapters_of(module) if a.startswith(ADAPTER_PREFIX)}
    _remove_adapters(model, ours)
    setattr(model, _STATE_ATTR, ())


def _for_module(state_dict: dict, name: str, module: torch.nn.Module) -> dict:
    """The state dict with ``{name}.text_model.`` keys as ``{name}.`` when the text encoder is a flattened
    ``CLIPTextModel`` (transformers 5: no ``text_model`` attribute). diffusers 0.42 does the same itself;
    0.39 (Colab's) does not, and would find none of the text-encoder layers of a kohya or older file."""
    if name == "unet" or hasattr(module, "text_model"):
        return state_dict
    head = f"{name}.text_model."
    return {(f"{name}.{key[len(head):]}" if key.startswith(head) else key): value
            for key, value in state_dict.items()}


def _load_component(loader: type, name: str, module: torch.nn.Module, state_dict: dict, alphas: Any,
                    metadata: Any, adapter: str) -> None:
    """One network's part of a LoRA, as the pipeline's load_lora_weights loads it."""
    from diffusers.loaders.lora_pipeline import _LOW_CPU_MEM_USAGE_DEFAULT_LORA as low_cpu

    if name == "unet":
        loader.load_lora_into_unet(state_dict, network_alphas=alphas, unet=module, adapter_name=adapter,
                                   metadata=metadata, low_cpu_mem_usage=low_cpu)
    else:
        loader.load_lora_into_text_encoder(state_dict, network_alphas=alphas, text_encoder=module, prefix=name,
                                           adapter_name=adapter, metadata=metadata, low_cpu_mem_usage=low_cpu)


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def apply_loras(model: Any, loras: tuple[tuple[str, float], ...], *, models_path: str = "models") -> None:
    """Make the model's LoRA set exactly ``loras`` (``settings.model.lora``: (path, weight) pairs).

    A relative path is looked up in models_path, then as given. The same files as the previous call only get
    their weights set again; otherwise the previous set is unloaded and each file is loaded as one adapter.
    ``()`` removes them all: the networks are the loaded ones again, bit for bit. On a ModelError (a missing
    file, not a LoRA, another family's LoRA) the model is left with no LoRA at all, as loaded.
    """
    try:
        paths = check_lora_files(tuple(loras), models_path)
    except ModelError:
        _remove_all(model)
        raise
    files = tuple(_file_key(p) for p in paths)
    weights = [float(w) for _, w in loras]
    previous = getattr(model, _STATE_ATTR, ())
    names = [f"{ADAPTER_PREFIX}{i}" for i in range(len(paths))]
    if tuple(entry[:3] for entry in previous) != files:
        _remove_all(model)
        try:
            for path, name in zip(paths, names, strict=True):
                _load_one(model, path, name)
        except ModelError:
            _remove_all(model)
            raise
    if paths:
        _set_weights(model, names, weights)
    setattr(model, _STATE_ATTR, tuple((*f, w) for f, w in zip(files, weights, strict=True)))
    if paths:
        log.info("LoRA: %s", ", ".join(f"{p.name} x {w:g}" for p, w in zip(paths, weights, strict=True)))


def _set_weights(model: Any, names: list[str], weights: list[float]) -> None:
    """Activate exactly these adapters with these weights in every network that has them (diffusers' set_adapters)."""
    from diffusers.loaders.lora_base import set_adapters_for_text_encoder
    from diffusers.models.modeling_utils import ModelMixin

    for module in _components(model).values():
        present = _adapters_of(module)
        pairs = [(n, w) for n, w in zip(names, weights, strict=True) if n in present]
        if not pairs:
            continue
        if isinstance(module, ModelMixin):
            module.set_adapters([n for n, _ in pairs], [w for _, w in pairs])
        else:
            set_adapters_for_text_encoder([n for n, _ in pairs], module, [w for _, w in pairs])
