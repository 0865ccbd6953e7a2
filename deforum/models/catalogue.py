"""The checkpoints of the v0.6 and v0.7 `model_checkpoint` dropdown, as data (spec 1.2).

Fixes against v0.6: the `/blob/` URLs (they return an HTML page) and the sd-v1-4-full-ema repository;
SD 1.5 moved from `runwayml/stable-diffusion-v1-5` (taken down in 2024) to
`stable-diffusion-v1-5/stable-diffusion-v1-5`. The v0.6 names keep their `.ckpt` files and sha256s so old
settings files resolve to the same bytes; a `.safetensors` entry is listed where its sha256 is known.
Downloads go through huggingface_hub, so no URL (and no credential) is built by hand.

The sha256s of the v0.6/v0.7 names are the spec's (1.2). The one of v1-5-pruned-emaonly.safetensors is not in
the spec: it is the file's Git LFS oid on the hub (4,265,146,304 bytes), as published on the LFS details
pages of mirrors of the SD 1.5 repository and in catalogues pinning stable-diffusion-v1-5/stable-diffusion-v1-5.
An entry may have ``sha256=None`` (unknown hash): it is then checked by its size where the exact size is known
(``size_problem``), otherwise used without a check, with a logged warning.

Today's models (issue 18): SDXL base 1.0, SD-Turbo, SDXL-Turbo, LCM-LoRA for SD 1.5 and SDXL, TAESD and TAESDXL.
Their sha256s and sizes are the Git LFS details (oid, size) shown on the hub's file pages of each repository (and of
"Duplicate from" copies of it, which keep the oid); ``note`` says where a fact comes from or why it is missing.
SDXL-Turbo's licence is non-commercial (``commercial=False``); docs/models.md lists every licence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("sd1", "sd2", "sdxl")
KINDS = ("checkpoint", "lora", "vae")


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # the dropdown name, also the file (or, for a vae, the folder) name in models_path
    repo_id: str
    filename: str  # path inside the repository
    sha256: str | None  # None: not known, checked by size when ``size`` is known, else used unchecked (warning)
    config: str  # the matching file in configs/; "" for SDXL (no LDM yaml: detected from the keys)
    gated: bool = False  # the repository asks you to accept a licence (log in with a token)
    family: str = "sd1"  # "sd1", "sd2" or "sdxl": what the file is for
    kind: str = "checkpoint"  # "checkpoint" (model_checkpoint), "lora" (field lora) or "vae" (vae = "taesd")
    size: int | None = None  # exact bytes, where known (the LFS pointer's size)
    size_text: str = ""  # the size as the hub shows it ("6.94 GB"), where the exact bytes are not known
    licence: str = ""
    commercial: bool | None = None  # False: the licence forbids commercial use; None: see the licence
    note: str = ""  # where a fact comes from, or what is missing

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"

    @property
    def is_folder(self) -> bool:
        """A vae is a diffusers folder (config.json + weights), models_path/<name>/; the rest are single files."""
        return self.kind == "vae"

    def path_in(self, models_path: str | Path) -> Path:
        """Where the file (or the vae's folder) goes in models_path."""
        return Path(models_path or "models") / self.name

    def present(self, models_path: str | Path) -> bool:
        """The file is in models_path (a vae: its folder holds config.json and the weights)."""
        where = self.path_in(models_path)
        if self.is_folder:
            return (where / "config.json").is_file() and (where / Path(self.filename).name).is_file()
        return where.is_file()

    def size_label(self) -> str:
        """'6.94 GB', from the exact bytes when known (decimal units, as the hub shows sizes)."""
        if self.size is None:
            return self.size_text or "unknown"
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if self.size >= scale:
                return f"{self.size / scale:.3g} {unit}"
        return f"{self.size} B"


_SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_RAIL = "CreativeML OpenRAIL-M"
_RAILPP = "CreativeML Open RAIL++-M"
_SAI_NC = "Stability AI Non-Commercial Research Community License (sai-nc-community)"
_MIT = "MIT"
_V1, _V2, _V2V = "v1-inference.yaml", "v2-inference.yaml", "v2-inference-v.yaml"

def _v06(name: str, repo_id: str, filename: str, sha256: str | None, config: str, **kw) -> CatalogueEntry:
    """A v0.6 / v0.7 checkpoint: its family from its yaml; the licence of the official Stable Diffusion
    releases (1.x CreativeML OpenRAIL-M, 2.x CreativeML Open RAIL++-M), the model card's for fine-tunes."""
    sd2 = config in (_V2, _V2V)
    official = repo_id.startswith(("CompVis/", "stabilityai/", _SD15))
    return CatalogueEntry(name, repo_id, filename, sha256, config, family="sd2" if sd2 else "sd1",
                          licence=(_RAILPP if sd2 else _RAIL) if official else "see the model card", **kw)


CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in [
    # v0.6 dropdown
    _v06("v1-5-pruned.ckpt", _SD15, "v1-5-pruned.ckpt",
                   "e1441589a6f3c5a53f5f54d0975a18a7feb7cdf0b0dee276dfc3331ae376a053", _V1),
    _v06("v1-5-pruned-emaonly.ckpt", _SD15, "v1-5-pruned-emaonly.ckpt",
                   "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516", _V1),
    _v06("sd-v1-4-full-ema.ckpt", "CompVis/stable-diffusion-v-1-4-original", "sd-v1-4-full-ema.ckpt",
                   "14749efc0ae8ef0329391ad4436feb781b402f4fece4883c7ad8d10556d8a36a", _V1, gated=True),
    _v06("sd-v1-4.ckpt", "CompVis/stable-diffusion-v-1-4-original", "sd-v1-4.ckpt",
                   "fe4efff1e174c627256e44ec2991ba279b3816e364b49f9be2abc0b3ff3f8556", _V1, gated=True),
    _v06("sd-v1-3-full-ema.ckpt", "CompVis/stable-diffusion-v-1-3-original", "sd-v1-3-full-ema.ckpt",
                   "54632c6e8a36eecae65e36cb0595fab314e1a1545a65209f24fde221a8d4b2ca", _V1, gated=True),
    _v06("sd-v1-3.ckpt", "CompVis/stable-diffusion-v-1-3-original", "sd-v1-3.ckpt",
                   "2cff93af4dcc07c3e03110205988ff98481e86539c51a8098d4f2236e41f7f2f", _V1, gated=True),
    _v06("sd-v1-2-full-ema.ckpt", "CompVis/stable-diffusion-v-1-2-original", "sd-v1-2-full-ema.ckpt",
                   "bc5086a904d7b9d13d2a7bccf38f089824755be7261c7399d92e555e1e9ac69a", _V1, gated=True),
    _v06("sd-v1-2.ckpt", "CompVis/stable-diffusion-v-1-2-original", "sd-v1-2.ckpt",
                   "3b87d30facd5bafca1cbed71cfb86648aad75d1c264663c0cc78c7aea8daec0d", _V1, gated=True),
    _v06("sd-v1-1-full-ema.ckpt", "CompVis/stable-diffusion-v-1-1-original", "sd-v1-1-full-ema.ckpt",
                   "efdeb5dc418a025d9a8cc0a8617e106c69044bc2925abecc8a254b2910d69829", _V1, gated=True),
    _v06("sd-v1-1.ckpt", "CompVis/stable-diffusion-v-1-1-original", "sd-v1-1.ckpt",
                   "86cd1d3ccb044d7ba8db743d717c9bac603c4043508ad2571383f954390f3cea", _V1, gated=True),
    _v06("robo-diffusion-v1.ckpt", "nousr/robo-diffusion", "models/robo-diffusion-v1.ckpt",
                   "244dbe0dcb55c761bde9c2ac0e9b46cc9705ebfe5f1f3a7cc46251573ea14e16", _V1),
    _v06("wd-v1-3-float16.ckpt", "hakurei/waifu-diffusion-v1-3", "wd-v1-3-float16.ckpt",
                   "4afab9126057859b34d13d6207d90221d0b017b7580469ea70cee37757a29edd", _V1),
    # v0.7 (head) additions
    _v06("Protogen_V2.2.ckpt", "darkstorm2150/Protogen_v2.2_Official_Release", "Protogen_V2.2.ckpt",
                   "bb725eaf2ed90092e68b892a1d6262f538131a7ec6a736e50ae534be6b5bd7b1", _V1),
    _v06("v2-1_768-ema-pruned.ckpt", "stabilityai/stable-diffusion-2-1", "v2-1_768-ema-pruned.ckpt",
                   "ad2a33c361c1f593c4a1fb32ea81afce2b5bb7d1983c6b94793a26a3b54b08a0", _V2V),
    _v06("v2-1_512-ema-pruned.ckpt", "stabilityai/stable-diffusion-2-1-base", "v2-1_512-ema-pruned.ckpt",
                   "88ecb782561455673c4b78d05093494b9c539fc6bfc08f3a9a4a0dd7b0b10f36", _V2),
    _v06("768-v-ema.ckpt", "stabilityai/stable-diffusion-2", "768-v-ema.ckpt",
                   "bfcaf0755797b0c30eb00a3787e8b423eb1f5decd8de76c4d824ac2dd27e139f", _V2V),
    _v06("512-base-ema.ckpt", "stabilityai/stable-diffusion-2-base", "512-base-ema.ckpt",
                   "d635794c1fedfdfa261e065370bea59c651fc9bfa65dc6d67ad29e11869a1824", _V2),
    # safetensors variants (no pickle at all); sha256 = the hub's Git LFS oid, not from the spec
    _v06("v1-5-pruned-emaonly.safetensors", _SD15, "v1-5-pruned-emaonly.safetensors",
                   "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa", _V1),
    # today's models (issue 18)
    CatalogueEntry("sd_xl_base_1.0.safetensors", "stabilityai/stable-diffusion-xl-base-1.0",
                   "sd_xl_base_1.0.safetensors",
                   "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b", "", family="sdxl",
                   size_text="6.94 GB", licence=_RAILPP,
                   note="sha256: the file's LFS details on the hub; the exact byte size was not found"),
    CatalogueEntry("sd_turbo.safetensors", "stabilityai/sd-turbo", "sd_turbo.safetensors",
                   "3f067a1b943cf162f2b8f8588f6cf5824bd5b4c7d1d88d87164b9ca123616549", _V2, family="sd2",
                   size_text="5.21 GB",
                   licence="Stability AI licence (the model card: for commercial use see https://stability.ai/license)",
                   note="SD 2.1 distilled (epsilon prediction, trailing timesteps): 1-4 steps at cfg_scale <= 1, "
                        "512x512; the exact byte size was not found"),
    CatalogueEntry("sd_xl_turbo_1.0_fp16.safetensors", "stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors",
                   "e869ac7d6942cb327d68d5ed83a40447aadf20e0c3358d98b2cc9e270db0da26", "", family="sdxl",
                   size=6938081905, licence=_SAI_NC, commercial=False,
                   note="NON-COMMERCIAL licence: research and personal use only (commercial use needs a licence from "
                        "Stability AI, https://stability.ai/license); 1-4 steps at cfg_scale <= 1, 512x512"),
    CatalogueEntry("lcm-lora-sdv1-5.safetensors", "latent-consistency/lcm-lora-sdv1-5",
                   "pytorch_lora_weights.safetensors", None, "", family="sd1", kind="lora", size_text="135 MB",
                   licence=_RAILPP,
                   note="no sha256 or exact size of the repository's current file was found (it was re-uploaded; "
                        "copies elsewhere show sha256 "
                        "8f90d840e075ff588a58e22c6586e2ae9a6f7922996ee6649a7f01072333afe4, 134,621,556 bytes): the "
                        "download is not checked"),
    CatalogueEntry("lcm-lora-sdxl.safetensors", "latent-consistency/lcm-lora-sdxl",
                   "pytorch_lora_weights.safetensors",
                   "c3dbf7eb26dd00ae6b6b95da69be9f1cb95a3b2c5bcf9be82323227a19b91329", "", family="sdxl", kind="lora",
                   size_text="394 MB", licence=_RAILPP,
                   note="sha256: the LFS details of the repository's file (last changed in commit 9d32716); the exact "
                        "byte size was not found"),
    CatalogueEntry("taesd", "madebyollin/taesd", "diffusion_pytorch_model.safetensors",
                   "d7956d561b1efbd861ad9b03fd8f01510f9e87eddc07bdfd20837009433f6ee5", "", family="sd1", kind="vae",
                   size=9793292, licence=_MIT,
                   note="TAESD 1.2, diffusers' AutoencoderTiny for SD 1.x and 2.x: a folder models_path/taesd/ with "
                        "config.json and diffusion_pytorch_model.safetensors"),
    CatalogueEntry("taesdxl", "madebyollin/taesdxl", "diffusion_pytorch_model.safetensors",
                   "0070e0bf1b85d84c836ebb0dc0d8a69200de91aa1a2a726efdb5153e810a27e6", "", family="sdxl", kind="vae",
                   size=9793292, licence=_MIT,
                   note="TAESDXL 1.2 (commit b581b40), AutoencoderTiny for SDXL: a folder models_path/taesdxl/ with "
                        "config.json and diffusion_pytorch_model.safetensors"),
]}

