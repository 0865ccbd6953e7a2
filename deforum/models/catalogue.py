"""The checkpoints of the v0.6 and v0.7 `model_checkpoint` dropdown, as data (spec 1.2).

Fixes against v0.6: the `/blob/` URLs (they return an HTML page) and the sd-v1-4-full-ema repository;
SD 1.5 moved from `runwayml/stable-diffusion-v1-5` (taken down in 2024) to
`stable-diffusion-v1-5/stable-diffusion-v1-5`. The v0.6 names keep their `.ckpt` files and sha256s so old
settings files resolve to the same bytes; a `.safetensors` entry is listed where its sha256 is known.
Downloads go through huggingface_hub, so no URL (and no credential) is built by hand.

The sha256s of the v0.6/v0.7 names are the spec's (1.2). The one of v1-5-pruned-emaonly.safetensors is not in
the spec: it is the file's Git LFS oid on the hub (4,265,146,304 bytes), as published on the LFS details
pages of mirrors of the SD 1.5 repository and in catalogues pinning stable-diffusion-v1-5/stable-diffusion-v1-5.
An entry may have ``sha256=None`` (unknown hash): it is then used without a check, with a logged warning.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # the dropdown name, also the file name in models_path
    repo_id: str
    filename: str  # path inside the repository
    sha256: str | None  # None: not known, the file is used unchecked (with a logged warning)
    config: str  # the matching file in configs/
    gated: bool = False  # the repository asks you to accept a licence (log in with a token)

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"


_SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_V1, _V2, _V2V = "v1-inference.yaml", "v2-inference.yaml", "v2-inference-v.yaml"

CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in [
    # v0.6 dropdown
    CatalogueEntry("v1-5-pruned.ckpt", _SD15, "v1-5-pruned.ckpt",
                   "e1441589a6f3c5a53f5f54d0975a18a7feb7cdf0b0dee276dfc3331ae376a053", _V1),
    CatalogueEntry("v1-5-pruned-emaonly.ckpt", _SD15, "v1-5-pruned-emaonly.ckpt",
                   "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516", _V1),
    CatalogueEntry("sd-v1-4-full-ema.ckpt", "CompVis/stable-diffusion-v-1-4-original", "sd-v1-4-full-ema.ckpt",
                   "14749efc0ae8ef0329391ad4436feb781b402f4fece4883c7ad8d10556d8a36a", _V1, gated=True),
    CatalogueEntry("sd-v1-4.ckpt", "CompVis/stable-diffusion-v-1-4-original", "sd-v1-4.ckpt",
                   "fe4efff1e174c627256e44ec2991ba279b3816e364b49f9be2abc0b3ff3f8556", _V1, gated=True),
    CatalogueEntry("sd-v1-3-full-ema.ckpt", "CompVis/stable-diffusion-v-1-3-original", "sd-v1-3-full-ema.ckpt",
                   "54632c6e8a36eecae65e36cb0595fab314e1a1545a65209f24fde221a8d4b2ca", _V1, gated=True),
    CatalogueEntry("sd-v1-3.ckpt", "CompVis/stable-diffusion-v-1-3-original", "sd-v1-3.ckpt",
                   "2cff93af4dcc07c3e03110205988ff98481e86539c51a8098d4f2236e41f7f2f", _V1, gated=True),
    CatalogueEntry("sd-v1-2-full-ema.ckpt", "CompVis/stable-diffusion-v-1-2-original", "sd-v1-2-full-ema.ckpt",
                   "bc5086a904d7b9d13d2a7bccf38f089824755be7261c7399d92e555e1e9ac69a", _V1, gated=True),
    CatalogueEntry("sd-v1-2.ckpt", "CompVis/stable-diffusion-v-1-2-original", "sd-v1-2.ckpt",
                   "3b87d30facd5bafca1cbed71cfb86648aad75d1c264663c0cc78c7aea8daec0d", _V1, gated=True),
    CatalogueEntry("sd-v1-1-full-ema.ckpt", "CompVis/stable-diffusion-v-1-1-original", "sd-v1-1-full-ema.ckpt",
                   "efdeb5dc418a025d9a8cc0a8617e106c69044bc2925abecc8a254b2910d69829", _V1, gated=True),
    CatalogueEntry("sd-v1-1.ckpt", "CompVis/stable-diffusion-v-1-1-original", "sd-v1-1.ckpt",
                   "86cd1d3ccb044d7ba8db743d717c9bac603c4043508ad2571383f954390f3cea", _V1, gated=True),
    CatalogueEntry("robo-diffusion-v1.ckpt", "nousr/robo-diffusion", "models/robo-diffusion-v1.ckpt",
                   "244dbe0dcb55c761bde9c2ac0e9b46cc9705ebfe5f1f3a7cc46251573ea14e16", _V1),
    CatalogueEntry("wd-v1-3-float16.ckpt", "hakurei/waifu-diffusion-v1-3", "wd-v1-3-float16.ckpt",
                   "4afab9126057859b34d13d6207d90221d0b017b7580469ea70cee37757a29edd", _V1),
    # v0.7 (head) additions
    CatalogueEntry("Protogen_V2.2.ckpt", "darkstorm2150/Protogen_v2.2_Official_Release", "Protogen_V2.2.ckpt",
                   "bb725eaf2ed90092e68b892a1d6262f538131a7ec6a736e50ae534be6b5bd7b1", _V1),
    CatalogueEntry("v2-1_768-ema-pruned.ckpt", "stabilityai/stable-diffusion-2-1", "v2-1_768-ema-pruned.ckpt",
                   "ad2a33c361c1f593c4a1fb32ea81afce2b5bb7d1983c6b94793a26a3b54b08a0", _V2V),
    CatalogueEntry("v2-1_512-ema-pruned.ckpt", "stabilityai/stable-diffusion-2-1-base", "v2-1_512-ema-pruned.ckpt",
                   "88ecb782561455673c4b78d05093494b9c539fc6bfc08f3a9a4a0dd7b0b10f36", _V2),
    CatalogueEntry("768-v-ema.ckpt", "stabilityai/stable-diffusion-2", "768-v-ema.ckpt",
                   "bfcaf0755797b0c30eb00a3787e8b423eb1f5decd8de76c4d824ac2dd27e139f", _V2V),
    CatalogueEntry("512-base-ema.ckpt", "stabilityai/stable-diffusion-2-base", "512-base-ema.ckpt",
                   "d635794c1fedfdfa261e065370bea59c651fc9bfa65dc6d67ad29e11869a1824", _V2),
    # safetensors variants (no pickle at all); sha256 = the hub's Git LFS oid, not from the spec
    CatalogueEntry("v1-5-pruned-emaonly.safetensors", _SD15, "v1-5-pruned-emaonly.safetensors",
                   "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa", _V1),
]}


def lookup(name: str) -> CatalogueEntry | None:
    return CATALOGUE.get(name)
