"""Hostile and broken checkpoint files (issue 10, part 2), beyond tests/test_models_safe_load.py.

Every hostile file is refused with a DeforumError and the test checks that its payload did nothing: a
sentinel file the payload would create does not exist, no file appears outside the archive, and no large
buffer is allocated for a size the file only declares. Damaged files, mutated byte by byte, give a
ModelError or load; never another exception.
"""

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deforum.errors import DeforumError, ModelError
from deforum.models import load_state_dict
from deforum.testing import ckpt_bytes, write_checkpoint


def zip_ckpt(path: Path, pickled: bytes, records: dict[str, bytes] | None = None, prefix: str = "archive",
             compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr(f"{prefix}/data.pkl", pickled)
        zf.writestr(f"{prefix}/version", b"3\n")
        for key, data in (records or {}).items():
            zf.writestr(key if key.startswith(("/", "..")) or "/" in key else f"{prefix}/data/{key}", data)
    return path


class Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def touch_code(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('pwned')"


def hostile_pickles(sentinel: Path) -> dict[str, bytes]:
    """Payloads that would create ``sentinel`` if anything in them ran (protocols 0..5, every opcode that
    names a global: GLOBAL, STACK_GLOBAL, INST, OBJ)."""
    code, shell = touch_code(sentinel), f"touch {sentinel}"
    out = {}
    for protocol in (0, 4, 5):
        out[f"os.system, protocol {protocol}"] = pickle.dumps(Reduce(os.system, (shell,)), protocol=protocol)
        out[f"exec, protocol {protocol}"] = pickle.dumps(Reduce(exec, (code,)), protocol=protocol)
        out[f"eval, protocol {protocol}"] = pickle.dumps(Reduce(eval, (code,)), protocol=protocol)
    out["INST opcode (os.system)"] = b"(S'" + shell.encode() + b"'\nios\nsystem\n."
    out["OBJ opcode (os.system)"] = b"(cos\nsystem\nS'" + shell.encode() + b"'\no."
    out["STACK_GLOBAL builtins.exec"] = (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93\x8c" + bytes([len(code)])
                                         + code.encode() + b"\x85R.")
    # builtins reached through getattr on an allowed or a plain object
    out["getattr(builtins, 'eval')"] = (b"cbuiltins\ngetattr\n(cbuiltins\n__dict__\nS'eval'\ntR(S\""
                                        + code.encode() + b"\"\ntR.")
    out["dotted name set.__init__.__globals__"] = b"cbuiltins\nset.__init__.__globals__\n."
    out["dotted name on an allowed class"] = (b"ccollections\nOrderedDict.__class__.__subclasses__\n)R.")
    out["torch._utils attribute chain"] = b"ctorch._utils\n_rebuild_tensor_v2.__globals__\n."
    out["operator.attrgetter"] = pickle.dumps(Reduce(__import__("operator").attrgetter, ("system",)), protocol=2)
    out["importlib.import_module"] = pickle.dumps(Reduce(__import__("importlib").import_module, ("os",)), protocol=2)
    # nested pickles and loaders
    inner = pickle.dumps(Reduce(exec, (code,)), protocol=2)
    out["pickle.loads of an inner pickle"] = pickle.dumps(Reduce(pickle.loads, (inner,)), protocol=4)
    out["_pickle.loads of an inner pickle"] = b"c_pickle\nloads\n(C" + bytes([len(inner)]) + inner + b"tR."
    out["torch.load of an inner file"] = pickle.dumps(Reduce(torch.load, (io.BytesIO(b""),)), protocol=2)
    out["numpy.load with allow_pickle"] = b"cnumpy\nload\n(S'x.npy'\nI01\ntR."
    out["copyreg._reconstructor"] = b"ccopyreg\n_reconstructor\n(cos\n_wrap_close\ncbuiltins\nobject\nNtR."
    out["numpy object dtype"] = b"cnumpy\ndtype\n(S'O'\ntR."
    out["_codecs.encode with a code codec"] = b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR."
    out["payload deep inside the state dict"] = pickle.dumps(
        {"state_dict": OrderedDict(a=torch.Size([1]), b=[{"c": (Reduce(exec, (code,)),)}])}, protocol=2)
    return out


@pytest.mark.parametrize("name", list(hostile_pickles(Path("x"))))
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, name):
    sentinel = tmp_path / "side-effect"
    path = zip_ckpt(tmp_path / "evil.ckpt", hostile_pickles(sentinel)[name])
    with pytest.raises(DeforumError, match="evil.ckpt"):
        load_state_dict(path)
    assert not sentinel.exists()


def test_a_lightning_named_global_is_an_inert_stub_even_with_a_payload(tmp_path):
    """Lightning names become stubs that store their arguments: a payload under such a name is data."""
    sentinel = tmp_path / "side-effect"
    code = touch_code(sentinel).encode()
    pickled = (b"(S'state_dict'\n(dp0\nS'w'\nI1\nsS'cb'\ncpytorch_lightning.builtins\neval\n(S\"" + code
               + b"\"\ntRd.")
    with pytest.raises(ModelError, match="no tensors"):
        load_state_dict(zip_ckpt(tmp_path / "stub.ckpt", pickled))
    assert not sentinel.exists()


def _storage_pickle(key: str, numel: int = 4, dtype_name: str = "FloatStorage") -> bytes:
    """A state dict {'w': tensor} whose storage is record ``key``, as torch.save writes it (protocol 2)."""
    return (b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            + b"ctorch\n" + dtype_name.encode() + b"\nX" + struct.pack("<I", len(key)) + key.encode()
            + b"X\x03\x00\x00\x00cpuJ" + struct.pack("<i", numel) + b"tQK\x00J" + struct.pack("<i", numel)
            + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")


def test_the_crafted_storage_pickle_loads_when_honest(tmp_path):
    path = zip_ckpt(tmp_path / "ok.ckpt", _storage_pickle("0"), {"0": struct.pack("<4f", 1, 2, 3, 4)})
    assert torch.equal(load_state_dict(path)["w"], torch.tensor([1.0, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize("key, members", [
    ("../../../../../../etc/hostname", {}),
    ("/etc/hostname", {}),
    ("../outside", {"archive/data/../outside": struct.pack("<4f", 1, 2, 3, 4)}),
    ("0", {"0": struct.pack("<4f", 1, 2, 3, 4), "../../escaped.sh": b"#!/bin/sh\ntouch pwned\n"}),
    ("0", {"0": struct.pack("<4f", 1, 2, 3, 4), "/tmp/absolute-escape.sh": b"x"}),
], ids=["key climbs out", "absolute key", "member under a climbing key", "member climbs out",
        "absolute member"])
def test_zip_path_traversal_is_refused_and_nothing_is_written_or_read_outside(tmp_path, key, members):
    work = tmp_path / "models"
    work.mkdir()
    path = zip_ckpt(work / "traversal.ckpt", _storage_pickle(key), members)
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(ModelError, match="crafted|refused"):
        load_state_dict(path)
    assert {p for p in tmp_path.rglob("*")} == before
    assert not Path("/tmp/absolute-escape.sh").exists()


def _lie_about_size(path: Path, record: str, declared: int) -> None:
    """Rewrite the zip's central directory so ``record`` declares ``declared`` uncompressed bytes."""
    raw = bytearray(path.read_bytes())
    name = record.encode()
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", raw, at + 28)[0]
        if bytes(raw[at + 46: at + 46 + name_len]) == name:
            struct.pack_into("<I", raw, at + 24, declared)
            break
        at = raw.find(b"PK\x01\x02", at + 4)
    else:
        raise AssertionError(f"{record} not found")
    path.write_bytes(bytes(raw))


@pytest.fixture
def allocations(monkeypatch):
    """The largest buffer (bytes) torch.empty was asked for while loading."""
    seen = [0]
    real = torch.empty

    def empty(*size, dtype=None, **kwargs):
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        count = 1
        for n in shape:
            count *= int(n)
        itemsize = real((), dtype=dtype or torch.float32).element_size()
        seen[0] = max(seen[0], count * itemsize)
        return real(*size, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    return seen


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_a_zip_header_declaring_a_huge_record_is_refused_before_allocating(tmp_path, allocations, compression):
    numel = 2**30 - 1  # 4 GiB of float32 declared, 16 bytes stored
    path = zip_ckpt(tmp_path / "bomb.ckpt", _storage_pickle("0", numel=numel), {"0": bytes(16)},
                    compression=compression)
    _lie_about_size(path, "archive/data/0", numel * 4)
    with pytest.raises(ModelError, match="crafted"):
        load_state_dict(path)
    assert allocations[0] < 1 << 20


def test_a_huge_declared_storage_without_matching_data_allocates_nothing(tmp_path, allocations):
    path = zip_ckpt(tmp_path / "huge.ckpt", _storage_pickle("0", numel=2**31 - 1), {"0": bytes(16)})
    with pytest.raises(ModelError, match="declares"):
        load_state_dict(path)
    assert allocations[0] < 1 << 20


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


@pytest.mark.parametrize("raw", [
    struct.pack("<Q", 2**63) + b"{}",  # a header length beyond any file
    struct.pack("<Q", 2**40) + b'{"a": 1}',
    _safetensors(b'{"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 16]}}', bytes(16)),
    _safetensors(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4000000000]}}', bytes(16)),
    _safetensors(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}}', bytes(16)),
    _safetensors(b'{"w": {"dtype": "EVIL", "shape": [4], "data_offsets": [0, 16]}}', bytes(16)),
    _safetensors(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    _safetensors(b'{"__metadata__": {"x": {"nested": "object"}}}'),
    _safetensors(b"{\xff\xfe not utf-8}"),
], ids=["length 2**63", "length 1 TiB", "shape past the data", "offsets past the end", "reversed offsets",
        "unknown dtype", "deeply nested header", "non-string metadata", "not utf-8"])
def test_crafted_safetensors_headers_are_model_errors(tmp_path, raw):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ModelError, match="crafted.safetensors"):
        load_state_dict(path)


SMALL = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "n": torch.arange(5)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pristine")
    return {fmt: write_checkpoint(SMALL, folder / f"m.{fmt}", fmt).read_bytes() for fmt in ("ckpt", "safetensors")}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["ckpt", "safetensors"]), data=st.data())
def test_damaged_checkpoints_give_a_model_error_or_load(tmp_path_factory, pristine, fmt, data):
    """Random byte flips, cuts and insertions anywhere in a small checkpoint: ModelError or a state dict."""
    raw = bytearray(pristine[fmt])
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at: at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        if not raw:
            break
    path = tmp_path_factory.mktemp("damaged") / f"m.{fmt}"
    path.write_bytes(bytes(raw))
    try:
        loaded = load_state_dict(path)
    except ModelError:
        return
    assert all(isinstance(v, torch.Tensor) for v in loaded.values())


def test_a_zip64_locator_claiming_several_disks_is_a_model_error(tmp_path):
    """zipfile.is_zipfile raises BadZipFile on it instead of answering (found by the fuzz test above)."""
    raw = bytearray(ckpt_bytes(SMALL))
    at = raw.rfind(b"PK\x06\x07")  # the zip64 end-of-central-directory locator: its last field is the disk count
    raw[at + 16:at + 20] = (2).to_bytes(4, "little")
    path = tmp_path / "m.ckpt"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="neither a .safetensors file nor a zip-format .ckpt"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"\x00" * 8, b"PK\x03\x04" + bytes(100), ckpt_bytes(SMALL)[:30]],
                         ids=["empty", "zeros", "zip local header only", "first 30 bytes"])
def test_empty_and_stub_files(tmp_path, content):
    path = tmp_path / "m.ckpt"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        load_state_dict(path)
