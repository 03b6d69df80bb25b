"""Synthetic stand-ins for the licensed assets, in the official file formats.

FLAME, DECA and EMOCA files are registration-gated and can never ship with the repository or CI, yet
the whole pipeline (extract → pack → train → edit) must run in tests and in the demo. ``dre assets
synth`` writes every asset the real loaders read, with synthetic content, so tests exercise the very
code paths that load the real files:

- the FLAME-structured head, its template, landmark embedding and texture space
  (:mod:`dre.face3d.synth_head`);
- ``deca_model.tar``: ``torch.save({'E_flame': state_dict})`` in DECA's exact key/shape layout.
- ``emoca/EMOCA_v2_lr_mse_20/``: ``cfg.yaml`` and a Lightning-style checkpoint under
  ``detail/checkpoints/`` with ``deca.E_flame.*`` / ``deca.E_expression.*``. The synthetic config sets
  ``exp_deca_jaw_pose: true`` (53-row expression head) so the jaw-replacement path is exercised.
- ``SYNTHETIC``: the marker every consumer checks (:mod:`dre.utils.synthetic`).

Random network weights: to keep the folder small and the call fast (< 5 s), every conv kernel of a
ResNet-50 is a slice of one shared N(0, 1) storage (saved once), and BatchNorm running variances are set
to the analytic fan-in × input second moment so activations stay O(1) through 50 layers. The last
linear layer's bias is a plausible DECA code (camera scale ≈ 11, frontal pose, grey-ish light), its
weights small, so random encoders produce renderable faces that vary a little per image. Everything is
deterministic from ``seed`` (array contents; torch/npz containers carry their own ids/timestamps).
"""


from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import yaml

from dre.assets.catalog import (
    DECA_FILE,
    DEFAULT_EMOCA_MODEL,
    EMOCA_DIR,
    FLAME_FILE,
    LANDMARK_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
)
from dre.face3d import synth_head as head
from dre.face3d.encoder_files import EmocaFlags
from dre.face3d.encoders import expected_shapes
from dre.face3d.synth_head import HeadMesh, chumpy_standin, flame_dict, obj_text, texture_space
from dre.safety.ownership import owned_dir
from dre.utils.synthetic import MARKER_NAME

SYNTH_VERSION = 1
EMOCA_CKPT = "detail/checkpoints/deca-epoch=03-val_loss/dataloader_idx_0=9.44489288.ckpt"


# --- random networks in the official layouts ------------------------------------------------------

CODE_MEAN = {
    "cam": (11.0, 0.0, 0.02),
    "pose": (0.0, 0.0, 0.0, 0.05, 0.0, 0.0),
}
"""Plausible DECA code bias: camera scale that fits the synthetic face in the crop, slightly open jaw."""


def code_statistics() -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the 236 DECA code entries the random E_flame is biased toward."""
    mean = np.zeros(236)
    std = np.zeros(236)
    std[0:150] = 0.5  # shape, tex
    std[150:200] = 0.5  # exp
    mean[200:206] = CODE_MEAN["pose"]
    std[200:203] = 0.05
    std[203:206] = 0.02
    mean[206:209] = CODE_MEAN["cam"]
    std[206:209] = (0.3, 0.005, 0.005)
    light = np.zeros((9, 3))
    light[0] = 2.6  # ambient (SH band 0)
    light[2] = 0.3  # from above (Ny)
    light[3] = 0.5  # from the camera side (Nz)
    mean[209:236] = light.reshape(-1)
    std[209:236] = 0.1
    return mean, std


def _random_encoder_state(
    out_size: int, code_mean: np.ndarray, code_std: np.ndarray, gen: "object", base: "object"
) -> "OrderedDict[str, object]":
    """A ResNet-50 + MLP state dict in DECA's key layout with calibrated random weights."""
    shapes = expected_shapes(out_size)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    input_moment: dict[str, float] = {}
    for key, shape in shapes.items():
        if key.endswith(".weight") and len(shape) == 4:  # conv kernel → slice of the shared storage
            n = int(np.prod(shape))
            off = int(torch.randint(0, base.numel() - n + 1, (1,), generator=gen))
            state[key] = base[off : off + n].view(shape)
            fan_in = int(np.prod(shape[1:]))
            mod = key[: -len(".weight")]
            # second moment of the conv's input: image ≈ 0.3, block input ≈ 1, after BN+ReLU ≈ 0.5
            if mod == "encoder.conv1":
                q = 0.3
            elif mod.endswith(".conv1") or mod.endswith("downsample.0"):
                q = 1.0
            else:
                q = 0.5
            input_moment[mod] = fan_in * q
    for key, shape in shapes.items():
        if key in state:
            continue
        mod, leaf = key.rsplit(".", 1)
        if key.startswith("encoder.") and leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            conv = mod.replace("bn", "conv") if not mod.endswith("downsample.1") else mod[:-1] + "0"
            if leaf == "weight":
                state[key] = torch.full(shape, 0.5 if mod.endswith("bn3") else 1.0)
            elif leaf in ("bias", "running_mean"):
                state[key] = torch.zeros(shape)
            elif leaf == "running_var":
                state[key] = torch.full(shape, float(input_moment[conv]))
            else:
                state[key] = torch.tensor(0, dtype=torch.long)
        elif key == "layers.0.weight":
            state[key] = torch.randn(shape, generator=gen) / np.sqrt(shape[1])
        elif key == "layers.0.bias":
            state[key] = torch.zeros(shape)
        elif key == "layers.2.weight":
            scale = torch.as_tensor(code_std, dtype=torch.float32)[:, None] / np.sqrt(shape[1] / 2)
            state[key] = torch.randn(shape, generator=gen) * scale
        elif key == "layers.2.bias":
            state[key] = torch.as_tensor(code_mean, dtype=torch.float32).clone()
        else:  # pragma: no cover - the layout has no other keys
            raise AssertionError(f"unexpected encoder key {key}")
    return OrderedDict((k, state[k]) for k in shapes)


