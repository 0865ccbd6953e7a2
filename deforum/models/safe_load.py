"""Read checkpoint files without running anything inside them (DESIGN section 6, spec 11.3).

``.safetensors`` files are read with safetensors. ``.ckpt`` files (PyTorch zip archives holding a pickle)
are read with a restricted unpickler: only tensors, storages, plain containers, a few inert constructors
(torch dtypes and sizes, numpy scalars) and Lightning callback objects (turned into inert stubs, without
importing pytorch-lightning) may appear; any other global is refused with a ModelError before it is called.
Nothing is extracted to disk: tensor records are read from the zip into memory, and each record's size is
checked against the size the pickle declares before anything is allocated.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deforum.errors import ModelError

StateDict = dict[str, torch.Tensor]

# Legacy typed storage classes that torch.save names in the pickle, and the dtype each one holds.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

_TORCH_DTYPES = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16",
    "int64", "long", "int32", "int", "int16", "short", "int8", "uint8", "bool",
}

_ALLOWED_CODECS = {"latin1", "latin-1", "iso-8859-1"}
_RECORD_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")  # torch.save names tensor records 0, 1, 2 ...
_MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032:1


class _StorageType:
    """What find_class returns for a torch storage class: only its dtype, nothing callable."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class InertStub:
    """Stand-in for a Lightning object (e.g. the ModelCheckpoint callback): keeps its state, does nothing."""

    stub_of = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert stub of {self.stub_of}>"


def _make_stub(module: str, name: str) -> type:
    return type(name, (InertStub,), {"stub_of": f"{module}.{name}", "__module__": __name__})


def _rebuild_tensor(storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Safe twin of torch._utils._rebuild_tensor_v2: a strided view on an already-checked flat storage."""
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise ModelError("checkpoint pickle: a tensor is rebuilt from something that is not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in size + stride):
        raise ModelError(f"checkpoint pickle: invalid tensor layout size={size} stride={stride}")
    extent = 1 + sum((n - 1) * st for n, st in zip(size, stride, strict=True)) if all(size) else 0
    if storage_offset + extent > storage.numel():
        raise ModelError(f"checkpoint pickle: tensor of size {size} reaches past the end of its storage "
                         f"({storage.numel()} elements)")
    return storage.as_strided(size, stride, storage_offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None,
                       *state: Any) -> torch.Tensor:
    """nn.Parameter objects become plain tensors (we never train)."""
    return data


def _codecs_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles write bytes as ``_codecs.encode(text, 'latin1')``; allow only that codec."""
    if not isinstance(obj, str) or encoding.lower() not in _ALLOWED_CODECS:
        raise ModelError(f"checkpoint pickle: refused _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1")


def _numpy_dtype(*args: Any, **kwargs: Any) -> Any:
    import numpy as np

    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise ModelError("checkpoint pickle: refused numpy object dtype")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise ModelError("checkpoint pickle: refused numpy scalar that is not plain numeric data")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _find_allowed(module: str, name: str) -> Any:
    """The allow-list: every global a checkpoint pickle may name, mapped to a safe object."""
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
        return _rebuild_tensor
    if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        return _rebuild_parameter
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
        return _StorageType(name)
    if module == "torch" and name == "Size":
        return torch.Size
    if module == "torch" and name in _TORCH_DTYPES:
        return getattr(torch, name)
    if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "bytearray", "complex"):
        return {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}[name]
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
        return _numpy_scalar
    if module == "numpy" and name == "dtype":
        return _numpy_dtype
    if module.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric"):
        return _make_stub(module, name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._path = zf, prefix, path
        self._archive_size = path.stat().st_size
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _find_allowed(module, name)
        if found is None:
            raise ModelError(f"{self._path.name}: refused to load: the checkpoint's pickle names the global "
                             f"'{module}.{name}', which is not a tensor or plain data. Nothing was executed. "
                             "Use a .safetensors version of this model, or re-save it from trusted code.")
        return found

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise ModelError(f"{self._path.name}: unexpected persistent id in the checkpoint pickle: {pid!r:.200}")
        _, storage_type, key, _location, numel = pid
        if not _RECORD_KEY.fullmatch(key):
            raise ModelError(f"{self._path.name}: refused to load: a tensor names the record {key!r:.80}, which "
                             "is not a plain record name; the file is crafted")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type, numel)
        return self._storages[key]

    def _read_storage(self, key: str, storage_type: _StorageType, numel: int) -> torch.Tensor:
        record = f"{self._prefix}/data/{key}"
        try:
            info = self._zf.getinfo(record)
        except KeyError:
            raise ModelError(f"{self._path.name}: the checkpoint is incomplete: record {record!r} is missing") \
                from None
        _check_record_size(info, self._archive_size, self._path)
        itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
        if storage_type.name == "UntypedStorage":
            numel = info.file_size  # an untyped storage's size is in bytes
        if numel < 0 or numel * itemsize != info.file_size:
            raise ModelError(f"{self._path.name}: record {record!r} holds {info.file_size} bytes but the pickle "
                             f"declares {numel} x {itemsize} bytes; the file is corrupt or crafted")
        raw = torch.empty(info.file_size, dtype=torch.uint8)
        with self._zf.open(info) as f:
            if f.readinto(memoryview(raw.numpy())) != info.file_size:
                raise ModelError(f"{self._path.name}: record {record!r} is truncated")
        return raw.view(storage_type.dtype) if info.file_size else torch.empty(0, dtype=storage_type.dtype)


