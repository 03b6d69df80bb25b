"""Archives in the official download layouts, built from `dre assets synth` files (never real assets).

- ``FLAME2020.zip``: ``generic_model.pkl``, ``male_model.pkl``, ``female_model.pkl``, ``Readme.pdf``;
- the FLAME texture space: a zip holding ``FLAME_texture.npz`` (and a preview image);
- ``deca_model.tar``: DECA's ``torch.save`` file as is (it is not a tar to unpack);
- ``EMOCA_v2_lr_mse_20.zip``: ``EMOCA_v2_lr_mse_20/cfg.yaml`` + ``detail/checkpoints/*.ckpt``;
- face-alignment weights: tiny ``torch.save`` state dicts with the two networks' characteristic keys.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from dre.assets.catalog import DECA_FILE, DEFAULT_EMOCA_MODEL, EMOCA_DIR, FLAME_FILE, TEXTURE_FILE
from dre.face3d.synth import EMOCA_CKPT
from dre.utils.synthetic import MARKER_NAME


def flame_zip(synth: Path, out: Path) -> Path:
    data = (synth / FLAME_FILE).read_bytes()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("Readme.pdf", b"%PDF-1.4\n% synthetic stand-in\n")
        # same structure, other bytes (a pickle ends at its STOP opcode): only the generic one may be taken
        z.writestr("male_model.pkl", data + b"male")
        z.writestr("generic_model.pkl", data)
        z.writestr("female_model.pkl", data + b"female")
    return out


def texture_zip(synth: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.write(synth / TEXTURE_FILE, TEXTURE_FILE)
        z.writestr("tex_mean.png", b"\x89PNG\r\n\x1a\n synthetic preview")
    return out


def emoca_zip(synth: Path, out: Path, model: str = DEFAULT_EMOCA_MODEL) -> Path:
    src = synth / EMOCA_DIR / DEFAULT_EMOCA_MODEL
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.write(src / "cfg.yaml", f"{model}/cfg.yaml")
        z.write(src / EMOCA_CKPT, f"{model}/{EMOCA_CKPT}")
    return out


def deca_tar(synth: Path, out: Path) -> Path:
    out.write_bytes((synth / DECA_FILE).read_bytes())
    return out


def fan_weights(out_dir: Path) -> dict[str, bytes]:
    """The two face-alignment files (by their official names) as bytes: keys that identify each network."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "s3fd-619a316812.pth": {"conv1_1.weight": torch.zeros(2), "conv3_3_norm_mbox_conf.weight": torch.ones(1)},
        "2DFAN4-11f355bf06.pth.tar": {"conv1.weight": torch.zeros(2), "m0.b1_1.conv1.weight": torch.ones(1),
                                      "l3.weight": torch.ones(3)},
    }
    blobs = {}
    for name, state in files.items():
        torch.save(state, out_dir / name)
        blobs[name] = (out_dir / name).read_bytes()
    return blobs


def synthetic_target(folder: Path) -> Path:
    """An empty assets folder marked synthetic: the stand-in archives hold synthetic content, which the
    loaders accept (with its smaller sizes) only in a folder that says so. Real archives need no marker."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER_NAME).write_text("synthetic stand-ins for tests\n", encoding="utf-8")
    return folder