def lookup(name: str) -> CatalogueEntry | None:
    return CATALOGUE.get(name)


def checkpoints() -> tuple[str, ...]:
    """The names of the catalogue's checkpoints (the model_checkpoint dropdown, after 'custom')."""
    return tuple(name for name, e in CATALOGUE.items() if e.kind == "checkpoint")


def entries(kind: str | None = None, family: str | None = None) -> list[CatalogueEntry]:
    """The entries of one kind and/or family, in catalogue order."""
    return [e for e in CATALOGUE.values()
            if (kind is None or e.kind == kind) and (family is None or e.family == family)]


def size_problem(entry: CatalogueEntry, path: str | Path) -> str | None:
    """Why ``path`` is not the catalogue's file by size (None: it fits, or the exact size is not known).

    The check of an entry whose sha256 is not known: deforum.models.loader checks the sha256 when there is one
    (download.verify_sha256), this otherwise. A vae's path is its folder (the weights file inside is measured)."""
    path = Path(path)
    if path.is_dir():
        path = path / Path(entry.filename).name
    if entry.size is None:
        return None
    actual = path.stat().st_size
    if actual == entry.size:
        return None
    return (f"{entry.name}: {path} has {actual:,} bytes, the catalogue's file has {entry.size:,}; delete it and run "
            "again to re-download (the catalogue has no sha256 for it, so it is checked by size only)")