def _check_record_size(info: zipfile.ZipInfo, archive_size: int, path: Path) -> None:
    """Refuse a record whose declared size its stored bytes cannot hold (a zip header that lies, or a zip
    bomb) before memory for it is allocated."""
    stored = info.compress_size
    expands = info.compress_type != zipfile.ZIP_STORED and info.file_size <= max(stored, 1) * _MAX_DEFLATE_RATIO
    if stored > archive_size or not (info.file_size == stored or expands):
        raise ModelError(f"{path.name}: record {info.filename!r} declares {info.file_size} bytes but holds "
                         f"{stored} bytes of data in a {archive_size}-byte file; the file is corrupt or crafted")


def _check_member_names(zf: zipfile.ZipFile, path: Path) -> None:
    """Nothing is extracted, but a member named outside the archive's folder only appears in crafted files."""
    for name in zf.namelist():
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or "\x00" in name:
            raise ModelError(f"{path.name}: refused to load: the archive has a member named {name!r:.100} "
                             "(a path outside the archive); the file is crafted")


def _pickle_prefix(zf: zipfile.ZipFile, path: Path) -> str:
    names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(names) != 1:
        raise ModelError(f"{path.name}: not a PyTorch checkpoint (expected one '<name>/data.pkl' record, "
                         f"found {len(names)})")
    return names[0].split("/")[0]


def load_ckpt(path: str | Path) -> Any:
    """Unpickle a PyTorch zip checkpoint with the restricted unpickler; returns the top-level object."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            _check_member_names(zf, path)
            prefix = _pickle_prefix(zf, path)
            if f"{prefix}/byteorder" in zf.namelist() and zf.read(f"{prefix}/byteorder").strip() != b"little":
                raise ModelError(f"{path.name}: big-endian checkpoints are not supported")
            data = zf.read(f"{prefix}/data.pkl")
            return _RestrictedUnpickler(data, zf, prefix, path).load()
    except ModelError as e:
        if path.name in str(e):
            raise
        raise ModelError(f"{path.name}: {e}") from e  # a check deep in the pickle, which knows no file name
    except zipfile.BadZipFile as e:
        raise ModelError(f"{path}: not a readable checkpoint ({e}); the file is truncated or not a zip-format "
                         ".ckpt (re-download it, or convert old-format files to .safetensors)") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RuntimeError, IndexError,
            AttributeError, KeyError, OSError) as e:
        raise ModelError(f"{path}: the checkpoint could not be read ({type(e).__name__}: {e}); "
                         "the file is corrupt or truncated") from e


def load_safetensors(path: str | Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: the .safetensors file could not be read ({e}); it is corrupt or truncated") \
            from e


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def extract_state_dict(obj: Any, path: Path) -> StateDict:
    """The tensors of a checkpoint: its 'state_dict' entry, or the object itself if it is a bare dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path.name}: the checkpoint holds a {type(obj).__name__}, not a state dict")
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not sd:
        raise ModelError(f"{path.name}: the checkpoint holds no tensors")
    return sd


def _is_zip(path: Path) -> bool:
    """``zipfile.is_zipfile``, which raises instead of answering for some damaged end records (a zip64 locator
    that claims several disks): such a file is not a zip checkpoint we can read."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return False


def load_state_dict(path: str | Path) -> StateDict:
    """Every tensor of a .safetensors or .ckpt file, on the CPU, without executing code from the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    if _looks_like_safetensors(path):
        return load_safetensors(path)
    if not _is_zip(path):
        raise ModelError(f"{path}: neither a .safetensors file nor a zip-format .ckpt (truncated, or saved "
                         "with torch older than 1.6); re-download it or convert it to .safetensors")
    return extract_state_dict(load_ckpt(path), path)