def _shared_base(gen: "object") -> "object":
    """One N(0, 1) storage, a little larger than the largest conv kernel; every kernel is a slice."""
    largest = max(int(np.prod(s)) for s in expected_shapes(236).values() if len(s) == 4)
    return torch.randn(largest + 65536, generator=gen)


def write_emoca_model(
    folder: str | Path,
    e_flame: "OrderedDict[str, object]",
    *,
    base: "object | None" = None,
    seed: int = 0,
    global_pose: bool = False,
    jaw_pose: bool = True,
    ckpt_name: str = EMOCA_CKPT,
) -> Path:
    """Write an EMOCA-layout model folder (cfg.yaml + Lightning checkpoint) with a random E_expression.

    Exposed so tests can build the 50/53/56-row variants; returns the checkpoint path.
    """
    folder = Path(folder)
    gen = torch.Generator().manual_seed(seed + 7919)
    flags = EmocaFlags(global_pose=global_pose, jaw_pose=jaw_pose)
    deca_mean, deca_std = code_statistics()
    mean = np.concatenate(
        [np.zeros(50), deca_mean[200:203] if global_pose else [], deca_mean[203:206] if jaw_pose else []]
    )
    std = np.concatenate([np.full(50, 0.5), deca_std[200:203] if global_pose else [], deca_std[203:206] if jaw_pose else []])
    if base is None:
        base = _shared_base(gen)
    e_exp = _random_encoder_state(flags.out_size, mean, std, gen, base)  # trunk: other slices of the storage
    model_cfg = {
        "deca_class": "ExpDECA",
        "expression_backbone": "deca_clone",
        "exp_deca_global_pose": global_pose,
        "exp_deca_jaw_pose": jaw_pose,
        "n_shape": 100,
        "n_tex": 50,
        "n_exp": 50,
        "n_pose": 6,
        "n_cam": 3,
        "n_light": 27,
        "use_texture": False,
    }
    inout = {"name": f"{folder.name} (synthetic)"}
    # each stage gets its own copies: shared objects would become YAML aliases
    cfg = {stage: {"model": dict(model_cfg), "inout": dict(inout)} for stage in ("coarse", "detail")}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.yaml").write_text(
        "# synthetic EMOCA configuration written by `dre assets synth`\n" + yaml.safe_dump(cfg, sort_keys=True),
        encoding="utf-8",
    )
    state: OrderedDict[str, object] = OrderedDict()
    state.update((f"deca.E_flame.{k}", v) for k, v in e_flame.items())
    state.update((f"deca.E_expression.{k}", v) for k, v in e_exp.items())
    ckpt = {
        "epoch": 3,
        "global_step": 0,
        "pytorch-lightning_version": "1.4.9",
        "state_dict": state,
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    path = folder / ckpt_name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def write_synthetic_assets(out: str | Path, seed: int = 0) -> Path:
    """Write a complete synthetic assets folder to ``out`` (atomically replaced); returns ``out``.

    ``out`` must be absent, empty, or a folder this function wrote whose files are all unchanged (their
    sha256 is recorded): a folder holding any other file — a user's real ``generic_model.pkl`` above all —
    is refused, never replaced (``dre.safety.ownership``).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    mesh = HeadMesh()
    with owned_dir(out, "dre assets synth", hashes=True) as tmp:
        with chumpy_standin() as Ch:
            flame = flame_dict(mesh, rng, Ch)
            with open(tmp / FLAME_FILE, "wb") as fh:
                pickle.dump(flame, fh, protocol=2)
        (tmp / TEMPLATE_FILE).write_text(obj_text(mesh), encoding="utf-8")
        emb = mesh.landmark_embedding()
        with open(tmp / LANDMARK_FILE, "wb") as fh:
            np.save(fh, np.array(emb, dtype=object), allow_pickle=True)
        mean, tex_dir = texture_space(mesh, rng)
        np.savez(tmp / TEXTURE_FILE, mean=mean, tex_dir=tex_dir)
        base = _shared_base(gen)
        code_mean, code_std = code_statistics()
        e_flame = _random_encoder_state(236, code_mean, code_std, gen, base)
        torch.save({"E_flame": e_flame}, tmp / DECA_FILE)
        write_emoca_model(tmp / EMOCA_DIR / DEFAULT_EMOCA_MODEL, e_flame, base=base, seed=seed)
        info = {
            "synthetic": True,
            "writer": "dre assets synth",
            "version": SYNTH_VERSION,
            "seed": seed,
            "vertices": mesh.n_v,
            "faces": int(len(mesh.faces)),
            "texture_size": head.TEX_SIZE,
            "texture_components": head.TEX_PCS,
            "note": "random content in the official file formats; never a real face model",
        }
        (tmp / MARKER_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out
